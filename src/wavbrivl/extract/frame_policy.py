"""Which moment of a clip the image frame is taken from.

A policy maps ``(clip_id, window_start_s, window_s, seed)`` to a source time inside
``[window_start_s, window_start_s + window_s)``. ``random`` draws from a per-clip stream
seeded by a stable hash of (seed, clip_id): reruns, other machines and other shard orders
give the same frame, and changing ``seed`` gives a different, equally stable draw.
"""

from __future__ import annotations

from collections.abc import Callable

from wavbrivl.hashing import seeded_int

FramePolicy = Callable[[str, float, float, int], float]


def middle_time(clip_id: str, window_start_s: float, window_s: float, seed: int) -> float:
    """The midpoint of the window."""
    return window_start_s + window_s / 2.0


def random_time(clip_id: str, window_start_s: float, window_s: float, seed: int) -> float:
    """A uniform draw in the window, fixed by (seed, clip_id)."""
    return window_start_s + window_s * stable_unit_interval(f"{seed}:{clip_id}")


def stable_unit_interval(key: str) -> float:
    """A number in [0, 1) from a process-independent hash of ``key`` (53 bits, like a double)."""
    return seeded_int(key, bits=53) / float(1 << 53)


FRAME_POLICIES: dict[str, FramePolicy] = {"middle": middle_time, "random": random_time}


def frame_time(
    policy: str, clip_id: str, window_start_s: float, window_s: float, seed: int = 0
) -> float:
    """Source time of the frame for ``clip_id`` under ``policy`` (a key of FRAME_POLICIES)."""
    try:
        chosen = FRAME_POLICIES[policy]
    except KeyError:
        raise ValueError(
            f"unknown frame_policy {policy!r}; choose one of {sorted(FRAME_POLICIES)}"
        ) from None
    if window_s <= 0:
        raise ValueError(f"empty frame window for clip {clip_id!r}: {window_s} s")
    return chosen(clip_id, window_start_s, window_s, seed)
