"""Resumability: the journal, reruns after changes, and a shard killed with SIGKILL."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from httpserver import LoopbackMediaServer, make_test_mp4

from wavbrivl import status as st
from wavbrivl.download import DownloadConfig, download_shard
from wavbrivl.download.classify import media_probe_argv
from wavbrivl.download.journal import JOURNAL_NAME, Journal, JournalEntry, read_journal
from wavbrivl.extract.probe import parse_probe
from wavbrivl.ffmpeg_bin import ffmpeg_exe

FAST = dict(socket_timeout_s=2.0, backoff_s=0.05, max_attempts=2)


@pytest.fixture(scope="session")
def clip_bytes(tmp_path_factory) -> bytes:
    return make_test_mp4(tmp_path_factory.mktemp("resume_src") / "src.mp4", 5.0).read_bytes()


def entry(clip_id: str, status: str = st.OK, attempt: int = 1) -> JournalEntry:
    ok = status == st.OK
    return JournalEntry(
        clip_id=clip_id,
        url=f"http://127.0.0.1/{clip_id}",
        status=status,
        reason="" if ok else "HTTP Error 429",
        attempt=attempt,
        bytes=123 if ok else 0,
        seconds=0.5,
        file=f"{clip_id}.mp4" if ok else None,
        section_start_s=1.0 if ok else None,
        section_end_s=None,
        finished_at="2026-01-01T00:00:00+00:00",
    )


def rows_of(*clips) -> pd.DataFrame:
    return pd.DataFrame(clips, columns=["clip_id", "url", "start_s", "end_s"])


def probe_seconds(path: Path) -> float | None:
    stderr = subprocess.run(
        media_probe_argv(ffmpeg_exe(), path), capture_output=True, text=True
    ).stderr
    return parse_probe(stderr).duration_s


# -- the journal -----------------------------------------------------------------------------


def test_journal_round_trip(tmp_path):
    path = tmp_path / JOURNAL_NAME
    written = [entry("a"), entry("b", st.RATE_LIMITED), entry("b", st.OK, attempt=2)]
    with Journal(path) as journal:
        assert journal.open().entries == []
        for e in written:
            journal.append(e)
    assert read_journal(path).entries == written


def test_torn_last_line_is_skipped_and_cut_before_appending(tmp_path):
    path = tmp_path / JOURNAL_NAME
    path.write_text(entry("a").to_json() + "\n" + entry("b").to_json()[:40], encoding="utf-8")
    contents = read_journal(path)
    assert [e.clip_id for e in contents.entries] == ["a"]
    assert contents.torn_tail_bytes == 40 and contents.bad_lines == []

    with Journal(path) as journal:
        journal.open()
        journal.append(entry("c"))
    after = read_journal(path)
    assert [e.clip_id for e in after.entries] == ["a", "c"]
    assert after.bad_lines == [] and after.torn_tail_bytes == 0


def test_corrupt_line_is_skipped_and_reported(tmp_path):
    path = tmp_path / JOURNAL_NAME
    lines = [entry("a").to_json(), "{not json", '{"clip_id": "x"}', entry("b").to_json()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    contents = read_journal(path)
    assert [e.clip_id for e in contents.entries] == ["a", "b"]
    assert contents.bad_lines == [2, 3]


def test_one_job_per_shard(tmp_path):
    with Journal(tmp_path / JOURNAL_NAME) as first:
        first.open()
        with pytest.raises(RuntimeError, match="another download job"):
            Journal(tmp_path / JOURNAL_NAME).open()


# -- reruns after changes --------------------------------------------------------------------


def test_stale_temp_dirs_are_removed(tmp_path, clip_bytes):
    out = tmp_path / "m"
    stale = out / ".tmp-old_clip"
    stale.mkdir(parents=True)
    (stale / "clip.mp4.part").write_bytes(b"half a file")
    with LoopbackMediaServer({"a.mp4": clip_bytes}) as server:
        download_shard(
            rows_of(("a", server.url("media/a.mp4"), 0.0, 1.0)),
            out,
            tmp_path / "s.parquet",
            DownloadConfig(**FAST),
        )
    assert not stale.exists()
    assert sorted(p.name for p in out.iterdir()) == [JOURNAL_NAME, "a.mp4"]


def test_rerun_fetches_again_what_no_longer_matches(tmp_path, clip_bytes):
    files = {name: clip_bytes for name in ("a.mp4", "b.mp4", "c.mp4", "d.mp4", "d2.mp4")}
    out, status_path = tmp_path / "m", tmp_path / "s.parquet"
    with LoopbackMediaServer(files) as server:
        rows = rows_of(
            ("deleted", server.url("media/a.mp4"), 1.0, 2.0),
            ("resized", server.url("media/b.mp4"), 1.0, 2.0),
            ("longer", server.url("media/c.mp4"), 1.0, 2.0),
            ("moved", server.url("media/d.mp4"), 1.0, 2.0),
        )
        first = download_shard(rows, out, status_path, DownloadConfig(**FAST))
        assert set(first["status"]) == {st.OK}

        (out / "deleted.mp4").unlink()
        with open(out / "resized.mp4", "ab") as fh:
            fh.write(b"\0")
        rows.loc[rows.clip_id == "longer", "end_s"] = 3.0  # beyond the span that was cut
        rows.loc[rows.clip_id == "moved", "url"] = server.url("media/d2.mp4")
        before = server.counts()
        second = download_shard(rows, out, status_path, DownloadConfig(**FAST)).set_index("clip_id")
        after = server.counts()

    assert set(second["status"]) == {st.OK}
    for path in ("/media/a.mp4", "/media/b.mp4", "/media/c.mp4"):
        assert after[path] > before[path], path
    assert after["/media/d2.mp4"] > 0 and after["/media/d.mp4"] == before["/media/d.mp4"]
    assert second.loc["deleted", "attempts"] == 2
    assert second.loc["moved", "attempts"] == 1  # a new source starts a new count
    assert second.loc["longer", "section_end_s"] == 3.0
    assert probe_seconds(out / "longer.mp4") == pytest.approx(2.0, abs=0.15)
    assert (out / "resized.mp4").stat().st_size == second.loc["resized", "bytes"]


# -- kill and rerun --------------------------------------------------------------------------

_CHILD = """
import sys
from pathlib import Path
import pandas as pd
from wavbrivl.download import DownloadConfig, download_shard
rows = pd.read_parquet(sys.argv[1])
cfg = DownloadConfig(socket_timeout_s=120.0, backoff_s=0.05, max_attempts=2)
download_shard(rows, Path(sys.argv[2]), Path(sys.argv[3]), cfg, threads=2)
"""


def _ok_entries(out: Path) -> dict[str, JournalEntry]:
    last: dict[str, JournalEntry] = {}
    for e in read_journal(out / JOURNAL_NAME).entries:
        last[e.clip_id] = e
    return {cid: e for cid, e in last.items() if e.status == st.OK}


def test_killed_shard_leaves_only_finished_files_and_resumes(tmp_path, clip_bytes):
    n_clips = 12
    names = [f"c{i:02d}" for i in range(n_clips)]
    out, status_path = tmp_path / "media", tmp_path / "003.status.parquet"
    script = tmp_path / "child.py"
    script.write_text(_CHILD, encoding="utf-8")

    # The first three clips are served, the rest held until the rerun: the kill lands while
    # clips are in flight, whenever it comes (two threads, clips started in order).
    n_free = 3
    with LoopbackMediaServer({f"{n}.mp4": clip_bytes for n in names}) as server:
        routes = ["media"] * n_free + ["held"] * (n_clips - n_free)
        urls = [server.url(f"{route}/{n}.mp4") for n, route in zip(names, routes, strict=True)]
        rows = rows_of(*[(n, url, 1.0, 3.0) for n, url in zip(names, urls, strict=True)])
        rows_path = tmp_path / "rows.parquet"
        rows.to_parquet(rows_path)

        child = subprocess.Popen(
            [sys.executable, str(script), str(rows_path), str(out), str(status_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: ffmpeg children die with it
        )
        try:
            deadline = time.monotonic() + 120  # a bound on a hang, not a margin: no race here
            # Wait for files under their final names: the journal line is written just
            # before the rename, so counting journal lines could kill between the two.
            while len(list(out.glob("*.mp4"))) < n_free:
                assert child.poll() is None, "the shard finished before it could be killed"
                assert time.monotonic() < deadline, "no clip finished in time"
                time.sleep(0.05)
        finally:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()

        # After the kill: no status table, and every file under a final name is finished.
        assert not status_path.exists()
        journalled = _ok_entries(out)
        finished = sorted(p for p in out.glob("*.mp4"))
        assert [p.stem for p in finished] == names[:n_free]
        for path in finished:
            clip_id = path.stem
            assert clip_id in journalled, f"{path.name} exists but was never journalled ok"
            assert path.stat().st_size == journalled[clip_id].bytes
            assert probe_seconds(path) == pytest.approx(2.0, abs=0.15)
        ok_before = {p.stem for p in finished}
        counts_before = server.counts()

        # Rerun to completion (in this process this time).
        server.release()
        log = io.StringIO()
        table = download_shard(rows, out, status_path, DownloadConfig(**FAST), threads=2, log=log)
        counts_after = server.counts()

    assert set(table["status"]) == {st.OK}
    assert log.getvalue().rstrip().splitlines()[-1] == f"download: {out.resolve()}: ok=12"
    for clip_id in ok_before:
        path = f"/{routes[names.index(clip_id)]}/{clip_id}.mp4"
        assert counts_after[path] == counts_before[path], f"{clip_id} was fetched again"
    for clip_id in set(names) - ok_before:
        assert probe_seconds(out / f"{clip_id}.mp4") == pytest.approx(2.0, abs=0.15)
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp-")]
    assert sorted(p.stem for p in out.glob("*.mp4")) == names
