"""download_shard with mirror sources and chains: real ffmpeg, real tar files, real yt-dlp on
a loopback server. Expected hashes come from hashlib on the bytes the test wrote."""

from __future__ import annotations

import hashlib
import io
import itertools
import math
import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from httpserver import LoopbackMediaServer, make_test_mp4
from media_factory import AvSpec, make_av, second_of_grey

from wavbrivl import status as st
from wavbrivl.download import STATUS_SCHEMA, DownloadConfig, download_shard, read_status
from wavbrivl.download import chain as chain_module
from wavbrivl.download.journal import JOURNAL_NAME, read_journal
from wavbrivl.download.sources import parse_source
from wavbrivl.download.used_clips import media_dir_of, used_clips, write_used_clips

FAST = dict(socket_timeout_s=1.0, backoff_s=0.05, max_attempts=1)
PATTERNS = ["{ytid}_{start:06d}.mp4", "{ytid}.mp4"]


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, bytes]:
    root = tmp_path_factory.mktemp("media")
    return {
        "a": make_test_mp4(root / "a.mp4", 3.0).read_bytes(),
        "b": make_test_mp4(root / "b.mp4", 2.0).read_bytes(),
        "noaudio": make_test_mp4(root / "n.mp4", 2.0, audio=False).read_bytes(),
        # A 4-s clip whose grey level steps once a second: which second did extraction see?
        "clock": make_av(
            root / "clock.mp4", AvSpec(duration_s=4.0, width=64, height=48)
        ).read_bytes(),
        "text": b"<html>not a video</html>\n" * 50,
        "audio": make_av(root / "audio.m4a", AvSpec(duration_s=2.0, video=False)).read_bytes(),
    }


def rows_of(*clips: tuple[str, str, float, float, str | None]) -> pd.DataFrame:
    """(ytid, start_s, end_s, url) -> manifest-like rows; clip id is ``<ytid>_<start ms>``."""
    return pd.DataFrame(
        [
            {
                "clip_id": f"{ytid}_{int(start * 1000)}",
                "source_id": ytid,
                "url": url,
                "start_s": start,
                "end_s": end,
            }
            for ytid, start, end, url in clips
        ]
    )


def by_id(table: pd.DataFrame) -> dict[str, dict]:
    return {row["clip_id"]: row for row in table.to_dict("records")}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_tar(path: Path, members: dict[str, bytes], gz: bool = False) -> Path:
    with tarfile.open(path, "w:gz" if gz else "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def run(tmp_path: Path, rows, source: dict, log=None, **cfg):
    out = tmp_path / "download" / "000"
    table = download_shard(
        rows,
        out,
        tmp_path / "download" / "000.status.parquet",
        DownloadConfig(**{**FAST, **cfg}),
        threads=2,
        log=log,
        sources=parse_source(source),
        index_dir=tmp_path / "download" / "_tar_index",
    )
    return table, out


# -- folders ---------------------------------------------------------------------------------


def test_folder_with_two_patterns(tmp_path, media):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "aaa_000030.mp4").write_bytes(media["a"])  # the cut clip
    (mirror / "aaa.mp4").write_bytes(media["b"])  # the whole video: both patterns match aaa@30
    (mirror / "bbb.mp4").write_bytes(media["b"])
    rows = rows_of(
        ("aaa", 30.0, 32.0, None),
        ("aaa", 40.0, 41.0, None),  # only the whole video has this one
        ("bbb", 1.0, 2.0, None),
        ("ccc", 0.0, 1.0, None),  # in no source
    )
    table, out = run(tmp_path, rows, {"folder": str(mirror), "patterns": PATTERNS})
    rows_by = by_id(table)
    assert list(table["clip_id"]) == list(rows["clip_id"])  # one row per clip, input order

    cut = rows_by["aaa_30000"]
    assert cut["status"] == st.OK and cut["source"] == "folder"
    assert cut["origin"] == str(mirror.resolve() / "aaa_000030.mp4")  # the first pattern wins
    assert cut["sha256"] == sha(media["a"]) and cut["bytes"] == len(media["a"])
    assert cut["section_start_s"] == 30.0 and math.isnan(cut["section_end_s"])
    # Read in place: the media folder holds a link to the mirror's file, not a copy.
    placed = out / cut["file"]
    assert cut["file"] == "aaa_30000.mp4" and placed.is_symlink()
    assert os.readlink(placed) == str(mirror.resolve() / "aaa_000030.mp4")

    whole = rows_by["aaa_40000"]
    assert whole["origin"] == str(mirror.resolve() / "aaa.mp4") and whole["sha256"] == sha(
        media["b"]
    )
    assert whole["section_start_s"] == 0.0  # the file is the whole video
    assert rows_by["bbb_1000"]["status"] == st.OK

    gone = rows_by["ccc_0"]
    assert gone["status"] == st.MISSING and gone["attempts"] == 0 and pd.isna(gone["file"])
    assert gone["reason"] == f"in no source: looked in folder 'folder' ({mirror})"
    assert pd.isna(gone["sha256"]) and pd.isna(gone["source"])
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp-")]


