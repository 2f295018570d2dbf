"""Hashes: SHA-256 of large files (remembered by their stat so planning stays fast) and
the one stable hash of ids that seeds and shards are drawn from."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from wavbrivl.atomic import write_text_atomic


def sha256_of(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def cached_sha256(path: str | os.PathLike, cache_file: str | os.PathLike) -> str:
    """The file's SHA-256, recomputed when its size, inode, mtime or ctime changed.

    ctime is in the key because mtime can be set back (``cp -p``, ``touch -d``) while the
    content changed; ctime cannot.
    """
    stat = os.stat(path)
    key = "|".join(
        str(v)
        for v in (
            Path(path).resolve(),
            stat.st_size,
            stat.st_ino,
            stat.st_mtime_ns,
            stat.st_ctime_ns,
        )
    )
    cache_file = Path(cache_file)
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    if key not in cache:
        cache[key] = sha256_of(path)
        write_text_atomic(cache_file, json.dumps(cache, indent=1, sort_keys=True))
    return cache[key]


def seeded_int(*parts: object, bits: int = 64) -> int:
    """A stable integer in ``[0, 2**bits)`` from ``parts``, the same in every process.

    Python's ``hash()`` is salted per process; this is BLAKE2b-64 over the parts' ``str``
    joined by NUL bytes, shifted down to ``bits``. One part is the shard rule's hash
    (docs/architecture.md, "Shards, not clips"); several parts make per-clip seeds, e.g.
    ``seeded_int("generate", seed, clip_id, bits=63)`` (torch seeds must fit an int64).
    """
    if not 1 <= bits <= 64:
        raise ValueError(f"bits must be in [1, 64], got {bits}")
    key = "\x00".join(str(part) for part in parts).encode("utf-8")
    value = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")
    return value >> (64 - bits)
