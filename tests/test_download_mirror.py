"""Mirror look-ups and reads: folder files, tar and tar.gz members, the cached index, damage."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from wavbrivl.download import mirror
from wavbrivl.download.mirror import (
    Hit,
    Member,
    MemberError,
    TarIndex,
    extract_members,
    find_in_folder,
    find_in_tars,
    index_tar,
    link_into_place,
    load_index,
    sha256_and_size,
)
from wavbrivl.download.sources import FolderStep, TarStep

PATTERNS = ("{ytid}_{start:06d}.mp4", "{ytid}.mp4")


def blob(n: int, seed: int) -> bytes:
    return bytes((i * 7 + seed) % 251 for i in range(n))


def write_tar(path: Path, members: dict[str, bytes], mode: str = "w") -> Path:
    with tarfile.open(path, mode) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- folders ---------------------------------------------------------------------------------


def test_folder_first_pattern_wins(tmp_path):
    root = tmp_path / "v"
    root.mkdir()
    (root / "abc_000030.mp4").write_bytes(b"cut")
    (root / "abc.mp4").write_bytes(b"whole")
    (root / "zzz.mp4").write_bytes(b"whole z")
    step = FolderStep("f", root, PATTERNS)
    hit = find_in_folder(step, "abc", 30.0, "abc_30000")
    assert hit == Hit(
        "f", str(root.resolve() / "abc_000030.mp4"), True, path=root.resolve() / "abc_000030.mp4"
    )
    # Another start: only the whole video matches, which starts at the video's start.
    hit = find_in_folder(step, "abc", 40.0, "abc_40000")
    assert hit.path == root.resolve() / "abc.mp4" and hit.holds_clip is False
    assert hit.origin == str(root.resolve() / "abc.mp4")
    assert find_in_folder(step, "zzz", 1.0, "zzz_1000").path.name == "zzz.mp4"
    assert find_in_folder(step, "nope", 30.0, "nope_30000") is None
    # A folder of that name is not a file.
    (root / "dir.mp4").mkdir()
    assert find_in_folder(step, "dir", 30.0, "dir_30000") is None
    # Unsafe ids are never turned into paths.
    assert find_in_folder(step, "../v/abc", 30.0, "x") is None


def test_folder_patterns_with_subfolders(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "abc.webm").write_bytes(b"w")
    hit = find_in_folder(FolderStep("f", tmp_path, ("sub/{ytid}.webm",)), "abc", 0, "abc_0")
    assert hit.path == tmp_path.resolve() / "sub" / "abc.webm" and hit.suffix == ".webm"


def test_suffix_of_odd_names():
    assert Hit("s", "o", True, path=Path("/a/b.mp4")).suffix == ".mp4"
    assert Hit("s", "o", True, path=Path("/a/b")).suffix == ".bin"
    assert Hit("s", "o", True, path=Path("/a/b.m$4")).suffix == ".bin"
    assert Hit("s", "o", True, path=Path("/a/b.abcdefgh")).suffix == ".bin"
    assert Hit("s", "o", True, path=Path("/a/b.abcdefg")).suffix == ".abcdefg"
    member = Member("dir.x/clip.mkv", 0, 1)
    assert Hit("s", "o", True, member=member).suffix == ".mkv"


def test_sha256_and_size(tmp_path, monkeypatch):
    data = blob(3000, 1)
    (tmp_path / "f").write_bytes(data)
    monkeypatch.setattr(mirror, "CHUNK_BYTES", 1000)  # several chunks
    assert sha256_and_size(tmp_path / "f") == (sha(data), 3000)
    (tmp_path / "e").write_bytes(b"")
    assert sha256_and_size(tmp_path / "e") == (sha(b""), 0)


def test_link_into_place(tmp_path):
    target = tmp_path / "mirror.mp4"
    target.write_bytes(b"m")
    link = tmp_path / "media" / "c.mp4"
    link.parent.mkdir()
    link.write_bytes(b"old download")
    link_into_place(target, link)
    assert link.is_symlink() and os.readlink(link) == str(target) and link.read_bytes() == b"m"
    link_into_place(target, link)  # again: a stale temporary link is no obstacle
    assert link.read_bytes() == b"m"
    assert sorted(p.name for p in link.parent.iterdir()) == ["c.mp4"]


# -- tar indexes -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["w", "w:gz"])
def test_index_and_extract(tmp_path, mode):
    members = {"a/abc_000030.mp4": blob(5000, 1), "abc.mp4": blob(700, 2), "x.txt": b"note"}
    path = write_tar(tmp_path / ("s.tar.gz" if mode == "w:gz" else "s.tar"), members, mode)
    index = index_tar(path)
    assert index.compressed is (mode == "w:gz")
    assert index.problem == ""
    assert sorted(index.members) == sorted(members)
    assert {m.size for m in index.members.values()} == {5000, 700, 4}
    # Full names and base names both find a member.
    assert index.lookup("a/abc_000030.mp4").name == "a/abc_000030.mp4"
    assert index.lookup("abc_000030.mp4").name == "a/abc_000030.mp4"
    assert index.lookup("abc.mp4").name == "abc.mp4"
    assert index.lookup("nothing.mp4") is None
    dest1, dest2, dest3 = tmp_path / "1", tmp_path / "2", tmp_path / "3"
    got = extract_members(index, {"a/abc_000030.mp4": [dest1, dest2], "abc.mp4": [dest3]})
    assert got == {
        "a/abc_000030.mp4": (sha(members["a/abc_000030.mp4"]), 5000),
        "abc.mp4": (sha(members["abc.mp4"]), 700),
    }
    assert dest1.read_bytes() == dest2.read_bytes() == members["a/abc_000030.mp4"]
    assert dest3.read_bytes() == members["abc.mp4"]


def test_directories_and_links_are_not_members(tmp_path):
    path = tmp_path / "s.tar"
    with tarfile.open(path, "w") as archive:
        info = tarfile.TarInfo("d.mp4")
        info.type = tarfile.DIRTYPE
        archive.addfile(info)
        info = tarfile.TarInfo("l.mp4")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        archive.addfile(info)
        info = tarfile.TarInfo("f.mp4")
        info.size = 3
        archive.addfile(info, io.BytesIO(b"abc"))
    assert list(index_tar(path).members) == ["f.mp4"]


def test_first_member_of_a_name_wins(tmp_path):
    # The same base name in two folders of one shard, and the same name twice (tar appends).
    path = tmp_path / "s.tar"
    write_tar(path, {"one/c.mp4": b"first", "two/c.mp4": b"second"})
    with tarfile.open(path, "a") as archive:
        info = tarfile.TarInfo("one/c.mp4")
        info.size = 7
        archive.addfile(info, io.BytesIO(b"updated"))
    index = index_tar(path)
    assert index.lookup("c.mp4").name == "one/c.mp4"
    dest = tmp_path / "out"
    extract_members(index, {"one/c.mp4": [dest]})
    assert dest.read_bytes() == b"first"


def truncated_copy(good: Path, out: Path, keep: int) -> Path:
    out.write_bytes(good.read_bytes()[:keep])
    return out


def test_truncated_plain_tar(tmp_path):
    members = {"ok.mp4": blob(3000, 1), "cut.mp4": blob(20000, 2)}
    good = write_tar(tmp_path / "good.tar", members)
    # Cut inside the second member's data: its header survives, its bytes do not.
    cut = truncated_copy(good, tmp_path / "cut.tar", 512 + 3072 + 512 + 5000)
    index = index_tar(cut)
    assert sorted(index.members) == ["cut.mp4", "ok.mp4"]
    assert index.problem.startswith(f"{cut}: unreadable after 2 member(s): ")
    got = extract_members(index, {"ok.mp4": [tmp_path / "a"], "cut.mp4": [tmp_path / "b"]})
    assert got["ok.mp4"] == (sha(members["ok.mp4"]), 3000)
    assert isinstance(got["cut.mp4"], MemberError)
    assert str(got["cut.mp4"]) == f"{cut}:cut.mp4: truncated member, 5000 of 20000 bytes"


def test_truncated_tar_gz(tmp_path):
    members = {"ok.mp4": blob(3000, 1), "cut.mp4": os.urandom(200_000)}  # incompressible tail
    good = write_tar(tmp_path / "good.tar.gz", members, "w:gz")
    cut = truncated_copy(good, tmp_path / "cut.tar.gz", good.stat().st_size // 2)
    index = index_tar(cut)
    assert index.compressed and "unreadable after" in index.problem
    got = extract_members(index, {"ok.mp4": [tmp_path / "a"], "cut.mp4": [tmp_path / "b"]})
    assert got["ok.mp4"] == (sha(members["ok.mp4"]), 3000)
    assert isinstance(got["cut.mp4"], MemberError)
    assert str(got["cut.mp4"]).startswith(f"{cut}:cut.mp4: ")


def test_a_member_the_archive_does_not_have(tmp_path):
    index = index_tar(write_tar(tmp_path / "s.tar", {"a.mp4": b"a"}))
    got = extract_members(index, {"zz.mp4": [tmp_path / "x"]})
    assert str(got["zz.mp4"]) == f"{index.path}:zz.mp4: not read (member not found in the archive)"
    gz = index_tar(write_tar(tmp_path / "s.tar.gz", {"a.mp4": b"a"}, "w:gz"))
    got = extract_members(gz, {"zz.mp4": [tmp_path / "y"]})
    assert "member not found" in str(got["zz.mp4"])
    # A damaged archive says why the member was not reached.
    damaged = TarIndex(index.path, False, {}, "s.tar: unreadable after 0 member(s): x")
    got = extract_members(damaged, {"zz.mp4": [tmp_path / "z"]})
    assert str(got["zz.mp4"]).endswith("not read (s.tar: unreadable after 0 member(s): x)")


def test_streaming_stops_after_the_last_wanted_member(tmp_path, monkeypatch):
    members = {f"m{i}.mp4": blob(100, i) for i in range(5)}
    index = index_tar(write_tar(tmp_path / "s.tar.gz", members, "w:gz"))
    seen = []
    real_copy = mirror._copy

    def spy(src, member, dests, tar_path):
        seen.append(member.name)
        return real_copy(src, member, dests, tar_path)

    monkeypatch.setattr(mirror, "_copy", spy)
    got = extract_members(index, {"m1.mp4": [tmp_path / "a"], "m3.mp4": [tmp_path / "b"]})
    assert seen == ["m1.mp4", "m3.mp4"]
    assert got["m3.mp4"] == (sha(members["m3.mp4"]), 100)


def test_index_is_cached_by_path_size_and_mtime(tmp_path, monkeypatch):
    path = write_tar(tmp_path / "s.tar", {"a.mp4": blob(600, 1), "b.mp4": blob(10, 2)})
    cache = tmp_path / "cache"
    first = load_index(path, cache)
    files = list(cache.iterdir())
    assert len(files) == 1
    assert json.loads(files[0].read_text())["members"] == [
        [m.name, m.offset, m.size] for m in first.members.values()
    ]
    calls = []
    monkeypatch.setattr(mirror, "index_tar", lambda p: calls.append(p) or index_tar(p))
    again = load_index(path, cache)
    assert calls == [] and again == first
    # A changed shard is indexed again.
    write_tar(path, {"c.mp4": b"c"})
    os.utime(path, ns=(1, 1))
    changed = load_index(path, cache)
    assert calls == [path] and list(changed.members) == ["c.mp4"]
    # A damaged cache file is ignored and rewritten.
    for f in cache.iterdir():
        f.write_text("{not json")
    assert list(load_index(path, cache).members) == ["c.mp4"] and len(calls) == 2
    assert list(load_index(path, None).members) == ["c.mp4"] and len(calls) == 3


def test_one_cache_file_per_shard(tmp_path):
    # Same size, same mtime, different paths and members: never confused.
    one = write_tar(tmp_path / "one.tar", {"a.mp4": blob(100, 1)})
    two = write_tar(tmp_path / "two.tar", {"b.mp4": blob(100, 2)})
    gz = write_tar(tmp_path / "three.tar.gz", {"c.mp4": blob(100, 3)}, "w:gz")
    for path in (one, two, gz):
        os.utime(path, ns=(5, 5))
    cache = tmp_path / "deep" / "er" / "cache"  # made with its parents
    for _ in range(2):  # indexed, then read back from the cache
        assert list(load_index(one, cache).members) == ["a.mp4"]
        assert list(load_index(two, cache).members) == ["b.mp4"]
        back = load_index(gz, cache)
        assert list(back.members) == ["c.mp4"] and back.compressed is True
    assert len(list(cache.iterdir())) == 3
    assert all(f.suffix == ".json" for f in cache.iterdir())


def test_multi_chunk_members(tmp_path, monkeypatch):
    monkeypatch.setattr(mirror, "CHUNK_BYTES", 1000)
    members = {"a.mp4": blob(4500, 1), "b.mp4": blob(2000, 2)}
    for mode, name in (("w", "s.tar"), ("w:gz", "s.tar.gz")):
        index = index_tar(write_tar(tmp_path / name, members, mode))
        got = extract_members(index, {"a.mp4": [tmp_path / f"{name}.a"]})
        assert got == {"a.mp4": (sha(members["a.mp4"]), 4500)}
        assert (tmp_path / f"{name}.a").read_bytes() == members["a.mp4"]


def test_a_missing_member_does_not_stop_the_others(tmp_path):
    index = index_tar(write_tar(tmp_path / "s.tar", {"a.mp4": b"aaa"}))
    got = extract_members(index, {"gone.mp4": [tmp_path / "g"], "a.mp4": [tmp_path / "a"]})
    assert isinstance(got["gone.mp4"], MemberError) and got["a.mp4"] == (sha(b"aaa"), 3)


def test_cached_index_keeps_the_problem(tmp_path):
    good = write_tar(tmp_path / "g.tar", {"a.mp4": blob(3000, 1), "b.mp4": blob(9000, 1)})
    cut = truncated_copy(good, tmp_path / "c.tar", 512 + 3072 + 512 + 100)
    first = load_index(cut, tmp_path / "cache")
    second = load_index(cut, tmp_path / "cache")
    assert first.problem and second.problem == first.problem
    assert second.compressed is False and second.members == first.members


def test_find_in_tars(tmp_path):
    a = index_tar(write_tar(tmp_path / "a.tar", {"v/abc.mp4": b"whole-a"}))
    b = index_tar(write_tar(tmp_path / "b.tar", {"abc_000030.mp4": b"cut-b", "abc.mp4": b"w-b"}))
    step = TarStep("hf", (a.path, b.path), PATTERNS)
    # Patterns first, then shards: the first pattern found in any shard wins.
    hit = find_in_tars(step, [a, b], "abc", 30.0, "abc_30000")
    assert hit.member.name == "abc_000030.mp4" and hit.tar is b and hit.holds_clip
    assert hit.origin == f"{b.path.resolve()}:abc_000030.mp4" and hit.step == "hf"
    # Only the second pattern: the first shard in order wins.
    hit = find_in_tars(step, [a, b], "abc", 40.0, "abc_40000")
    assert hit.member.name == "v/abc.mp4" and hit.tar is a and not hit.holds_clip
    assert find_in_tars(step, [a, b], "zzz", 40.0, "zzz_40000") is None
    assert find_in_tars(step, [a, b], "a/../abc", 40.0, "x") is None
