"""The extraction stage's shard logic (wavbrivl.extract.stage) with the batch runner faked.

tests/test_extract_runner.py runs real shards through ffmpeg; here each batch's extraction is
replaced by a recorder that returns a hand-made row per clip, so the stage's own work is
tested fast and exactly: the jobs it hands out and how it batches them, duplicates, threads,
the progress and summary lines, the Parquet layout and metadata, and the inputs it refuses.
"""

from __future__ import annotations

import io
import re
import stat
import threading
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from wavbrivl import status as st
from wavbrivl.extract import stage
from wavbrivl.extract.clip import ClipJob, media_row, shown_id
from wavbrivl.extract.config import ExtractConfig
from wavbrivl.extract.media import MEDIA_SCHEMA

CFG = ExtractConfig(frame_size=32, seed=5, batch_size=1)  # one clip per call, as before


def downloads_frame(rows):
    return pd.DataFrame(rows, columns=list(stage.DOWNLOAD_COLUMNS))


def download(clip_id, file="f.mp4"):
    return {
        "clip_id": clip_id,
        "status": st.OK,
        "reason": "",
        "file": file,
        "section_start_s": 0.0,
        "section_end_s": 10.0,
    }


def manifest(*rows):
    return pd.DataFrame(list(rows), columns=list(stage.MANIFEST_COLUMNS))


class FakeClips:
    """Stands in for extract_batch: records each call (a batch of jobs), returns a row per
    job saying which job."""

    def __init__(self, status=st.OK):
        self.batches = []  # (jobs, kwargs) per call
        self.status = status
        self.lock = threading.Lock()
        self.running = 0
        self.most_running = 0
        self.barrier = None  # a threading.Barrier that every call must pass
        self.pause = 0.0  # seconds each call takes: room for another thread to overlap

    @property
    def calls(self):
        """(job, kwargs) per job handed out, in the order of the calls."""
        return [(job, kwargs) for jobs, kwargs in self.batches for job in jobs]

    def __call__(self, jobs, **kwargs):
        with self.lock:
            self.batches.append((list(jobs), kwargs))
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            if self.barrier is not None:
                self.barrier.wait()
            time.sleep(self.pause)
            return [self.row(job) for job in jobs]
        finally:
            with self.lock:
                self.running -= 1

    def row(self, job):
        status = self.status(job) if callable(self.status) else self.status
        return media_row(shown_id(job.clip_id), status, "", notes=f"{job.start_s}-{job.end_s}")


@pytest.fixture
def fake(monkeypatch):
    clips = FakeClips()
    monkeypatch.setattr(stage, "extract_batch", clips)
    monkeypatch.setattr(stage, "ffmpeg_exe", lambda: "/opt/ffmpeg")
    monkeypatch.setattr(stage, "ffmpeg_has_soxr", lambda ffmpeg: ffmpeg == "/opt/ffmpeg")
    return clips


def test_each_clip_gets_its_job_and_the_shared_settings(fake, tmp_path):
    rows = manifest(("b_1", 1.0, 4.0), ("a_2", 2.0, 5.5), ("c_3", 3.0, 6.0))
    downloads = downloads_frame([download("a_2", "a.mp4"), download("b_1", "b.mp4")])
    log = io.StringIO()
    frame = stage.extract_shard(rows, downloads, str(tmp_path), tmp_path / "s.parquet", CFG,
                                threads=1, log=log)  # fmt: skip
    jobs = [job for job, _ in fake.calls]
    assert jobs == [
        ClipJob("b_1", 1.0, 4.0, download("b_1", "b.mp4")),
        ClipJob("a_2", 2.0, 5.5, download("a_2", "a.mp4")),
        ClipJob("c_3", 3.0, 6.0, None),  # no download row
    ]
    expected = {"download_dir": tmp_path, "cfg": CFG, "ffmpeg": "/opt/ffmpeg", "resampler": "soxr"}
    assert all(kwargs == expected for _, kwargs in fake.calls)
    assert all(isinstance(kwargs["download_dir"], Path) for _, kwargs in fake.calls)
    assert frame.clip_id.tolist() == ["b_1", "a_2", "c_3"]  # manifest order
    assert frame.notes.tolist() == ["1.0-4.0", "2.0-5.5", "3.0-6.0"]