def test_rerun_reads_and_hashes_nothing_again(tmp_path, media, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "aaa_000030.mp4").write_bytes(media["a"])
    rows = rows_of(("aaa", 30.0, 31.0, None), ("ddd", 5.0, 6.0, None))
    source = {"folder": str(mirror), "patterns": PATTERNS, "name": "vgg"}
    first, out = run(tmp_path, rows, source)
    assert list(first["status"]) == [st.OK, st.MISSING]
    lines = len(read_journal(out / JOURNAL_NAME).entries)

    # The mirror was filled meanwhile: missing is retried, the ok clip is neither read nor hashed.
    (mirror / "ddd.mp4").write_bytes(media["b"])
    hashed = []
    real = chain_module.sha256_and_size
    monkeypatch.setattr(chain_module, "sha256_and_size", lambda p: hashed.append(p) or real(p))
    second, _ = run(tmp_path, rows, source)
    assert hashed == [mirror.resolve() / "ddd.mp4"]
    rows_by = by_id(second)
    assert rows_by["aaa_30000"]["status"] == st.OK and rows_by["aaa_30000"]["seconds"] == 0.0
    assert (
        rows_by["aaa_30000"]["sha256"] == sha(media["a"])
        and rows_by["aaa_30000"]["source"] == "vgg"
    )
    assert rows_by["ddd_5000"]["status"] == st.OK and rows_by["ddd_5000"]["sha256"] == sha(
        media["b"]
    )
    assert len(read_journal(out / JOURNAL_NAME).entries) == lines + 1

    # A mirror file that changed size is taken again.
    (mirror / "ddd.mp4").write_bytes(media["a"])
    third, _ = run(tmp_path, rows, source)
    assert by_id(third)["ddd_5000"]["sha256"] == sha(media["a"])


def test_bad_folder_copies_are_bad_media(tmp_path, media):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "txt.mp4").write_bytes(media["text"])
    (mirror / "nov.mp4").write_bytes(media["noaudio"])
    (mirror / "nil.mp4").write_bytes(b"")
    (mirror / "aud.mp4").write_bytes(media["audio"])  # no picture: download.require_video
    rows = rows_of(
        ("txt", 0.0, 1.0, None),
        ("nov", 0.0, 1.0, None),
        ("nil", 0.0, 1.0, None),
        ("aud", 0.0, 1.0, None),
    )
    table, out = run(tmp_path, rows, {"folder": str(mirror)})
    for clip_id, row in by_id(table).items():
        assert row["status"] == st.BAD_MEDIA, row
        assert row["reason"].startswith(f"folder: {mirror.resolve()}/{clip_id.split('_')[0]}.mp4: ")
        assert pd.isna(row["file"]) and pd.isna(row["sha256"])
    assert "audio" in by_id(table)["nov_0"]["reason"]
    assert sorted(p.name for p in out.iterdir()) == [JOURNAL_NAME]
    assert set(table["attempts"]) == {1}
    # A rerun looks again (the mirror may have been repaired): the attempts count up.
    again, _ = run(tmp_path, rows, {"folder": str(mirror)})
    assert set(again["attempts"]) == {2} and set(again["status"]) == {st.BAD_MEDIA}
    # Audio-only copies are fine when the config accepts them.
    lenient, _ = run(tmp_path, rows, {"folder": str(mirror)}, require_video=False)
    assert by_id(lenient)["aud_0"]["status"] == st.OK


