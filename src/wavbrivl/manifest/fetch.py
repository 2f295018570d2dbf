"""A local copy of an input file given as a path, a ``file://`` URL or an http(s) URL.

Dataset CSVs are published on the web; the manifest job fetches them itself (Snakemake
only tracks local inputs). Downloads go to a cache folder under a name derived from the
URL, atomically, so a killed download never leaves a truncated CSV that looks complete.
"""

from __future__ import annotations

import hashlib
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlsplit

from wavbrivl.atomic import atomic_path
from wavbrivl.clip_ids import is_safe_clip_id

USER_AGENT = "wavbrivl-manifest/0.1"


class FetchError(RuntimeError):
    """A download that failed; the message names the URL and the cause."""


def local_copy(
    path_or_url: str | Path,
    cache_dir: str | Path,
    *,
    timeout_s: float = 60.0,
    refresh: bool = False,
) -> Path:
    """The local path of ``path_or_url``, downloading http(s) URLs into ``cache_dir``.

    A local path (or ``file://`` URL) is returned as is and must exist. A URL already in the
    cache is reused unless ``refresh``: dataset CSVs are fixed releases.
    """
    text = str(path_or_url)
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        return _download(text, Path(cache_dir), timeout_s=timeout_s, refresh=refresh)
    if scheme == "file":
        path = Path(unquote(parts.path))
    elif scheme == "" or len(scheme) == 1:  # a plain path (a one-letter scheme is a drive)
        path = Path(text)
    else:
        raise ValueError(f"{text}: unsupported URL scheme {scheme!r} (use a path or http(s) URL)")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return path


def cache_name(url: str) -> str:
    """``<16 hex of sha256(url)>-<file name>``: distinct URLs never share a cache file."""
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    name = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    return f"{digest}-{name if is_safe_clip_id(name) else 'download'}"


def _download(url: str, cache_dir: Path, *, timeout_s: float, refresh: bool) -> Path:
    target = cache_dir / cache_name(url)
    if target.is_file() and not refresh:
        return target
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with (
            urllib.request.urlopen(request, timeout=timeout_s) as response,
            atomic_path(target) as tmp,
        ):
            with open(tmp, "wb") as out:
                shutil.copyfileobj(response, out, length=1 << 20)
            expected = response.headers.get("Content-Length")
            got = tmp.stat().st_size
            if expected is not None and expected.isdigit() and int(expected) != got:
                raise FetchError(f"download of {url} failed: got {got} of {expected} bytes")
    except urllib.error.HTTPError as err:
        raise FetchError(f"download of {url} failed: HTTP {err.code} {err.reason}") from None
    except urllib.error.URLError as err:
        raise FetchError(f"download of {url} failed: {err.reason}") from None
    except TimeoutError:
        raise FetchError(f"download of {url} failed: timed out after {timeout_s} s") from None
    except OSError as err:  # connection reset, truncated body (http.client.IncompleteRead)
        raise FetchError(f"download of {url} failed: {err}") from None
    return target