def test_a_duplicate_manifest_id_is_an_error_row_and_not_extracted(fake, tmp_path):
    fake.status = lambda job: st.OK if job.clip_id == "a_1" else st.BAD_MEDIA
    rows = manifest(("a_1", 1.0, 4.0), (7, 0.0, 3.0), ("a_1", 1.0, 4.0), (7, 0.0, 3.0))
    log = io.StringIO()
    frame = stage.extract_shard(
        rows, downloads_frame([]), tmp_path, tmp_path / "s.parquet", CFG, threads=1, log=log
    )
    assert [job.clip_id for job, _ in fake.calls] == ["a_1", 7]
    duplicate = "duplicate clip id in the manifest shard"
    assert frame[["clip_id", "status", "reason"]].values.tolist() == [
        ["a_1", st.OK, ""],
        ["7", st.BAD_MEDIA, ""],  # a non-string id shows as its repr
        ["a_1", st.ERROR, duplicate],
        ["7", st.ERROR, duplicate],
    ]
    lines = log.getvalue().replace("\r", "\n").splitlines()
    # The progress bar counts the duplicates as done: it ends at 4 of 4 clips.
    assert any(re.fullmatch(r"extract: 100%\|.*\| 4/4 \[.*clip/s\]", line) for line in lines)
    assert not any(re.search(r"\b[5-9]/4\b", line) for line in lines)
    assert lines[-1] == "extract: ok=1 bad_media=1 error=2"


def test_progress_goes_to_the_log_at_most_every_two_seconds(fake, tmp_path, monkeypatch):
    """A Slurm log keeps every refresh of the bar: two seconds apart at least, not tqdm's
    default 0.1 s (a line per clip on a fast shard)."""
    bars = []
    real = stage.tqdm

    def recording_tqdm(**kwargs):
        bars.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(stage, "tqdm", recording_tqdm)
    log = io.StringIO()
    stage.extract_shard(manifest(("a_1", 1.0, 4.0)), downloads_frame([]), tmp_path,
                        tmp_path / "s.parquet", CFG, log=log)  # fmt: skip
    assert bars == [
        {"total": 1, "file": log, "desc": "extract", "unit": "clip", "mininterval": 2.0}
    ]


def test_without_soxr_the_swr_resampler_is_used_and_recorded(fake, tmp_path, monkeypatch):
    monkeypatch.setattr(stage, "ffmpeg_has_soxr", lambda ffmpeg: False)
    out = tmp_path / "s.parquet"
    stage.extract_shard(manifest(("a_1", 1.0, 4.0)), downloads_frame([]), tmp_path, out, CFG,
                        log=io.StringIO())  # fmt: skip
    assert fake.calls[0][1]["resampler"] == "swr"
    meta = {k.decode(): v.decode() for k, v in pq.read_schema(out).metadata.items()}
    assert meta == {
        "wavbrivl.frame_size": "32",
        "wavbrivl.sample_rate": "16000",
        "wavbrivl.frame_policy": "middle",
        "wavbrivl.frame_seed": "5",
        "wavbrivl.jpeg_quality": str(CFG.jpeg_quality),
        "wavbrivl.resampler": "swr",
    }


def test_one_thread_runs_one_batch_at_a_time(fake, tmp_path):
    fake.pause = 0.02  # a second worker, if there were one, would overlap
    rows = manifest(*[(f"c_{i}", 0.0, 1.0) for i in range(4)])
    stage.extract_shard(rows, downloads_frame([]), tmp_path, tmp_path / "s.parquet", CFG,
                        threads=1, log=io.StringIO())  # fmt: skip
    assert fake.most_running == 1


@pytest.mark.parametrize("threads", [0, -3])
def test_fewer_than_one_thread_means_one(fake, tmp_path, threads):
    fake.pause = 0.02
    rows = manifest(*[(f"c_{i}", 0.0, 1.0) for i in range(3)])
    frame = stage.extract_shard(rows, downloads_frame([]), tmp_path, tmp_path / "s.parquet",
                                CFG, threads=threads, log=io.StringIO())  # fmt: skip
    assert frame.status.tolist() == [st.OK] * 3 and fake.most_running == 1


def test_two_threads_by_default(fake, tmp_path):
    # Pairs of calls meet at the barrier (so two run at once), and a third worker, if there
    # were one, would start while a pair still runs (each call lasts 50 ms after the barrier).
    fake.barrier = threading.Barrier(2, timeout=10)
    fake.pause = 0.05
    rows = manifest(*[(f"c_{i}", 0.0, 1.0) for i in range(4)])
    frame = stage.extract_shard(rows, downloads_frame([]), tmp_path, tmp_path / "s.parquet",
                                CFG, log=io.StringIO())  # fmt: skip
    assert frame.status.tolist() == [st.OK] * 4 and fake.most_running == 2


