"""The circuit breaker with real yt-dlp against a loopback server that answers 429 after K clips:
which clips end ok / rate_limited / deferred, the one line, and the rerun that fetches them.

(The breaker's own unit tests and the bot-check text: tests/test_download_breaker.py.)
"""

from __future__ import annotations

import io

import pandas as pd
import pytest
from httpserver import LoopbackMediaServer, make_test_mp4

from wavbrivl import status as st
from wavbrivl.download import DownloadConfig, download_shard, worker
from wavbrivl.download.breaker import CircuitBreaker, retry_marker
from wavbrivl.download.journal import JOURNAL_NAME, Journal, read_journal
from wavbrivl.download.status_table import Clip


def rows_of(*clips) -> pd.DataFrame:
    return pd.DataFrame(clips, columns=["clip_id", "url", "start_s", "end_s"])


# -- real yt-dlp against a loopback server that starts answering 429 ---------------------------

FAST = dict(socket_timeout_s=2.0, backoff_s=0.0, max_attempts=1)
N_CLIPS = 7


@pytest.fixture(scope="module")
def clip_bytes(tmp_path_factory) -> bytes:
    return make_test_mp4(tmp_path_factory.mktemp("breaker_src") / "src.mp4", 3.0).read_bytes()


def quota_rows(server: LoopbackMediaServer) -> pd.DataFrame:
    return rows_of(*[(f"q{i}", server.url(f"quota/q{i}.mp4"), 0.5, 2.0) for i in range(N_CLIPS)])


def test_blocked_shard_defers_the_rest_and_a_rerun_fetches_them(tmp_path, clip_bytes):
    files = {f"q{i}.mp4": clip_bytes for i in range(N_CLIPS)}
    out, status_path = tmp_path / "media", tmp_path / "003.status.parquet"
    # One thread, one attempt per clip, no pacing: the clips are asked in row order.
    cfg = DownloadConfig(breaker_after=2, **FAST)
    with LoopbackMediaServer(files, quota=3) as server:
        rows = quota_rows(server)
        log = io.StringIO()
        first = download_shard(rows, out, status_path, cfg, threads=1, log=log)

        # By hand: q0-q2 fit the quota; q3 and q4 get 429 (2 in a row: tripped); q5-q6 wait.
        assert first["status"].tolist() == [st.OK] * 3 + [st.RATE_LIMITED] * 2 + [st.DEFERRED] * 2
        assert first["attempts"].tolist() == [1, 1, 1, 1, 1, 0, 0]
        assert server.admitted() == ["q0.mp4", "q1.mp4", "q2.mp4"]
        for cid in ("q5", "q6"):  # a deferred clip was never asked for
            assert server.count(f"quota/{cid}.mp4") == 0, cid
        assert server.count("quota/q4.mp4") >= 1
        deferred_reasons = first.loc[first["status"] == st.DEFERRED, "reason"]
        assert deferred_reasons.str.contains("HTTP Error 429").all()
        lines = log.getvalue().rstrip().splitlines()
        blocked = [line for line in lines if "BLOCKED" in line]
        assert len(blocked) == 1
        assert "2 clip(s) deferred" in blocked[0]
        assert f"run snakemake again: it reruns this shard ({status_path})" in blocked[0]
        # The retry marker (a download-rule input) holds the line and is newer than the table.
        marker = retry_marker(status_path)
        assert marker == tmp_path / "003.retry"
        assert marker.read_text() == blocked[0] + "\n"
        assert marker.stat().st_mtime > status_path.stat().st_mtime
        assert lines[-1].endswith("ok=3 rate_limited=2 deferred=2")
        assert sorted(p.name for p in out.glob("*.mp4")) == ["q0.mp4", "q1.mp4", "q2.mp4"]

        # The block is over: the rerun asks only what is not ok, and gets it all.
        server.quota = None
        before = server.counts()
        log = io.StringIO()
        second = download_shard(rows, out, status_path, cfg, threads=1, log=log)
        after = server.counts()
    assert second["status"].tolist() == [st.OK] * N_CLIPS
    assert second["attempts"].tolist() == [1, 1, 1, 2, 2, 1, 1]
    # Nothing deferred now: the marker is left as it was, older than the new table.
    assert marker.read_text() == blocked[0] + "\n"
    assert marker.stat().st_mtime < status_path.stat().st_mtime
    for i in range(3):
        path = f"/quota/q{i}.mp4"
        assert after[path] == before[path], path
    for i in range(3, N_CLIPS):
        assert after[f"/quota/q{i}.mp4"] > before.get(f"/quota/q{i}.mp4", 0), i
    assert "BLOCKED" not in log.getvalue()


def test_breaker_off_asks_every_clip(tmp_path, clip_bytes):
    files = {f"q{i}.mp4": clip_bytes for i in range(N_CLIPS)}
    cfg = DownloadConfig(breaker_after=0, **FAST)
    with LoopbackMediaServer(files, quota=3) as server:
        table = download_shard(
            quota_rows(server), tmp_path / "m", tmp_path / "s.parquet", cfg, threads=1
        )
        assert all(server.count(f"quota/q{i}.mp4") >= 1 for i in range(N_CLIPS))
    assert table["status"].tolist() == [st.OK] * 3 + [st.RATE_LIMITED] * 4


def test_threads_never_ask_a_deferred_clip(tmp_path, clip_bytes):
    # Order across threads is not fixed; what must hold whatever the order is asserted.
    files = {f"q{i}.mp4": clip_bytes for i in range(N_CLIPS)}
    cfg = DownloadConfig(breaker_after=1, **FAST)
    with LoopbackMediaServer(files, quota=2) as server:
        table = download_shard(
            quota_rows(server), tmp_path / "m", tmp_path / "s.parquet", cfg, threads=3
        )
        for row in table.to_dict("records"):
            asked = server.count(f"quota/{row['clip_id']}.mp4")
            assert (asked == 0) == (row["status"] == st.DEFERRED), row
    assert set(table["status"]) <= {st.OK, st.RATE_LIMITED, st.DEFERRED}
    assert (table["status"] == st.OK).sum() == 2
    assert (table["status"] == st.DEFERRED).sum() >= 1  # 5 refused, the first 429 trips it


def test_a_clip_waiting_for_its_turn_when_the_breaker_trips_is_not_asked(tmp_path, clip_bytes):
    """The pacer's wait can outlast the block: the check after it must stop the request."""
    breaker = CircuitBreaker(1)

    class TrippingPacer(worker.Pacer):
        def wait_turn(self) -> float:
            breaker.record(st.RATE_LIMITED, "HTTP Error 429 (another thread)")
            return 0.0

    with LoopbackMediaServer({"a.mp4": clip_bytes}) as server:
        clip = Clip("late", server.url("media/a.mp4"), 0.5, 2.0)
        out = tmp_path / "m"
        out.mkdir()
        with Journal(out / JOURNAL_NAME) as journal:
            journal.open()
            clip_worker = worker.ClipWorker(
                out, DownloadConfig(**FAST), journal, {}, TrippingPacer(0.0), breaker
            )
            row = clip_worker.download(clip)
        assert server.counts() == {}
    assert row["status"] == st.DEFERRED and row["attempts"] == 0
    assert "another thread" in row["reason"]
    assert read_journal(out / JOURNAL_NAME).entries == []
    assert not list(out.glob(".tmp-*"))
