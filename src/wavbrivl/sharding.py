"""Stable hash shards (docs/architecture.md, "Shards, not clips").

``shard = hash(clip_id) % n_shards`` with a hash that does not depend on the Python
process (``hash()`` is salted per process), so a clip keeps its shard across runs,
machines and manifest growth. Shard names are zero-padded so they sort.
"""

from __future__ import annotations

from wavbrivl.hashing import seeded_int


def shard_of(clip_id: str, n_shards: int) -> int:
    """Shard index of ``clip_id`` in ``[0, n_shards)``: first 8 bytes of BLAKE2b, big-endian."""
    if n_shards < 1:
        raise ValueError(f"n_shards must be >= 1, got {n_shards}")
    return seeded_int(clip_id) % n_shards


def shard_width(n_shards: int) -> int:
    return max(3, len(str(n_shards - 1)))


def shard_name(index: int, n_shards: int) -> str:
    """Zero-padded shard name: ``shard_name(7, 64) == "007"``."""
    if not 0 <= index < n_shards:
        raise ValueError(f"shard index {index} outside [0, {n_shards})")
    return str(index).zfill(shard_width(n_shards))


def shard_names(n_shards: int) -> list[str]:
    return [shard_name(i, n_shards) for i in range(n_shards)]
