"""download_shard end to end with real yt-dlp and ffmpeg: file:// URLs and a loopback server."""

from __future__ import annotations

import io
import math
import random
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from httpserver import LoopbackMediaServer, make_test_mp4
from media_factory import AvSpec, dominant_hz, make_av, second_of_grey, tone_hz_at

from wavbrivl import status as st
from wavbrivl.download import (
    STATUS_SCHEMA,
    DownloadConfig,
    download_shard,
    read_status,
    stage,
    worker,
)
from wavbrivl.download.journal import JOURNAL_NAME, read_journal
from wavbrivl.extract.probe import parse_probe
from wavbrivl.ffmpeg_bin import ffmpeg_exe

SOURCE_SECONDS = 6.0
# Short timeouts and backoff keep the failing cases fast.
FAST = dict(socket_timeout_s=1.0, backoff_s=0.05, max_attempts=2)


@pytest.fixture(scope="session")
def source_mp4(tmp_path_factory) -> Path:
    return make_test_mp4(tmp_path_factory.mktemp("src") / "src.mp4", SOURCE_SECONDS)


@pytest.fixture(scope="session")
def media_files(source_mp4, tmp_path_factory) -> dict[str, bytes]:
    root = tmp_path_factory.mktemp("served")
    av = source_mp4.read_bytes()
    return {
        "a.mp4": av,
        "b.mp4": av,
        "noaudio.mp4": make_test_mp4(root / "noaudio.mp4", 3.0, audio=False).read_bytes(),
        "garbage.mp4": b"<html><body>sorry</body></html>\n" * 100,
    }


@pytest.fixture
def server(media_files):
    with LoopbackMediaServer(media_files, stall_s=3.0) as srv:
        yield srv


def rows_of(*clips: tuple[str, str, float, float]) -> pd.DataFrame:
    return pd.DataFrame(clips, columns=["clip_id", "url", "start_s", "end_s"])


def by_id(table: pd.DataFrame) -> dict[str, dict]:
    return {row["clip_id"]: row for row in table.to_dict("records")}


def decoded_seconds(path: Path) -> float:
    """Decode the whole file (fails on a broken one) and return its duration."""
    full = subprocess.run(
        [ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(path), "-f", "null", "-"],
        capture_output=True,
        text=True,
    )
    assert full.returncode == 0 and not full.stderr.strip(), full.stderr
    probe = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True
    )
    duration = parse_probe(probe.stderr).duration_s
    assert duration is not None, probe.stderr
    return duration


def assert_no_temp_leftovers(out_dir: Path) -> None:
    assert not [p.name for p in out_dir.iterdir() if p.name.startswith(".tmp-")]


# -- file:// ---------------------------------------------------------------------------------


def test_file_urls_download_whole_files(tmp_path, source_mp4):
    url = source_mp4.as_uri()
    rows = rows_of(("c1_1000", url, 1.0, 3.0), ("c2_0", url, 0.0, 2.0), ("c3_4000", url, 4.0, 6.0))
    out, status_path = tmp_path / "media", tmp_path / "000.status.parquet"
    cfg = DownloadConfig(allow_file_urls=True, **FAST)

    table = download_shard(rows, out, status_path, cfg, threads=2)

    assert list(table["clip_id"]) == list(rows["clip_id"])  # one row per clip, input order
    assert set(table["status"]) == {st.OK}
    for row in table.to_dict("records"):
        path = out / row["file"]
        assert row["file"] == f"{row['clip_id']}.mp4"
        assert row["bytes"] == path.stat().st_size == source_mp4.stat().st_size
        # No cut is possible for file://: the file is the whole source.
        assert row["section_start_s"] == 0.0 and math.isnan(row["section_end_s"])
        assert decoded_seconds(path) == pytest.approx(SOURCE_SECONDS, abs=0.2)
        assert row["attempts"] == 1 and row["reason"] == ""
    assert pq.read_schema(status_path).remove_metadata().equals(STATUS_SCHEMA)
    pd.testing.assert_frame_equal(read_status(status_path), table)
    assert_no_temp_leftovers(out)