def test_every_bad_copy_is_named(tmp_path, media):
    one, two = tmp_path / "one", tmp_path / "two"
    for folder in (one, two):
        folder.mkdir()
        (folder / "txt.mp4").write_bytes(media["text"])
    source = {"chain": [{"folder": str(one), "name": "one"}, {"folder": str(two), "name": "two"}]}
    table, _ = run(tmp_path, rows_of(("txt", 0.0, 1.0, None)), source)
    row = by_id(table)["txt_0"]
    assert row["status"] == st.BAD_MEDIA
    assert row["reason"].startswith(f"one: {one.resolve()}/txt.mp4: ")
    assert f"; two: {two.resolve()}/txt.mp4: " in row["reason"]


def test_a_failure_to_place_costs_one_clip(tmp_path, media, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for ytid in ("aaa", "bbb"):
        (mirror / f"{ytid}.mp4").write_bytes(media["a"])
    real = chain_module.link_into_place

    def refuse_aaa(target, link):
        if link.name.startswith("aaa"):
            raise PermissionError(13, "Permission denied")
        real(target, link)

    monkeypatch.setattr(chain_module, "link_into_place", refuse_aaa)
    rows = rows_of(("aaa", 0.0, 1.0, None), ("bbb", 0.0, 1.0, None))
    table, out = run(tmp_path, rows, {"folder": str(mirror)})
    row = by_id(table)["aaa_0"]
    assert row["status"] == st.ERROR and pd.isna(row["file"]) and pd.isna(row["sha256"])
    assert (
        row["reason"]
        == f"folder: could not put {mirror.resolve()}/aaa.mp4 in place: [Errno 13] Permission denied"
    )
    assert by_id(table)["bbb_0"]["status"] == st.OK
    last = [e for e in read_journal(out / JOURNAL_NAME).entries if e.clip_id == "aaa_0"][-1]
    assert last.status == st.ERROR and last.file is None and last.source is None and last.bytes == 0
    assert last.section_start_s is None and last.sha256 is None
    # error is retriable: the next run places it.
    monkeypatch.setattr(chain_module, "link_into_place", real)
    again, _ = run(tmp_path, rows, {"folder": str(mirror)})
    assert set(again["status"]) == {st.OK}


def test_an_unreadable_mirror_file_is_a_retriable_error(tmp_path, media, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "aaa.mp4").write_bytes(media["a"])

    def unreadable(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(chain_module, "sha256_and_size", unreadable)
    table, _ = run(tmp_path, rows_of(("aaa", 0.0, 1.0, None)), {"folder": str(mirror)})
    row = by_id(table)["aaa_0"]
    origin = mirror.resolve() / "aaa.mp4"
    assert row["status"] == st.ERROR and st.ERROR in st.RETRIABLE
    assert row["reason"] == f"folder: {origin}: [Errno 13] Permission denied: '{origin}'"


def test_journal_lines_of_mirror_copies(tmp_path, media):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "aaa_000007.mp4").write_bytes(media["a"])
    (mirror / "bad.mp4").write_bytes(media["text"])
    rows = rows_of(("aaa", 7.0, 8.0, None), ("bad", 0.0, 1.0, None))
    table, out = run(tmp_path, rows, {"folder": str(mirror), "name": "m"})
    entries = {e.clip_id: e for e in read_journal(out / JOURNAL_NAME).entries}
    ok, bad = entries["aaa_7000"], entries["bad_0"]
    assert ok.url == str(mirror.resolve() / "aaa_000007.mp4") and ok.attempt == 1
    assert (ok.status, ok.file, ok.bytes, ok.source) == (
        st.OK,
        "aaa_7000.mp4",
        len(media["a"]),
        "m",
    )
    assert ok.section_start_s == 7.0 and ok.section_end_s is None and ok.sha256 == sha(media["a"])
    assert ok.reason == "" and by_id(table)["aaa_7000"]["reason"] == ""
    assert (bad.file, bad.bytes, bad.source, bad.sha256, bad.section_start_s) == (
        None,
        0,
        None,
        None,
        None,
    )
    for entry in (ok, bad):
        assert 0.0 <= entry.seconds < 60.0 and entry.seconds == round(entry.seconds, 3)
        assert entry.finished_at.endswith("+00:00") and len(entry.finished_at) == 25
    for row in table.to_dict("records"):
        assert 0.0 <= row["seconds"] < 60.0


def test_a_bug_costs_one_clip_not_the_shard(tmp_path, media, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "bbb.mp4").write_bytes(media["a"])
    real = chain_module.find_in_folder

    def broken(step, ytid, start_s, clip_id):
        if ytid == "aaa":
            raise KeyError("boom")
        return real(step, ytid, start_s, clip_id)

    monkeypatch.setattr(chain_module, "find_in_folder", broken)
    rows = rows_of(("aaa", 0.0, 1.0, None), ("bbb", 0.0, 1.0, None))
    out = tmp_path / "download" / "000"
    runner = chain_module.ChainRunner(
        parse_source({"folder": str(mirror)}),
        out,
        None,
        {},
        ffmpeg="ffmpeg",
        require_video=True,
        url_fetch=None,
    )
    from wavbrivl.download.status_table import clips_from_rows

    row = runner.run(clips_from_rows(rows)[0])
    assert row["status"] == st.ERROR and row["reason"] == "internal error: KeyError: 'boom'"
    assert 0.0 <= row["seconds"] < 60.0 and row["attempts"] == 0
    assert set(row) == set(STATUS_SCHEMA.names)  # the row's own columns, no stray key
    table, _ = run(tmp_path, rows, {"folder": str(mirror)})
    assert list(table["status"]) == [st.ERROR, st.OK]


# -- tar shards ------------------------------------------------------------------------------


def test_tar_and_tar_gz_shards(tmp_path, media):
    shards = tmp_path / "shards"
    shards.mkdir()
    plain = write_tar(
        shards / "p-000.tar",
        {"video/aaa_000030.mp4": media["a"], "video/txt_000000.mp4": media["text"]},
    )
    gz = write_tar(
        shards / "g-000.tar.gz", {"bbb_000001.mp4": media["b"], "eee.mp4": media["a"]}, gz=True
    )
    rows = rows_of(
        ("aaa", 30.0, 31.0, None),
        ("bbb", 1.0, 2.0, None),
        ("eee", 3.0, 4.0, None),
        ("txt", 0.0, 1.0, None),  # a member that is not a video
        ("zzz", 0.0, 1.0, None),
    )
    source = {
        "chain": [
            {"tar": str(plain), "name": "plain"},
            {"tar": str(shards / "*.tar.gz"), "name": "gz"},
        ]
    }
    table, out = run(tmp_path, rows, source)
    rows_by = by_id(table)
    assert rows_by["aaa_30000"]["source"] == "plain"
    assert rows_by["aaa_30000"]["origin"] == f"{plain.resolve()}:video/aaa_000030.mp4"
    assert rows_by["aaa_30000"]["section_start_s"] == 30.0
    assert rows_by["bbb_1000"]["source"] == "gz" and rows_by["eee_3000"]["source"] == "gz"
    assert rows_by["bbb_1000"]["origin"] == f"{gz.resolve()}:bbb_000001.mp4"
    assert rows_by["eee_3000"]["section_start_s"] == 0.0
    for clip_id, data in [
        ("aaa_30000", media["a"]),
        ("bbb_1000", media["b"]),
        ("eee_3000", media["a"]),
    ]:
        row = rows_by[clip_id]
        assert row["status"] == st.OK and row["sha256"] == sha(data)
        placed = out / row["file"]
        assert not placed.is_symlink() and placed.read_bytes() == data  # copied out of the shard
    assert rows_by["txt_0"]["status"] == st.BAD_MEDIA
    assert rows_by["txt_0"]["reason"].startswith(f"plain: {plain.resolve()}:video/txt_000000.mp4: ")
    assert rows_by["zzz_0"]["status"] == st.MISSING
    assert (
        rows_by["zzz_0"]["reason"]
        == "in no source: looked in tar 'plain' (1 shard(s)), tar 'gz' (1 shard(s))"
    )
    # Only what the shard needs was copied out; the member indexes are cached for other jobs.
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [JOURNAL_NAME, "aaa_30000.mp4", "bbb_1000.mp4", "eee_3000.mp4"]
    )
    assert len(list((tmp_path / "download" / "_tar_index").iterdir())) == 2


