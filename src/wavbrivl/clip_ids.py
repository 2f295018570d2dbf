"""Clip identifiers: a clip id becomes a file name, so it must be a safe one.

Ids come from CSV files we do not control. An id is accepted only if it is a plain,
non-empty file name made of letters, digits and ``-_.`` (YouTube ids and our
``<ytid>_<start>`` ids fit), is not ``.`` or ``..``, and is short enough for any filesystem.
"""

from __future__ import annotations

import re

_SAFE_ID = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,199}")


class UnsafeClipId(ValueError):
    """A clip id that cannot be used as a file name."""


def is_safe_clip_id(clip_id: object) -> bool:
    return (
        isinstance(clip_id, str)
        and _SAFE_ID.fullmatch(clip_id) is not None
        and clip_id not in {".", ".."}
        and ".." not in clip_id
    )


def check_clip_id(clip_id: object) -> str:
    """Return ``clip_id`` if it is safe, else raise :class:`UnsafeClipId` naming it."""
    if not is_safe_clip_id(clip_id):
        raise UnsafeClipId(f"unsafe clip id {clip_id!r}: expected letters, digits, '-', '_', '.'")
    return clip_id  # type: ignore[return-value]


def make_clip_id(source_id: str, start_s: float) -> str:
    """The clip id of a dataset row: source id plus the start in whole milliseconds.

    ``make_clip_id("abc", 30.0) == "abc_30000"``; ms keep fractional AudioSet starts exact.
    """
    return f"{source_id}_{int(round(start_s * 1000))}"