def test_file_urls_refused_unless_allowed(tmp_path, source_mp4):
    rows = rows_of(("c1_0", source_mp4.as_uri(), 0.0, 2.0))
    table = download_shard(rows, tmp_path / "m", tmp_path / "s.parquet", DownloadConfig(**FAST))
    row = by_id(table)["c1_0"]
    assert row["status"] == st.ERROR and "allow_file_urls" in row["reason"]
    assert row["attempts"] == 0 and pd.isna(row["file"])
    assert read_journal(tmp_path / "m" / JOURNAL_NAME).entries == []  # nothing was attempted
    assert not list((tmp_path / "m").glob("*.mp4"))


def test_missing_file_source_is_unavailable_with_a_clear_reason(tmp_path):
    missing = tmp_path / "sources" / "nothing.mp4"
    rows = rows_of(("c1_0", missing.as_uri(), 0.0, 2.0))
    cfg = DownloadConfig(allow_file_urls=True, **FAST)
    row = by_id(download_shard(rows, tmp_path / "m", tmp_path / "s.parquet", cfg))["c1_0"]
    assert row["status"] == st.UNAVAILABLE  # not retried on every rerun
    assert row["reason"].startswith(f"source file {missing} does not exist (yt-dlp: ")


def test_forced_cut_of_a_file_url_fails_with_ytdlp_reason(tmp_path, source_mp4):
    rows = rows_of(("c1_0", source_mp4.as_uri(), 0.0, 2.0))
    cfg = DownloadConfig(allow_file_urls=True, sections="always", **FAST)
    row = by_id(download_shard(rows, tmp_path / "m", tmp_path / "s.parquet", cfg))["c1_0"]
    assert row["status"] == st.ERROR
    assert "cannot be partially downloaded" in row["reason"]
    assert not list((tmp_path / "m").glob("*.mp4"))


def test_refused_cut_falls_back_to_the_whole_file(tmp_path, source_mp4, monkeypatch):
    # Make `auto` try to cut a file:// source so yt-dlp refuses and the fallback runs.
    monkeypatch.setattr(worker, "plan_section", lambda url, start, end, cfg: (start, end))
    rows = rows_of(("c1_1000", source_mp4.as_uri(), 1.0, 2.0))
    cfg = DownloadConfig(allow_file_urls=True, sections="auto", **FAST)
    row = by_id(download_shard(rows, tmp_path / "m", tmp_path / "s.parquet", cfg))["c1_1000"]
    assert row["status"] == st.OK and row["attempts"] == 1
    assert row["section_start_s"] == 0.0 and math.isnan(row["section_end_s"])
    assert decoded_seconds(tmp_path / "m" / row["file"]) == pytest.approx(SOURCE_SECONDS, abs=0.2)


# -- HTTP ------------------------------------------------------------------------------------


