"""The cached SHA-256 used for checkpoint fingerprints in the workflow's rule parameters."""

from __future__ import annotations

import hashlib
import os

import pytest

from wavbrivl.hashing import cached_sha256, seeded_int
from wavbrivl.sharding import shard_of


def test_cached_hash_follows_content_even_when_mtime_is_put_back(tmp_path):
    path = tmp_path / "w.pth"
    cache = tmp_path / "cache.json"
    path.write_bytes(b"a" * 1000)
    assert cached_sha256(path, cache) == hashlib.sha256(b"a" * 1000).hexdigest()
    stat = path.stat()
    path.write_bytes(b"b" * 1000)  # same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert cached_sha256(path, cache) == hashlib.sha256(b"b" * 1000).hexdigest()


def test_unchanged_file_is_not_read_again(tmp_path, monkeypatch):
    path = tmp_path / "w.pth"
    cache = tmp_path / "cache.json"
    path.write_bytes(b"x" * 10)
    first = cached_sha256(path, cache)
    monkeypatch.setattr("wavbrivl.hashing.sha256_of", lambda p: "should not be called")
    assert cached_sha256(path, cache) == first


def test_corrupt_cache_file_is_rebuilt(tmp_path):
    path = tmp_path / "w.pth"
    cache = tmp_path / "cache.json"
    path.write_bytes(b"y")
    cache.write_text("{not json")
    assert cached_sha256(path, cache) == hashlib.sha256(b"y").hexdigest()


def test_seeded_int_is_stable_distinct_and_bounded():
    # A value pinned once: it must not change across processes, machines or releases,
    # because shards and seeds drawn from it must not move.
    assert seeded_int("abc_30000") == int.from_bytes(
        hashlib.blake2b(b"abc_30000", digest_size=8).digest(), "big"
    )
    assert seeded_int("a", 1) != seeded_int("a1")  # parts are separated, not concatenated
    assert seeded_int("a", 1) != seeded_int(1, "a")
    assert seeded_int("a", 1) == seeded_int("a", "1")  # parts are compared as text
    full = seeded_int("x", 7)
    assert seeded_int("x", 7, bits=63) == full >> 1 < 2**63
    assert seeded_int("x", 7, bits=53) == full >> 11
    with pytest.raises(ValueError, match="bits"):
        seeded_int("x", bits=65)


def test_the_shard_rule_is_the_seeded_hash_of_the_clip_id():
    ids = [f"clip{i}_{i * 1000}" for i in range(50)]
    assert [shard_of(c, 7) for c in ids] == [seeded_int(c) % 7 for c in ids]
    assert len({shard_of(c, 7) for c in ids}) == 7


def blake2b_64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


def test_several_parts_are_joined_by_nul_bytes_and_every_bit_count_from_1_is_allowed():
    # pinned against the documented scheme, computed here: NUL-joined text, BLAKE2b-64, shifted
    assert (
        seeded_int("generate", 3, "clip_1", bits=63) == blake2b_64("generate\x003\x00clip_1") >> 1
    )
    assert seeded_int("x", bits=1) == blake2b_64("x") >> 63
    assert seeded_int("x", bits=64) == blake2b_64("x")
    with pytest.raises(ValueError, match=r"bits must be in \[1, 64\], got 0"):
        seeded_int("x", bits=0)
