"""The cached SHA-256 used for checkpoint fingerprints in the workflow's rule parameters."""

from __future__ import annotations

import hashlib
import os

from wavbrivl.hashing import cached_sha256


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
