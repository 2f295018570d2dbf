"""A shard's circuit breaker: stop asking a source that keeps refusing us.

YouTube answers bulk downloads with HTTP 429 or "Sign in to confirm you're not a bot"; more
requests only prolong the block. The shard's threads report every answer here; after
``after`` rate-limit answers in a row the breaker trips for the rest of the run, and every
clip not yet asked is recorded as ``deferred`` (retriable, never ``unavailable``)
(docs/stages.md, "The data stages").

What counts: ``rate_limited`` adds one; an answer that shows the source is serving us (ok, a
real "unavailable" or "private" verdict, a file that turned out bad) resets the count; a
time-out or an internal error is no answer from the source and leaves the count as it is.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from wavbrivl import status as st
from wavbrivl.atomic import write_text_atomic

# Answers that prove the source is talking to us normally.
_RESETS = frozenset({st.OK, st.UNAVAILABLE, st.PRIVATE, st.BAD_MEDIA})


class CircuitBreaker:
    """Counts consecutive rate-limit answers across a shard's threads; thread-safe.

    ``after = 0`` turns it off: it never trips.
    """

    def __init__(self, after: int) -> None:
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            raise ValueError(f"download.breaker_after must be an integer >= 0, got {after!r}")
        self.after = after
        self._lock = threading.Lock()
        self._in_a_row = 0
        self._last_reason = ""
        self._tripped = False

    def record(self, status: str, reason: str) -> bool:
        """Count one answer of the source; returns whether the breaker is tripped now."""
        with self._lock:
            if self._tripped:
                return True
            if status == st.RATE_LIMITED:
                self._in_a_row += 1
                self._last_reason = reason
                self._tripped = self.after > 0 and self._in_a_row >= self.after
            elif status in _RESETS:
                self._in_a_row = 0
            return self._tripped

    @property
    def tripped(self) -> bool:
        with self._lock:
            return self._tripped

    @property
    def in_a_row(self) -> int:
        """Rate-limit answers since the last answer that reset the count."""
        with self._lock:
            return self._in_a_row

    @property
    def last_reason(self) -> str:
        with self._lock:
            return self._last_reason

    def deferred_reason(self) -> str:
        """The ``reason`` of a clip the tripped breaker kept from being asked."""
        return (
            f"not asked: {self.after} rate-limit/bot-check answers in a row stopped this shard; "
            f"last answer: {self.last_reason}"
        )


def blocked_advice(where: str, n_deferred: int, breaker: CircuitBreaker, status_path: str) -> str:
    """The one log line that says the shard was blocked and what to do about it."""
    return (
        f"download: {where}: BLOCKED after {breaker.after} rate-limit/bot-check answers in a row "
        f"(last: {breaker.last_reason}); {n_deferred} clip(s) deferred, none marked unavailable. "
        f"To do: wait (often an hour) and run snakemake again: it reruns this shard ({status_path}), "
        "asking only for the clips not yet ok; if it persists, set download.cookies_file "
        "(cookies.txt of a logged-in browser) and download.js_runtime (deno or node), "
        "and raise download.pace_s."
    )


RETRY_SUFFIX = ".retry"


def retry_marker(status_path: str | os.PathLike) -> Path:
    """The file that makes the next Snakemake run redo a shard with deferred clips.

    The download rule lists it as an input once it exists (workflow/rules/common.smk); a marker
    newer than the status table reruns the job ("updated input files"). It is never deleted:
    the rule's input set must not change when the retry succeeds, or Snakemake would rerun the
    shard once more for that.
    """
    path = Path(status_path)
    return path.with_name(path.name.removesuffix(".status.parquet") + RETRY_SUFFIX)


def mark_for_retry(status_path: str | os.PathLike, advice: str) -> Path:
    """Write the retry marker, dated one second after the status table (coarse file clocks)."""
    marker = retry_marker(status_path)
    write_text_atomic(marker, advice + "\n")
    _date(marker, Path(status_path).stat().st_mtime + 1.0)
    return marker


def settle_retry_marker(status_path: str | os.PathLike) -> None:
    """After a run with nothing deferred: date an existing marker one second before the table,
    so it no longer reruns the shard (a quick retry can end before the marker's date)."""
    marker = retry_marker(status_path)
    if marker.exists():
        _date(marker, Path(status_path).stat().st_mtime - 1.0)


def _date(path: Path, when: float) -> None:
    os.utime(path, (when, when))