def test_http_shard_cuts_classifies_and_reruns(tmp_path, server):
    rows = rows_of(
        ("ok_a", server.url("media/a.mp4"), 1.0, 3.5),
        ("ok_b", server.url("media/b.mp4"), 2.0, 4.0),
        ("missing", server.url("media/nothing-here.mp4"), 0.0, 2.0),
        ("gone", server.url("gone/a.mp4"), 0.0, 2.0),
        ("limited", server.url("ratelimited/a.mp4"), 0.0, 2.0),
        ("truncated", server.url("truncated/a.mp4"), 1.0, 5.0),
        ("slow", server.url("slow/a.mp4"), 0.0, 2.0),
        ("no_audio", server.url("media/noaudio.mp4"), 0.0, 2.0),
        ("../escape", server.url("media/a.mp4"), 0.0, 2.0),
    )
    out, status_path = tmp_path / "media", tmp_path / "007.status.parquet"
    cfg = DownloadConfig(**FAST)

    log = io.StringIO()
    first = by_id(download_shard(rows, out, status_path, cfg, threads=4, log=log))

    expected = {
        "ok_a": st.OK,
        "ok_b": st.OK,
        "missing": st.UNAVAILABLE,
        "gone": st.UNAVAILABLE,
        "limited": st.RATE_LIMITED,
        "truncated": st.ERROR,
        "slow": st.TIMEOUT,
        "no_audio": st.BAD_MEDIA,
        "../escape": st.ERROR,
    }
    assert {cid: row["status"] for cid, row in first.items()} == expected
    # The log's last line counts them (by hand from `expected`, in vocabulary order).
    summary = "ok=2 unavailable=2 rate_limited=1 timeout=1 bad_media=1 error=2"
    assert log.getvalue().rstrip().splitlines()[-1] == f"download: {out.resolve()}: {summary}"
    # A real cut: the file holds [start, end) and says so.
    for cid, (start, end) in {"ok_a": (1.0, 3.5), "ok_b": (2.0, 4.0)}.items():
        row = first[cid]
        assert (row["section_start_s"], row["section_end_s"]) == (start, end)
        assert decoded_seconds(out / row["file"]) == pytest.approx(end - start, abs=0.15)
    assert "ffmpeg exited" in first["truncated"]["reason"]
    assert "timed out" in first["slow"]["reason"].lower()
    assert "audio" in first["no_audio"]["reason"]
    assert first["../escape"]["reason"].startswith("unsafe clip id")
    # Retriable failures used this run's attempts; permanent ones stopped at the first.
    assert [first[c]["attempts"] for c in ("limited", "truncated", "slow")] == [2, 2, 2]
    assert [first[c]["attempts"] for c in ("missing", "gone", "no_audio", "ok_a")] == [1, 1, 1, 1]
    assert first["../escape"]["attempts"] == 0
    # Only finished files under final names; no temp folders; nothing outside out_dir.
    assert sorted(p.name for p in out.glob("*.mp4")) == ["ok_a.mp4", "ok_b.mp4"]
    assert_no_temp_leftovers(out)
    assert not (tmp_path / "escape.mp4").exists()

    # Rerun: ok and permanent failures make no request; retriable ones are tried again.
    before = server.counts()
    second = by_id(download_shard(rows, out, status_path, cfg, threads=4))
    after = server.counts()
    for path in (
        "/media/a.mp4",
        "/media/b.mp4",
        "/media/nothing-here.mp4",
        "/gone/a.mp4",
        "/media/noaudio.mp4",
    ):
        assert after.get(path, 0) == before.get(path, 0), path
    for path in ("/ratelimited/a.mp4", "/truncated/a.mp4", "/slow/a.mp4"):
        assert after[path] > before[path], path
    assert {cid: row["status"] for cid, row in second.items()} == expected
    assert [second[c]["attempts"] for c in ("limited", "truncated", "slow")] == [4, 4, 4]
    assert second["ok_a"]["attempts"] == 1 and second["ok_a"]["seconds"] == 0.0
    assert second["ok_a"]["bytes"] == first["ok_a"]["bytes"]
    assert read_status(status_path)["attempts"].tolist() == [
        second[c]["attempts"] for c in rows["clip_id"]
    ]

    # retry_permanent: permanent failures are asked again, finished clips still are not.
    before = server.counts()
    third = by_id(
        download_shard(rows, out, status_path, DownloadConfig(retry_permanent=True, **FAST))
    )
    after = server.counts()
    assert after["/media/nothing-here.mp4"] > before["/media/nothing-here.mp4"]
    assert after["/media/a.mp4"] == before["/media/a.mp4"]
    assert third["missing"]["attempts"] == 2


