"""The per-clip status vocabulary shared by the download and extraction stages.

A failed clip never crashes its shard: it gets a row with one of these statuses and a
human-readable reason (docs/architecture.md, "Artefacts").
"""

from __future__ import annotations

OK = "ok"
UNAVAILABLE = "unavailable"  # removed, 404, blocked in the region, unsupported URL
PRIVATE = "private"  # private video, sign-in or age gate
RATE_LIMITED = "rate_limited"  # HTTP 429, "too many requests", bot checks
TIMEOUT = "timeout"  # network or process time-out
BAD_MEDIA = "bad_media"  # got a file but it lacks a stream, is truncated, or too short
ERROR = "error"  # anything else, including an unsafe clip id
MISSING = "missing"  # no source of the dataset has it (a mirror may be filled later)
DEFERRED = "deferred"  # not asked: the shard's circuit breaker had tripped (we were blocked)

ALL_STATUSES = (
    OK,
    UNAVAILABLE,
    PRIVATE,
    RATE_LIMITED,
    TIMEOUT,
    BAD_MEDIA,
    ERROR,
    MISSING,
    DEFERRED,
)

# Worth another try on a later run: the cause may be gone by then.
RETRIABLE = frozenset({RATE_LIMITED, TIMEOUT, ERROR, MISSING, DEFERRED})


def count_summary(statuses) -> str:
    """``"ok=12 unavailable=2"``: the per-status count line for rule logs."""
    counts: dict[str, int] = {}
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    ordered = [s for s in ALL_STATUSES if s in counts] + sorted(set(counts) - set(ALL_STATUSES))
    return " ".join(f"{s}={counts[s]}" for s in ordered) or "no clips"