def test_one_streaming_pass_per_tar_gz(tmp_path, media, monkeypatch):
    gz = write_tar(
        tmp_path / "s.tar.gz",
        {"aaa.mp4": media["a"], "bbb.mp4": media["b"], "ccc.mp4": media["a"]},
        gz=True,
    )
    calls = []
    real = chain_module.extract_members

    def spy(index, wanted):
        calls.append(sorted(wanted))
        return real(index, wanted)

    monkeypatch.setattr(chain_module, "extract_members", spy)
    rows = rows_of(("aaa", 0.0, 1.0, None), ("ccc", 0.0, 1.0, None), ("bbb", 0.0, 1.0, None))
    table, out = run(tmp_path, rows, {"tar": str(gz)})
    assert calls == [["aaa.mp4", "bbb.mp4", "ccc.mp4"]]  # the three clips' members, one pass
    for clip_id, data in [("aaa_0", media["a"]), ("bbb_0", media["b"]), ("ccc_0", media["a"])]:
        row = by_id(table)[clip_id]
        assert row["status"] == st.OK and row["sha256"] == sha(data)
        assert (out / row["file"]).read_bytes() == data

    # A clip whose look-up fails costs itself only; the others still share the one pass.
    real_find = chain_module.find_in_tars

    def broken(step, indexes, ytid, start_s, clip_id):
        if ytid == "aaa":
            raise OSError("lost")
        return real_find(step, indexes, ytid, start_s, clip_id)

    monkeypatch.setattr(chain_module, "find_in_tars", broken)
    calls.clear()
    table, _ = run(tmp_path / "again", rows, {"tar": str(gz)})
    assert calls == [["bbb.mp4", "ccc.mp4"]]
    assert list(table["status"]) == [st.ERROR, st.OK, st.OK]


