"""Turn what went wrong (a yt-dlp message, an exception, a downloaded file) into a status.

The statuses are :mod:`wavbrivl.status`'s vocabulary. Classification is by ordered rules on
the message text, because that is all yt-dlp gives for most failures; the order matters
("Sign in to confirm you're not a bot" is a rate limit, not a private video). Reasons keep
yt-dlp's own words, cleaned of colour codes and trimmed, so a log reader can search for them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from wavbrivl import status as st

REASON_MAX_CHARS = 300

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_LEVEL_PREFIX = re.compile(r"^(?:ERROR|WARNING):\s*")

# (status, pattern) in priority order; the first match wins. Patterns see lower-cased text.
_MESSAGE_RULES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (status, re.compile(pattern))
    for status, pattern in (
        # Bot checks and throttling first: their texts also say "sign in" or "not available".
        (
            st.RATE_LIMITED,
            r"http error 429|too many requests|rate[- ]?limit|confirm you.re not a bot"
            r"|captcha|try again later",
        ),
        (st.TIMEOUT, r"timed out|timeout"),
        # A format mismatch is our selector's problem, not a missing video.
        (st.ERROR, r"requested format is not available"),
        (
            st.PRIVATE,
            r"private video|video is private|sign in|members[- ]only|join this channel"
            r"|age[- ]restricted|confirm your age|inappropriate for some users",
        ),
        (
            st.UNAVAILABLE,
            r"video unavailable|unavailable video|been removed|removed by|no longer available"
            r"|in your country|copyright grounds|(?:is not|isn.t) available|account .*terminated"
            r"|http error 404|http error 410|unsupported url|does not exist",
        ),
        (st.BAD_MEDIA, r"did not get any data blocks|downloaded file is empty"),
    )
)

# HTTP status codes that settle the question without looking at the text.
_HTTP_STATUS = {404: st.UNAVAILABLE, 410: st.UNAVAILABLE, 429: st.RATE_LIMITED}

# yt-dlp's refusal to cut a source it can only fetch whole (file://, some protocols).
_PARTIAL_REFUSAL = re.compile(r"cannot be partially downloaded", re.IGNORECASE)
_FFMPEG_EXIT = re.compile(r"ffmpeg exited with code -?\d+", re.IGNORECASE)
# yt-dlp reading a file:// source that is not there ("Unable to download webpage: [Errno 2]
# No such file or directory: '/data/x.mp4'"). Only yt-dlp's download wording counts: our own
# I/O errors with the same errno are not the source's fault.
_MISSING_SOURCE = re.compile(
    r"unable to download (?:webpage|video data)\b.*?no such file or directory(?:: '([^']*)')?",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Classification:
    status: str
    reason: str


def clean_message(message: object, limit: int = REASON_MAX_CHARS) -> str:
    """One line of text: ANSI codes, carriage returns and ``ERROR:`` prefixes removed, trimmed."""
    text = _ANSI.sub("", str(message))
    text = " ".join(text.replace("\r", " ").split())
    text = _LEVEL_PREFIX.sub("", text)
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def classify_message(
    message: str, *, http_status: int | None = None, timed_out: bool = False
) -> Classification:
    """Classify a failure from its message (and, when known, an HTTP status or a time-out)."""
    reason = clean_message(message) or "unknown error (yt-dlp gave no message)"
    if _FFMPEG_EXIT.search(reason):
        reason = clean_message(
            reason
            + " (ffmpeg failed while cutting the section: unreadable, truncated or stalled input)"
        )
    if timed_out:
        return Classification(st.TIMEOUT, reason)
    missing = _MISSING_SOURCE.search(reason)
    if missing:
        path = f" {missing.group(1)}" if missing.group(1) else ""
        return Classification(
            st.UNAVAILABLE,
            clean_message(f"source file{path} does not exist (yt-dlp: {reason})"),
        )
    if http_status in _HTTP_STATUS:
        return Classification(_HTTP_STATUS[http_status], reason)
    lowered = reason.lower()
    for status, pattern in _MESSAGE_RULES:
        if pattern.search(lowered):
            return Classification(status, reason)
    return Classification(st.ERROR, reason)


def classify_exception(exc: BaseException) -> Classification:
    """Classify an exception from yt-dlp (or from our own I/O), following its cause chain.

    ``DownloadError`` keeps the original exception in ``exc_info``; network errors carry an
    HTTP ``status``; socket time-outs are ``TimeoutError``.
    """
    http_status = None
    timed_out = False
    for err in _cause_chain(exc):
        if isinstance(err, TimeoutError):
            timed_out = True
        status = getattr(err, "status", None)
        if http_status is None and isinstance(status, int) and 100 <= status <= 599:
            http_status = status
    message = str(exc) or type(exc).__name__
    return classify_message(message, http_status=http_status, timed_out=timed_out)


def is_partial_download_refusal(message: str) -> bool:
    """Did yt-dlp refuse to cut this source (so a whole-file download is the way)?"""
    return bool(_PARTIAL_REFUSAL.search(message))


# -- the downloaded file ---------------------------------------------------------------------

_STREAM = re.compile(r"^\s*Stream #\d+:\d+.*?: (Audio|Video): ([^\s,]+)")


def media_probe_argv(ffmpeg: str, path: Path) -> list[str]:
    """``ffmpeg -i FILE`` with no output: the stream list lands on stderr (we have no ffprobe)."""
    return [ffmpeg, "-hide_banner", "-nostdin", "-i", str(path)]


def stream_kinds(probe_stderr: str) -> set[str]:
    """``{"audio", "video"}`` or a subset: the kinds of streams ``ffmpeg -i`` listed.

    Cover art (a "video" stream flagged ``(attached pic)``) does not count as video.
    """
    kinds = set()
    for line in probe_stderr.splitlines():
        match = _STREAM.match(line)
        if match is None or "(attached pic)" in line:
            continue
        kinds.add(match.group(1).lower())
    return kinds


def classify_media(size: int, probe_stderr: str, *, require_video: bool = True) -> Classification:
    """ok, or bad_media with the reason, for a downloaded file of ``size`` bytes."""
    if size <= 0:
        return Classification(st.BAD_MEDIA, "downloaded file is empty")
    kinds = stream_kinds(probe_stderr)
    if not kinds:
        last = _last_meaningful_line(probe_stderr.splitlines())
        return Classification(st.BAD_MEDIA, clean_message(f"no media streams in the file: {last}"))
    # kinds is not empty here, so at most one of the two is missing
    if "audio" not in kinds:
        return Classification(st.BAD_MEDIA, "no audio stream in the file")
    if require_video and "video" not in kinds:
        return Classification(st.BAD_MEDIA, "no video stream in the file")
    return Classification(st.OK, "")


def _last_meaningful_line(lines: Iterable[str]) -> str:
    useful = [
        line.strip()
        for line in lines
        if line.strip() and "output file" not in line.lower()  # ffmpeg's "no output" complaint
    ]
    return useful[-1] if useful else "ffmpeg printed nothing"


def _cause_chain(exc: BaseException, limit: int = 8) -> list[BaseException]:
    chain: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo and len(chain) < limit:
        err = todo.pop(0)
        if err is None or any(err is seen for seen in chain):
            continue
        chain.append(err)
        exc_info = getattr(err, "exc_info", None)
        if isinstance(exc_info, tuple) and len(exc_info) == 3:
            todo.append(exc_info[1])
        todo.extend([err.__cause__, err.__context__, getattr(err, "cause", None)])
    return [e for e in chain if isinstance(e, BaseException)]