def test_three_threads_run_three_batches_at_once(fake, tmp_path):
    # Every call waits until three are running: only three workers get past the barrier.
    fake.barrier = threading.Barrier(3, timeout=10)
    rows = manifest(*[(f"c_{i}", 0.0, 1.0) for i in range(3)])
    frame = stage.extract_shard(rows, downloads_frame([]), tmp_path, tmp_path / "s.parquet",
                                CFG, threads=3, log=io.StringIO())  # fmt: skip
    assert frame.status.tolist() == [st.OK] * 3 and fake.most_running == 3


def test_consecutive_clips_share_a_batch_and_duplicates_join_none(fake, tmp_path):
    """Nine manifest rows, two of them repeats, batches of three: the seven clips to extract
    go out as [c0 c1 c2] [c3 c4 c5] [c6] (manifest order, repeats skipped); every row lands
    at its own manifest position."""
    ids = ["c0", "c1", "c0", "c2", "c3", "c4", "c1", "c5", "c6"]
    rows = manifest(*[(c, float(i), i + 2.5) for i, c in enumerate(ids)])
    cfg = ExtractConfig(frame_size=32, batch_size=3)
    log = io.StringIO()
    frame = stage.extract_shard(rows, downloads_frame([]), tmp_path, tmp_path / "s.parquet",
                                cfg, threads=1, log=log)  # fmt: skip
    assert [[job.clip_id for job in jobs] for jobs, _ in fake.batches] == [
        ["c0", "c1", "c2"],
        ["c3", "c4", "c5"],
        ["c6"],
    ]
    assert [job.start_s for jobs, _ in fake.batches for job in jobs] == [0, 1, 3, 4, 5, 7, 8]
    duplicate = "duplicate clip id in the manifest shard"
    assert frame[["clip_id", "reason", "notes"]].values.tolist() == [
        ["c0", "", "0.0-2.5"],
        ["c1", "", "1.0-3.5"],
        ["c0", duplicate, ""],
        ["c2", "", "3.0-5.5"],
        ["c3", "", "4.0-6.5"],
        ["c4", "", "5.0-7.5"],
        ["c1", duplicate, ""],
        ["c5", "", "7.0-9.5"],
        ["c6", "", "8.0-10.5"],
    ]
    lines = log.getvalue().replace("\r", "\n").splitlines()
    assert any(re.fullmatch(r"extract: 100%\|.*\| 9/9 \[.*clip/s\]", line) for line in lines)
    assert not any(re.search(r"\b(1[0-9]|[0-9]{3})/9\b", line) for line in lines)


def test_the_default_batch_is_eight_clips(fake, tmp_path):
    rows = manifest(*[(f"c_{i}", 0.0, 1.0) for i in range(17)])
    stage.extract_shard(rows, downloads_frame([]), tmp_path, tmp_path / "s.parquet",
                        ExtractConfig(), threads=1, log=io.StringIO())  # fmt: skip
    assert [len(jobs) for jobs, _ in fake.batches] == [8, 8, 1]


def test_a_batch_that_finishes_first_still_fills_its_own_rows(fake, tmp_path, monkeypatch):
    """Two workers, batches of two: the first batch finishes last, its rows still go first."""
    real = fake.__call__
    first_done = threading.Event()

    def slow_first(jobs, **kwargs):
        if jobs[0].clip_id == "c_0":
            assert first_done.wait(10)  # the second batch is back before this one
        rows = real(jobs, **kwargs)
        first_done.set()
        return rows

    monkeypatch.setattr(stage, "extract_batch", slow_first)
    rows = manifest(*[(f"c_{i}", float(i), 9.0) for i in range(4)])
    cfg = ExtractConfig(frame_size=32, batch_size=2)
    frame = stage.extract_shard(rows, downloads_frame([]), tmp_path, tmp_path / "s.parquet",
                                cfg, threads=2, log=io.StringIO())  # fmt: skip
    assert [[job.clip_id for job in jobs] for jobs, _ in fake.batches] == [
        ["c_2", "c_3"],
        ["c_0", "c_1"],
    ]
    assert frame.clip_id.tolist() == ["c_0", "c_1", "c_2", "c_3"]
    assert frame.notes.tolist() == ["0.0-9.0", "1.0-9.0", "2.0-9.0", "3.0-9.0"]