def test_each_clip_is_looked_up_once(tmp_path, media, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "aaa.mp4").write_bytes(media["a"])
    calls = []
    real = chain_module.find_in_folder

    def spy(step, ytid, start_s, clip_id):
        calls.append(clip_id)
        return real(step, ytid, start_s, clip_id)

    monkeypatch.setattr(chain_module, "find_in_folder", spy)
    rows = rows_of(("aaa", 0.0, 1.0, None), ("zzz", 0.0, 1.0, None))
    table, _ = run(tmp_path, rows, {"folder": str(mirror)})
    assert sorted(calls) == ["aaa_0", "zzz_0"]
    assert list(table["status"]) == [st.OK, st.MISSING]


def test_a_failed_tar_gz_pass_leaves_the_other_shards_alone(tmp_path, media, monkeypatch):
    write_tar(tmp_path / "a.tar.gz", {"aaa.mp4": media["a"]}, gz=True)
    write_tar(tmp_path / "b.tar.gz", {"bbb.mp4": media["b"], "ccc.mp4": media["a"]}, gz=True)
    calls = []
    real = chain_module.extract_members

    def first_fails(index, wanted):
        calls.append(sorted(wanted))
        if len(calls) == 1:
            raise RuntimeError("disk hiccup")
        return real(index, wanted)

    monkeypatch.setattr(chain_module, "extract_members", first_fails)
    rows = rows_of(("aaa", 0.0, 1.0, None), ("bbb", 0.0, 1.0, None), ("ccc", 0.0, 1.0, None))
    table, _ = run(tmp_path, rows, {"tar": str(tmp_path / "*.tar.gz")})
    # a's pass failed (its clip is read on its own later); b's pass still serves both clips.
    assert sorted(calls) == [["aaa.mp4"], ["aaa.mp4"], ["bbb.mp4", "ccc.mp4"]]
    assert list(table["status"]) == [st.OK, st.OK, st.OK]