def test_cut_file_starts_at_the_recorded_section_start(tmp_path):
    """The span must be right: extraction maps file time t to source time section_start_s + t.

    The source carries a clock (tone and grey level step every second); the cut starts off
    a keyframe, so a stream copy that kept the pre-roll visible would show the wrong second.
    """
    clock = make_av(tmp_path / "clock.mp4", AvSpec(duration_s=6.0, faststart=True))
    with LoopbackMediaServer({"clock.mp4": clock.read_bytes()}) as srv:
        rows = rows_of(("clock_2700", srv.url("media/clock.mp4"), 2.7, 4.7))
        table = download_shard(rows, tmp_path / "m", tmp_path / "s.parquet", DownloadConfig(**FAST))
    row = by_id(table)["clock_2700"]
    assert row["status"] == st.OK and row["section_start_s"] == 2.7
    path = tmp_path / "m" / row["file"]

    rate = 16000
    pcm = subprocess.run(
        [
            ffmpeg_exe(),
            "-v",
            "error",
            "-i",
            str(path),
            "-ac",
            "1",
            "-ar",
            str(rate),
            "-f",
            "f32le",
            "-",
        ],
        capture_output=True,
        check=True,
    ).stdout
    audio = np.frombuffer(pcm, np.float32)
    for t in (0.0, 0.4, 1.4):  # windows inside source seconds 2, 3 and 4
        window = audio[int(t * rate) : int((t + 0.2) * rate)]
        assert dominant_hz(window, rate) == pytest.approx(tone_hz_at(2.7 + t + 0.1), abs=30), t
    for t, second in ((0.1, 2), (0.5, 3), (1.5, 4)):
        rgb = subprocess.run(
            [ffmpeg_exe(), "-v", "error", "-ss", str(t), "-i", str(path), "-frames:v", "1"]
            + ["-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
            capture_output=True,
            check=True,
        ).stdout
        assert second_of_grey(np.frombuffer(rgb, np.uint8).mean()) == second, t


def test_whole_http_downloads_detect_truncation_and_garbage(tmp_path, server):
    rows = rows_of(
        ("whole", server.url("media/a.mp4"), 1.0, 2.0),
        ("truncated", server.url("truncated/a.mp4"), 1.0, 2.0),
        ("garbage", server.url("media/garbage.mp4"), 1.0, 2.0),
    )
    cfg = DownloadConfig(sections="never", **FAST)
    out = tmp_path / "m"
    table = by_id(download_shard(rows, out, tmp_path / "s.parquet", cfg))
    assert table["whole"]["status"] == st.OK
    assert table["whole"]["section_start_s"] == 0.0 and math.isnan(table["whole"]["section_end_s"])
    assert decoded_seconds(out / "whole.mp4") == pytest.approx(SOURCE_SECONDS, abs=0.2)
    assert table["truncated"]["status"] in st.RETRIABLE
    assert "more expected" in table["truncated"]["reason"]
    assert table["garbage"]["status"] == st.BAD_MEDIA
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith("_")) == ["whole.mp4"]


def test_padding_is_recorded_in_the_span(tmp_path, server):
    rows = rows_of(("p", server.url("media/a.mp4"), 1.0, 3.0))
    cfg = DownloadConfig(section_padding_s=0.5, **FAST)
    row = by_id(download_shard(rows, tmp_path / "m", tmp_path / "s.parquet", cfg))["p"]
    assert (row["section_start_s"], row["section_end_s"]) == (0.5, 3.5)
    assert decoded_seconds(tmp_path / "m" / "p.mp4") == pytest.approx(3.0, abs=0.15)


def test_pacing_spaces_request_starts_across_threads(tmp_path, server, monkeypatch):
    # No wall-clock margins: the slots the pacer hands out are exact numbers (its clock is
    # read once per call, inside its lock), and a request can only reach the server after
    # its thread's slot. Both hold however loaded the machine is.
    slots: list[float] = []
    reading = threading.local()

    def clock() -> float:
        reading.now = time.monotonic()
        return reading.now

    class RecordingPacer(worker.Pacer):
        def __init__(self, interval_s: float) -> None:
            super().__init__(interval_s, clock=clock)

        def wait_turn(self) -> float:
            waited = super().wait_turn()
            slots.append(reading.now + waited)  # the slot this thread was given
            return waited

    monkeypatch.setattr(stage, "Pacer", RecordingPacer)
    paths = ["gone/b.mp4", "ratelimited/a.mp4", "ratelimited/b.mp4", "media/nothing.mp4"]
    rows = rows_of(*[(f"p{i}", server.url(p), 0.0, 1.0) for i, p in enumerate(paths)])
    cfg = DownloadConfig(pace_s=0.4, max_attempts=1)

    download_shard(rows, tmp_path / "m", tmp_path / "s.parquet", cfg, threads=4)

    # One slot per yt-dlp call, each at least one interval after the one before...
    slots.sort()
    assert len(slots) == 4
    assert all(b - a >= 0.4 - 1e-9 for a, b in zip(slots, slots[1:], strict=False)), slots
    # ...and every request came after a slot: the k-th arrival is no earlier than the k-th
    # slot (time.sleep never wakes early on the monotonic clock; 1 ms for float rounding).
    first = server.first_request_times()
    arrivals = sorted(first["/" + p] for p in paths)
    assert all(a >= s - 1e-3 for a, s in zip(arrivals, slots, strict=True)), (arrivals, slots)