def test_a_batch_that_returns_a_row_too_few_stops_the_shard(fake, tmp_path, monkeypatch):
    """A batch runner must give one row per job: a missing row is a bug, not a clip's row."""

    def one_short(jobs, **kwargs):
        return fake(jobs, **kwargs)[:-1]

    monkeypatch.setattr(stage, "extract_batch", one_short)
    rows = manifest(*[(f"c_{i}", 0.0, 1.0) for i in range(3)])
    cfg = ExtractConfig(frame_size=32, batch_size=3)
    out = tmp_path / "s.parquet"
    with pytest.raises(ValueError, match=r"^zip\(\) argument 2 is shorter than argument 1$"):
        stage.extract_shard(rows, downloads_frame([]), tmp_path, out, cfg, log=io.StringIO())
    assert not out.exists()


@pytest.mark.parametrize("size", [0, 65, 2.5])
def test_a_batch_size_outside_1_to_64_is_refused(size):
    with pytest.raises(ValueError, match=r"^invalid config at 'extract.batch_size': "):
        ExtractConfig(batch_size=size)


def test_parquet_layout_row_groups_compression_and_dictionaries(fake, tmp_path):
    """130 rows: one full row group of 128 and the rest; JPEG/FLAC columns left uncompressed
    (compressed already), the small columns zstd; status/reason/notes dictionary-encoded."""
    rows = manifest(*[(f"c_{i}", 0.0, 1.0) for i in range(130)])
    out = tmp_path / "s.parquet"
    stage.extract_shard(rows, downloads_frame([]), tmp_path, out, CFG, threads=2,
                        log=io.StringIO())  # fmt: skip
    meta = pq.ParquetFile(out).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [128, 2]
    group = meta.row_group(0)
    columns = {group.column(i).path_in_schema: group.column(i) for i in range(group.num_columns)}
    assert list(columns) == MEDIA_SCHEMA.names
    for name, column in columns.items():
        expected = "UNCOMPRESSED" if name in ("frame", "audio") else "ZSTD"
        assert column.compression == expected, name
        dictionary = column.dictionary_page_offset is not None
        assert dictionary == (name in ("status", "reason", "notes")), name
    assert not list(tmp_path.glob(".*"))  # written atomically: no temp file left


def test_inputs_missing_columns_are_refused_naming_them(fake, tmp_path):
    out = tmp_path / "s.parquet"
    rows = pd.DataFrame({"clip_id": ["a"], "start_s": [0.0]})
    message = "manifest rows lack columns ['end_s'] (have ['clip_id', 'start_s'])"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        stage.extract_shard(rows, downloads_frame([]), tmp_path, out, CFG)
    downloads = downloads_frame([]).drop(columns=["reason", "file"])
    message = (
        "download status lack columns ['reason', 'file'] "
        "(have ['clip_id', 'status', 'section_start_s', 'section_end_s'])"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        stage.extract_shard(manifest(("a", 0.0, 1.0)), downloads, tmp_path, out, CFG)
    assert not out.exists() and not fake.calls


def test_duplicate_download_rows_are_refused_naming_five(fake, tmp_path):
    ids = ["f", "b", "e", "a", "d", "c", "g"]
    downloads = downloads_frame([download(i) for i in ids + ids[:6] + ["b"]])
    message = "download status has duplicate clip ids: ['a', 'b', 'c', 'd', 'e']"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        stage.extract_shard(manifest(("a", 0.0, 1.0)), downloads, tmp_path, tmp_path / "o", CFG)
    assert not fake.calls


def _fake_ffmpeg(path: Path, configuration: str) -> str:
    """A script that prints a build configuration for exactly ``-hide_banner -version``."""
    path.write_text(
        "#!/bin/sh\n"
        'if [ "$*" = "-hide_banner -version" ]; then\n'
        f'  echo "ffmpeg version 6.1"; echo "configuration: {configuration}"\n'
        "fi\n"
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_soxr_is_detected_from_the_build_configuration(tmp_path):
    with_soxr = _fake_ffmpeg(tmp_path / "ffmpeg-a", "--enable-gpl --enable-libsoxr")
    without = _fake_ffmpeg(tmp_path / "ffmpeg-b", "--enable-gpl --enable-libmp3lame")
    assert stage.ffmpeg_has_soxr(with_soxr) is True
    assert stage.ffmpeg_has_soxr(without) is False