def test_truncated_member_falls_through_to_the_next_shard(tmp_path, media):
    big = media["a"]
    good = write_tar(tmp_path / "good.tar", {"ok_000000.mp4": media["b"], "cut_000000.mp4": big})
    cut = tmp_path / "cut.tar"
    cut.write_bytes(
        good.read_bytes()[: 512 + 512 * math.ceil(len(media["b"]) / 512) + 512 + len(big) // 2]
    )
    backup = write_tar(tmp_path / "backup.tar.gz", {"cut.mp4": big}, gz=True)
    rows = rows_of(("ok", 0.0, 1.0, None), ("cut", 0.0, 1.0, None), ("lost", 0.0, 1.0, None))

    log = io.StringIO()
    alone, _ = run(tmp_path / "alone", rows, {"tar": str(cut)}, log=log)
    assert f"download: {cut}: unreadable after 2 member(s): " in log.getvalue()
    row = by_id(alone)["cut_0"]
    assert row["status"] == st.BAD_MEDIA
    assert (
        row["reason"]
        == f"tar: {cut}:cut_000000.mp4: truncated member, {len(big) // 2} of {len(big)} bytes"
    )
    assert by_id(alone)["ok_0"]["status"] == st.OK  # the members before the damage are fine

    chained, out = run(
        tmp_path / "chained",
        rows,
        {"chain": [{"tar": str(cut), "name": "cut"}, {"tar": str(backup), "name": "backup"}]},
    )
    row = by_id(chained)["cut_0"]
    assert row["status"] == st.OK and row["source"] == "backup" and row["sha256"] == sha(big)
    assert row["section_start_s"] == 0.0  # named by the id alone: the whole video
    journal = read_journal(out / JOURNAL_NAME).entries
    assert [(e.clip_id, e.status) for e in journal if e.clip_id == "cut_0"] == [
        ("cut_0", st.BAD_MEDIA),
        ("cut_0", st.OK),
    ]


# -- a chain ending in a URL step --------------------------------------------------------------


def test_chain_mirror_first_then_http(tmp_path, media):
    served = {"bbb.mp4": media["b"], "www.mp4": media["a"], "mmm.mp4": media["a"]}
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "mmm_000000.mp4").write_bytes(media["b"])
    (mirror / "www_000000.mp4").write_bytes(media["text"])  # broken copy: YouTube has it
    (mirror / "qqq_000000.mp4").write_bytes(media["text"])  # broken, and YouTube lost it
    with LoopbackMediaServer(served) as server:
        template = server.url("media/{id}.mp4")
        rows = rows_of(
            *[
                (y, 0.0, 1.0, template.replace("{id}", y))
                for y in ["mmm", "bbb", "www", "qqq", "gon"]
            ],
            ("nou", 0.0, 1.0, None),  # no URL (a mapping CSV without it)
        )
        source = {"chain": [{"folder": str(mirror), "name": "hf"}, {"url_template": template}]}
        table, out = run(tmp_path, rows, source)
        counts = server.counts()
    rows_by = by_id(table)
    assert rows_by["mmm_0"]["source"] == "hf" and counts.get("/media/mmm.mp4", 0) == 0
    assert rows_by["mmm_0"]["sha256"] == sha(media["b"])
    for clip_id in ["bbb_0", "www_0"]:
        row = rows_by[clip_id]
        assert row["status"] == st.OK and row["source"] == "url", row
        assert row["sha256"] == sha((out / row["file"]).read_bytes())
        assert row["origin"] == row["url"]
    # Being gone from YouTube is not "missing": it is YouTube's answer, with the mirror's note.
    assert rows_by["gon_0"]["status"] == st.UNAVAILABLE
    assert "mirror copy" not in rows_by["gon_0"]["reason"]  # no mirror had it: nothing to add
    assert rows_by["qqq_0"]["status"] == st.UNAVAILABLE
    assert "; mirror copy unusable: hf: " in rows_by["qqq_0"]["reason"]
    assert rows_by["nou_0"]["status"] == st.MISSING
    assert rows_by["nou_0"]["reason"] == (
        f"in no source: looked in folder 'hf' ({mirror}), url 'url' (no URL for this clip)"
    )

    used = used_clips([tmp_path / "download" / "000.status.parquet"])
    assert used.to_dict("records") == [
        {"clip_id": "bbb_0", "source": "url", "sha256": rows_by["bbb_0"]["sha256"]},
        {"clip_id": "mmm_0", "source": "hf", "sha256": sha(media["b"])},
        {"clip_id": "www_0", "source": "url", "sha256": rows_by["www_0"]["sha256"]},
    ]


def test_every_unusable_mirror_copy_is_named_after_the_url_answer(tmp_path, media, request):
    # Short mirror paths, so that both complaints fit in the reason's 300 characters.
    short = Path(tempfile.mkdtemp(prefix="m", dir="/tmp"))
    request.addfinalizer(lambda: shutil.rmtree(short))
    one, two = short / "a", short / "b"
    for folder in (one, two):
        folder.mkdir()
        (folder / "qqq_000000.mp4").write_bytes(media["text"])
    with LoopbackMediaServer({}) as server:
        template = server.url("media/{id}.mp4")
        source = {
            "chain": [
                {"folder": str(one), "name": "a"},
                {"folder": str(two), "name": "b"},
                {"url_template": template},
            ]
        }
        table, _ = run(
            tmp_path, rows_of(("qqq", 0.0, 1.0, template.replace("{id}", "qqq"))), source
        )
    row = by_id(table)["qqq_0"]
    assert row["status"] == st.UNAVAILABLE
    answer, _, mirrors = row["reason"].partition("; mirror copy unusable: ")
    assert answer and "mirror" not in answer
    assert mirrors.startswith(f"a: {one.resolve()}/qqq_000000.mp4: ")
    assert f"; b: {two.resolve()}/qqq" in mirrors  # its end is cut at the reason's limit