def test_backoff_waits_longer_after_each_failure(tmp_path, server):
    rows = rows_of(("r", server.url("ratelimited/a.mp4"), 0.0, 1.0))
    cfg = DownloadConfig(max_attempts=3, backoff_s=0.3)
    row = by_id(download_shard(rows, tmp_path / "m", tmp_path / "s.parquet", cfg))["r"]
    times = server.request_times("ratelimited/a.mp4")
    assert row["attempts"] == 3 and len(times) == 3
    # Lower bounds only, which load cannot break: the server logs a request before it
    # answers, and the client sleeps its backoff (>= 0.3 s, then >= 0.6 s) after the answer.
    first_gap, second_gap = times[1] - times[0], times[2] - times[1]
    assert 0.3 <= first_gap and 0.6 <= second_gap


def test_bad_rows(tmp_path, server):
    with pytest.raises(ValueError, match="end_s"):
        download_shard(
            pd.DataFrame({"clip_id": ["a"], "url": ["x"], "start_s": [0.0]}),
            tmp_path / "m",
            tmp_path / "s.parquet",
            DownloadConfig(),
        )
    with pytest.raises(ValueError, match="dup"):
        download_shard(
            rows_of(("dup", "http://x/1", 0.0, 1.0), ("dup", "http://x/2", 0.0, 1.0)),
            tmp_path / "m",
            tmp_path / "s.parquet",
            DownloadConfig(),
        )
    table = by_id(
        download_shard(
            rows_of(("backwards", server.url("media/a.mp4"), 3.0, 1.0), ("nourl", None, 0.0, 1.0)),
            tmp_path / "m",
            tmp_path / "s.parquet",
            DownloadConfig(),
        )
    )
    assert table["backwards"]["status"] == st.ERROR and "time span" in table["backwards"]["reason"]
    assert table["nourl"]["status"] == st.ERROR and "url" in table["nourl"]["reason"]
    assert server.counts() == {}  # invalid rows never reach the network


def test_empty_shard_writes_an_empty_table(tmp_path):
    table = download_shard(rows_of(), tmp_path / "m", tmp_path / "s.parquet", DownloadConfig())
    assert table.empty
    assert pq.read_schema(tmp_path / "s.parquet").remove_metadata().equals(STATUS_SCHEMA)


# -- worker helpers --------------------------------------------------------------------------


def test_pacer_reserves_slots_one_interval_apart():
    now = [100.0]
    slept: list[float] = []
    pacer = worker.Pacer(0.5, clock=lambda: now[0], sleep=slept.append)
    waits = [pacer.wait_turn() for _ in range(3)]
    assert waits == [0.0, 0.5, 1.0]
    now[0] += 5.0  # idle for a while: no wait again
    assert pacer.wait_turn() == 0.0
    assert slept == [0.5, 1.0]


def test_pacer_under_threads():
    # Eight threads ask at the same instant of a frozen clock: the lock must hand out eight
    # distinct slots one interval apart. Order and counts only, nothing timed.
    pacer = worker.Pacer(0.1, clock=lambda: 50.0, sleep=lambda _: None)
    barrier = threading.Barrier(8)
    waits: list[float] = []
    lock = threading.Lock()

    def go():
        barrier.wait()
        waited = pacer.wait_turn()
        with lock:
            waits.append(waited)

    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(waits) == pytest.approx([0.1 * k for k in range(8)])


def test_backoff_doubles_with_bounded_seeded_jitter():
    delays = [worker.backoff_delay(n, 2.0, random.Random(f"c/{n}")) for n in (1, 2, 3)]
    for n, delay in enumerate(delays, start=1):
        assert 2.0 * 2 ** (n - 1) <= delay <= 1.5 * 2.0 * 2 ** (n - 1)
    again = [worker.backoff_delay(n, 2.0, random.Random(f"c/{n}")) for n in (1, 2, 3)]
    assert delays == again
