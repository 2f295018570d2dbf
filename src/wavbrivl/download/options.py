"""The download configuration and the pure yt-dlp options builder.

Nothing here touches the network or the disk: :func:`build_ydl_options` turns a
:class:`DownloadConfig` plus one clip's plan into the ``params`` dict of ``yt_dlp.YoutubeDL``,
so every option can be unit-tested without running yt-dlp.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from yt_dlp.utils import download_range_func, parse_bytes

from wavbrivl.configs import check_block, default_field, from_mapping, schema_default

# Best video up to 360p plus best audio, else the best single file up to 360p, else anything.
# Every alternative keeps an audio track: WavBriVL needs the sound more than the picture.
DEFAULT_FORMAT = schema_default("download", "format")  # <= 360p video + audio

SECTION_MODES = ("auto", "always", "never")

# yt-dlp's own retry loops stay short: our runner retries with backoff and pacing instead.
_YTDLP_RETRIES = 1

# The stem of the file yt-dlp writes inside a clip's private temporary directory.
TMP_STEM = "clip"


@dataclass(frozen=True)
class DownloadConfig:
    """The ``download:`` block of the workflow config (see config/README.md)."""

    # The workflow's `download` block: defaults and rules from the config schema.
    format: str = default_field("download", "format")
    max_attempts: int = default_field("download", "max_attempts")  # per clip per run
    # The first retry waits ~backoff_s, then doubles (plus jitter).
    backoff_s: float = default_field("download", "backoff_s")
    # Minimum gap between request starts across a shard's threads.
    pace_s: float = default_field("download", "pace_s")
    socket_timeout_s: float = default_field("download", "socket_timeout_s")
    # auto | always | never: cut [start, end) out of the source?
    sections: str = default_field("download", "sections")
    section_padding_s: float = default_field("download", "section_padding_s")  # both sides
    cookies_file: str | None = default_field("download", "cookies_file")  # Netscape cookies.txt
    # "deno", "node", or "name:/path/to/executable".
    js_runtime: str | None = default_field("download", "js_runtime")
    allow_file_urls: bool = default_field("download", "allow_file_urls")  # the demo's file://
    # Retry unavailable / private / bad_media too.
    retry_permanent: bool = default_field("download", "retry_permanent")
    rate_limit: str | None = default_field("download", "rate_limit")  # e.g. "2M" (bytes/s)
    # yt-dlp's sleep between requests during extraction.
    sleep_requests_s: float = default_field("download", "sleep_requests_s")
    # A file without a video stream is bad_media.
    require_video: bool = default_field("download", "require_video")
    # Rate-limit / bot-check answers in a row before a shard stops asking (0: never).
    breaker_after: int = default_field("download", "breaker_after")

    def __post_init__(self) -> None:
        check_block(self, "download")
        problems = []  # what the schema cannot say
        if not self.format.strip():
            problems.append(
                f"format must be a non-empty yt-dlp format selector, got {self.format!r}"
            )
        if self.sections not in SECTION_MODES:  # the schema's enum and the code must agree
            problems.append(f"sections must be one of {SECTION_MODES}, got {self.sections!r}")
        if self.rate_limit is not None and _parse_rate(self.rate_limit) is None:
            problems.append(
                f"rate_limit must look like '500K' or '2M' (bytes/s), got {self.rate_limit!r}"
            )
        if self.js_runtime is not None and not _js_runtime_name(self.js_runtime):
            problems.append(f"js_runtime must be 'name' or 'name:/path', got {self.js_runtime!r}")
        if problems:
            raise ValueError("invalid download config: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> DownloadConfig:
        """Build from the config mapping; unknown keys are an error (a typo must not pass silently)."""
        return from_mapping(cls, d, "download config")


def plan_section(
    url: str, start_s: float, end_s: float, cfg: DownloadConfig
) -> tuple[float, float] | None:
    """The span to cut out of the source, or ``None`` for a whole-file download.

    yt-dlp cuts with ffmpeg, which it only does over network protocols: a ``file://`` source
    cannot be partially downloaded, so ``auto`` takes it whole right away.
    """
    if cfg.sections == "never":
        return None
    if cfg.sections == "auto" and is_file_url(url):
        return None
    return (max(0.0, start_s - cfg.section_padding_s), end_s + cfg.section_padding_s)


def build_ydl_options(
    cfg: DownloadConfig,
    *,
    tmp_dir: Path,
    section: tuple[float, float] | None,
    ffmpeg_location: str,
) -> dict[str, Any]:
    """The ``yt_dlp.YoutubeDL`` params for one clip (pure: no I/O).

    The file lands in ``tmp_dir`` (the clip's private temporary directory); the runner moves
    it into place once it is complete and checked. ``"download_ranges" in options`` tells
    whether a cut was requested.
    """
    timeout = float(cfg.socket_timeout_s)
    options: dict[str, Any] = {
        "format": cfg.format,
        # Separate video and audio streams are merged into one mp4 the extractor can read.
        "merge_output_format": "mp4",
        # yt-dlp joins outtmpl onto paths; both the .part file and the result stay in tmp_dir.
        "outtmpl": {"default": f"{TMP_STEM}.%(ext)s"},
        "paths": {"home": str(tmp_dir), "temp": str(tmp_dir)},
        "quiet": True,
        "noprogress": True,
        "no_warnings": False,
        "color": "no_color",
        "noplaylist": True,
        "socket_timeout": timeout,
        "retries": _YTDLP_RETRIES,
        "fragment_retries": _YTDLP_RETRIES,
        "extractor_retries": _YTDLP_RETRIES,
        "file_access_retries": _YTDLP_RETRIES,
        "ffmpeg_location": ffmpeg_location,
        "cachedir": False,  # no state under $HOME on cluster nodes
        "enable_file_urls": bool(cfg.allow_file_urls),
        # ffmpeg does the cut downloads. By default it waits forever on a stalled connection
        # and ends "successfully" with a short file on a truncated one; these make it fail.
        "external_downloader_args": {
            "ffmpeg_i": ["-rw_timeout", str(int(timeout * 1_000_000))],
            "ffmpeg_o": ["-xerror"],
        },
    }
    if section is not None:
        start, end = section
        options["download_ranges"] = download_range_func(None, [(float(start), float(end))])
    if cfg.cookies_file:
        options["cookiefile"] = str(cfg.cookies_file)
    if cfg.js_runtime:
        options["js_runtimes"] = js_runtimes_option(cfg.js_runtime)
    if cfg.rate_limit:
        options["ratelimit"] = _parse_rate(cfg.rate_limit)
    if cfg.sleep_requests_s:
        options["sleep_interval_requests"] = float(cfg.sleep_requests_s)
    return options


def js_runtimes_option(spec: str) -> dict[str, dict[str, str]]:
    """``"node"`` -> ``{"node": {}}``; ``"deno:/opt/deno"`` -> ``{"deno": {"path": "/opt/deno"}}``."""
    name, _, path = spec.partition(":")
    return {name.strip().lower(): ({"path": path} if path else {})}


def url_problem(url: object, cfg: DownloadConfig) -> str | None:
    """Why ``url`` must not be handed to yt-dlp, or ``None`` when it may be."""
    if not isinstance(url, str) or not url.strip():
        return f"missing or empty url {url!r}"
    if is_file_url(url) and not cfg.allow_file_urls:
        return "file:// URLs are refused (set download.allow_file_urls: true to allow them)"
    return None


def span_problem(start_s: object, end_s: object) -> str | None:
    """Why a manifest row's [start_s, end_s) is unusable, or ``None``."""
    if not (_is_number(start_s) and _is_number(end_s)):
        return f"start_s/end_s must be numbers, got {start_s!r}/{end_s!r}"
    if not (math.isfinite(start_s) and math.isfinite(end_s)) or start_s < 0 or end_s <= start_s:
        return f"invalid time span [{start_s}, {end_s}): need 0 <= start_s < end_s"
    return None


def is_file_url(url: str) -> bool:
    return urlsplit(url.strip()).scheme.lower() == "file"


def _js_runtime_name(spec: object) -> str:
    return spec.partition(":")[0].strip() if isinstance(spec, str) else ""


def _parse_rate(rate: object) -> int | None:
    if isinstance(rate, int) and not isinstance(rate, bool) and rate > 0:
        return rate
    if not isinstance(rate, str):
        return None
    try:
        value = parse_bytes(rate.strip())
    except (ValueError, TypeError):
        return None
    return value if value and value > 0 else None


def _is_number(value: object) -> bool:
    # numbers.Real also admits numpy scalars (pandas hands those out); bools are not numbers here.
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