def test_the_journal_keeps_a_copy_s_seconds_to_the_millisecond(tmp_path, media, monkeypatch):
    # A clock of the chain's own that moves 0.1234567 s per reading: checking one copy
    # takes one step.
    clock = itertools.count()
    monkeypatch.setattr(
        chain_module, "time", SimpleNamespace(monotonic=lambda: next(clock) * 0.1234567)
    )
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "aaa_000007.mp4").write_bytes(media["a"])
    _, out = run(tmp_path, rows_of(("aaa", 7.0, 8.0, None)), {"folder": str(mirror)})
    (entry,) = read_journal(out / JOURNAL_NAME).entries
    assert (entry.status, entry.seconds) == (st.OK, 0.123)


# -- used_clips.csv --------------------------------------------------------------------------


def test_used_clips_csv(tmp_path, media):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for ytid, data in [("zed", media["a"]), ("abe", media["b"])]:
        (mirror / f"{ytid}.mp4").write_bytes(data)
    rows = rows_of(("zed", 0.0, 1.0, None), ("abe", 2.0, 3.0, None), ("nah", 0.0, 1.0, None))
    run(tmp_path, rows, {"folder": str(mirror), "name": "vgg mirror"})
    status = tmp_path / "download" / "000.status.parquet"
    # A second shard written before the provenance columns existed: its ok file is hashed here.
    old = tmp_path / "download" / "001.status.parquet"
    (tmp_path / "download" / "001").mkdir()
    (tmp_path / "download" / "001" / "old_0.mp4").write_bytes(b"old bytes")
    frame = read_status(status).iloc[:1].drop(columns=["source", "origin", "sha256"])
    frame = frame.assign(clip_id="old_0", file="old_0.mp4")
    frame.to_parquet(old)
    out = tmp_path / "used_clips.csv"
    assert write_used_clips([status, old], out) == 3
    assert out.read_text() == (
        "clip_id,source,sha256\n"
        f"abe_2000,vgg mirror,{sha(media['b'])}\n"
        f"old_0,url,{sha(b'old bytes')}\n"
        f"zed_0,vgg mirror,{sha(media['a'])}\n"
    )
    # The recorded hash is the one listed: the files are not read again.
    for link in (tmp_path / "download" / "000").glob("*.mp4"):
        link.unlink()
    assert write_used_clips([status], out) == 2
    assert f"zed_0,vgg mirror,{sha(media['a'])}\n" in out.read_text()
    assert media_dir_of(status) == tmp_path / "download" / "000"
    with pytest.raises(ValueError, match="x.parquet: not a download status table name"):
        media_dir_of(tmp_path / "x.parquet")


# -- the extract stage reads what a mirror placed ------------------------------------------------


def test_extract_reads_linked_and_copied_mirror_files(tmp_path, media):
    from wavbrivl.extract.config import ExtractConfig
    from wavbrivl.extract.stage import extract_shard

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "clk_000030.mp4").write_bytes(media["clock"])  # a cut clip: source 30..34 s
    write_tar(tmp_path / "s.tar", {"vid.mp4": media["clock"]})  # a whole video: source 0..4 s
    rows = rows_of(("clk", 30.0, 32.0, None), ("vid", 2.0, 4.0, None))
    source = {"chain": [{"folder": str(mirror)}, {"tar": str(tmp_path / "s.tar")}]}
    table, out = run(tmp_path, rows, source)
    assert list(table["status"]) == [st.OK, st.OK]
    cfg = ExtractConfig(frame_size=32, seed=5, frame_policy="middle")
    frame = extract_shard(rows, table, out, tmp_path / "media.parquet", cfg, threads=1)
    assert list(frame["status"]) == [st.OK, st.OK], list(frame["reason"])
    # The frame is the window's middle: 1 s into the cut file (source 31 s), 3 s into the video.
    from PIL import Image

    seconds = [
        second_of_grey(float(np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")).mean()))
        for jpeg in frame["frame"]
    ]
    assert seconds == [1, 3]
