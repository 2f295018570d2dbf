"""Several clips in one ffmpeg process (wavbrivl.extract.batch), with real ffmpeg.

The single-clip path (one process per clip, ``batch_size: 1``) is the reference: a shard
extracted in batches must give the same Parquet rows, frame and audio bytes included, for
every kind of clip, whichever clips share a process. The process counts show which path
each clip took; the parsers of a batch's stderr and its argv are checked on text written
by hand.
"""

from __future__ import annotations

import dataclasses
import io
import math
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from media_factory import (
    anamorphic_clip,
    damaged_clip,
    dominant_hz,
    garbage_file,
    long_clip,
    no_audio_clip,
    normal_clip,
    portrait_clip,
    second_of_grey,
    short_clip,
    tone_hz_at,
    truncated_clip,
)

from wavbrivl import status as st
from wavbrivl.child_process import LoggedRun
from wavbrivl.extract import batch, clip
from wavbrivl.extract.argv import ClipArgs
from wavbrivl.extract.batch import (
    Planned,
    batch_argv,
    extract_batch,
    has_error_line,
    input_descriptions,
    showinfo_times,
)
from wavbrivl.extract.clip import ClipJob, ClipWindow, extract_clip_safely
from wavbrivl.extract.config import ExtractConfig
from wavbrivl.extract.media import decode_audio, decode_frame
from wavbrivl.extract.probe import parse_probe
from wavbrivl.extract.stage import DOWNLOAD_COLUMNS, extract_shard
from wavbrivl.ffmpeg_bin import ffmpeg_exe

CFG = ExtractConfig(frame_size=40, jpeg_quality=80, clip_timeout_s=30.0)
NAN = math.nan


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("batch_media")
    long_clip(d, "long.mp4", duration_s=12.0)
    normal_clip(d, "normal.mp4")
    no_audio_clip(d)
    short_clip(d)
    anamorphic_clip(d)
    garbage_file(d)
    truncated_clip(d)
    damaged_clip(d, duration_s=12.0, keep=0.6)
    portrait_clip(d)
    short_audio_clip(d / "short_audio.mp4")
    return d


def short_audio_clip(path: Path) -> Path:
    """3 s of video with 0.5 s of sound: the file (and its description) lasts 3 s."""
    argv = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y"]
    argv += ["-f", "lavfi", "-i", "color=c=gray:s=160x120:r=25:d=3"]
    argv += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=0.5"]
    argv += ["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-f", "mp4", str(path)]
    subprocess.run(argv, check=True, capture_output=True)
    return path


def download(file, section=(0.0, NAN), status=st.OK):
    return {
        "status": status,
        "reason": "" if status == st.OK else "HTTP 404",
        "file": file if status == st.OK else None,
        "section_start_s": section[0],
        "section_end_s": section[1],
    }


JOBS = {
    "long_2000": ClipJob("long_2000", 2.0, 5.0, download("long.mp4")),
    "long_7000": ClipJob("long_7000", 7.0, 10.0, download("long.mp4")),
    "normal_0": ClipJob("normal_0", 0.0, 3.0, download("normal.mp4")),
    "anamorphic_0": ClipJob("anamorphic_0", 0.0, 3.0, download("anamorphic.mp4")),
    "portrait_0": ClipJob("portrait_0", 0.0, 3.0, download("portrait.mp4")),
    # a section of the source: [31, 34) is [1, 4) of the file
    "cut_31000": ClipJob("cut_31000", 31.0, 34.0, download("long.mp4", (30.0, 42.0))),
    "no_audio_0": ClipJob("no_audio_0", 0.0, 3.0, download("no_audio.mp4")),
    "short_0": ClipJob("short_0", 0.0, 3.0, download("short.mp4")),  # 0.5 s of media
    "asked_long_0": ClipJob("asked_long_0", 0.0, 6.0, download("normal.mp4")),  # file: 3 s
    "tiny_section_0": ClipJob("tiny_section_0", 0.0, 3.0, download("normal.mp4", (0.0, 0.5))),
    "missing_0": ClipJob("missing_0", 0.0, 3.0, download("deleted.mp4")),
    "gone_0": ClipJob("gone_0", 0.0, 3.0, download(None, status=st.UNAVAILABLE)),
    "garbage_0": ClipJob("garbage_0", 0.0, 3.0, download("garbage.mp4")),
    "truncated_0": ClipJob("truncated_0", 0.0, 3.0, download("truncated.mp4")),
    # the file's data ends near 7 s (its index says 12 s)
    "damaged_2000": ClipJob("damaged_2000", 2.0, 8.0, download("damaged.mp4")),
    "short_audio_0": ClipJob("short_audio_0", 0.0, 3.0, download("short_audio.mp4")),
}

# Worked out from the media: status, reason's start, notes.
EXPECTED = {
    "long_2000": (st.OK, "", ""),
    "long_7000": (st.OK, "", ""),
    "normal_0": (st.OK, "", ""),
    "anamorphic_0": (st.OK, "", ""),
    "portrait_0": (st.OK, "", "portrait 120x200 cropped"),
    "cut_31000": (st.OK, "", ""),
    "no_audio_0": (st.BAD_MEDIA, "no audio stream", ""),
    "short_0": (st.BAD_MEDIA, "too short: 0.52 s", ""),
    "asked_long_0": (st.OK, "", "shorter than asked: 3.0 of 6.0 s"),
    "tiny_section_0": (st.BAD_MEDIA, "too short: 0.50 s", ""),
    "missing_0": (st.ERROR, "downloaded file is missing", ""),
    "gone_0": (st.UNAVAILABLE, "download: HTTP 404", ""),
    "garbage_0": (st.BAD_MEDIA, "moov atom not found", ""),
    "truncated_0": (st.BAD_MEDIA, "moov atom not found", ""),
}


class Processes:
    """Counts the ffmpeg processes: ("batch", number of inputs, exit status) for a batch,
    ("clip", exit status) for a single-clip run."""

    def __init__(self, monkeypatch):
        self.runs = []
        self.timeouts = []  # the time limit of each process
        for module, kind in ((batch, "batch"), (clip, "clip")):
            monkeypatch.setattr(module, "run_logged", self._spy(module.run_logged, kind))

    def _spy(self, real, kind):
        def spy(argv, **kwargs):
            self.timeouts.append(kwargs["timeout"])
            inputs = (argv.count("-i"),) if kind == "batch" else ()
            try:
                result = real(argv, **kwargs)
            except subprocess.TimeoutExpired:
                self.runs.append((kind, *inputs, "timed out"))
                raise
            self.runs.append((kind, *inputs, result.returncode))
            return result

        return spy

    @property
    def batches(self):
        return [run for run in self.runs if run[0] == "batch"]

    @property
    def clips(self):
        return [run for run in self.runs if run[0] == "clip"]


def shard(ids, media, out, cfg, threads=1):
    import pandas as pd

    manifest = pd.DataFrame(
        [(i, JOBS[i].start_s, JOBS[i].end_s) for i in ids],
        columns=["clip_id", "start_s", "end_s"],
    )
    downloads = pd.DataFrame(
        [{"clip_id": i, **JOBS[i].download} for i in ids], columns=list(DOWNLOAD_COLUMNS)
    )
    extract_shard(manifest, downloads, media, out, cfg, threads=threads, log=io.StringIO())
    return pq.read_table(out)


def singles(ids, media, folder):
    """The reference: the same shard, one process per clip."""
    return shard(ids, media, folder / "single.parquet", dataclasses.replace(CFG, batch_size=1))


def assert_same_rows(table, reference):
    assert table.schema == reference.schema  # metadata included
    assert table.to_pylist() == reference.to_pylist()  # every column, bytes too


GOOD = ["long_2000", "normal_0", "anamorphic_0", "long_7000", "portrait_0", "cut_31000"]


def test_good_clips_share_one_process_and_give_the_single_clip_rows(media, tmp_path, monkeypatch):
    reference = singles(GOOD, media, tmp_path)  # computed before the processes are counted
    runs = Processes(monkeypatch)
    table = shard(GOOD, media, tmp_path / "b.parquet", dataclasses.replace(CFG, batch_size=8))
    assert runs.runs == [("batch", 6, 0)]  # one process, six inputs, no second run
    assert runs.timeouts == [6 * 30.0]  # the time limit grows with the batch
    assert_same_rows(table, reference)
    rows = {row["clip_id"]: row for row in table.to_pylist()}
    assert {i: (r["status"], r["notes"]) for i, r in rows.items()} == {
        i: (EXPECTED[i][0], EXPECTED[i][2]) for i in GOOD
    }
    # Each clip got its own input's frame and sound (the clock of long.mp4: grey and tone
    # step once a second): middle of [2, 5) is 3.5 s, of [7, 10) 8.5 s, of [31, 34) 2.5 s
    # into the file.
    for clip_id, second, start in (("long_2000", 3, 2.0), ("long_7000", 8, 7.0),
                                   ("cut_31000", 2, 1.0)):  # fmt: skip
        frame = np.asarray(decode_frame(rows[clip_id]["frame"]))
        assert second_of_grey(frame.mean()) == second, clip_id
        audio = decode_audio(rows[clip_id]["audio"])
        assert dominant_hz(audio[800:15200], 16000) == pytest.approx(tone_hz_at(start), abs=3)
    assert rows["anamorphic_0"]["source_width"] == 160  # 80 stored columns of 2:1 pixels


def test_a_random_frame_policy_and_its_seed_give_the_single_clip_rows(media, tmp_path):
    cfg = dataclasses.replace(CFG, frame_policy="random", seed=7)
    ids = ["long_2000", "long_7000"]
    reference = shard(ids, media, tmp_path / "s.parquet", dataclasses.replace(cfg, batch_size=1))
    table = shard(ids, media, tmp_path / "b.parquet", dataclasses.replace(cfg, batch_size=8))
    assert_same_rows(table, reference)
    # The draws of seed 7 (frame_policy.random_time): 3.593 s and 9.037 s into the file; the
    # frame shown is the last one at or before, at most a 25 fps frame earlier (the windows'
    # middles, 3.5 and 8.5 s, are further off).
    drawn = {"long_2000": 3.593, "long_7000": 9.037}
    for row in table.to_pylist():
        assert 0 <= drawn[row["clip_id"]] - row["frame_time_s"] <= 0.041, row["clip_id"]


def test_a_batch_works_in_a_scratch_folder_named_for_the_tool(media, monkeypatch):
    # Named so that what a killed job leaves in the temporary folder says whose it is.
    folders = []
    real = batch.plan_batch

    def spy(jobs, **kwargs):
        folders.append(kwargs["folder"])
        return real(jobs, **kwargs)

    monkeypatch.setattr(batch, "plan_batch", spy)
    jobs = [JOBS["normal_0"], JOBS["long_2000"]]
    rows = extract_batch(jobs, download_dir=media, cfg=CFG, ffmpeg=ffmpeg_exe(), resampler="swr")
    assert [row["status"] for row in rows] == [st.OK, st.OK]
    assert len(folders) == 1
    assert folders[0].name.startswith("wavbrivl-batch-")
    assert folders[0].parent == Path(tempfile.gettempdir())
    assert not folders[0].exists()  # removed with what was in it


MIXED = [
    "long_2000",
    "no_audio_0",
    "normal_0",
    "short_0",
    "anamorphic_0",
    "missing_0",
    "garbage_0",
    "long_7000",
    "gone_0",
    "tiny_section_0",
    "asked_long_0",
    "truncated_0",
    "portrait_0",
]


@pytest.fixture(scope="module")
def mixed_reference(media, tmp_path_factory):
    return singles(MIXED, media, tmp_path_factory.mktemp("mixed"))


def test_a_mixed_batch_gives_the_single_clip_rows(mixed_reference, media, tmp_path, monkeypatch):
    """Every kind of clip in one batch. The first process (10 inputs: not the missing file,
    the failed download or the 0.5 s section) stops at the garbage file, having described
    the inputs before it; the second leaves out the garbage file and the file without audio
    and stops at the truncated one; the third (7 inputs) runs. Of those seven, the 0.5 s
    file and the 6 s window of a 3 s file are left to the single-clip path (a process of
    their own would run again or stop), as are the four clips left out of the process and
    the three that never joined it."""
    runs = Processes(monkeypatch)
    table = shard(MIXED, media, tmp_path / "b.parquet", dataclasses.replace(CFG, batch_size=16))
    assert_same_rows(table, mixed_reference)
    assert runs.batches == [("batch", 10, 183), ("batch", 8, 183), ("batch", 7, 0)]
    # single runs: no audio (fails), short (describes), garbage, truncated (fail), the long
    # window twice (the file ends inside it); the missing, failed and 0.5 s section
    # clips start none (the last is only described, by a probe without a time limit here)
    assert sorted(runs.clips) == sorted(
        [("clip", 234), ("clip", 0), ("clip", 183), ("clip", 183), ("clip", 0), ("clip", 0)]
    )
    rows = {row["clip_id"]: row for row in table.to_pylist()}
    for clip_id, (status, reason, notes) in EXPECTED.items():
        if clip_id in rows:
            row = rows[clip_id]
            assert row["status"] == status, (clip_id, row["reason"])
            assert row["reason"].startswith(reason), (clip_id, row["reason"])
            assert row["notes"] == notes, clip_id


@pytest.mark.parametrize("size", [2, 3, 5])
def test_every_batch_size_gives_the_same_rows(mixed_reference, media, tmp_path, size):
    cfg = dataclasses.replace(CFG, batch_size=size)
    assert_same_rows(shard(MIXED, media, tmp_path / "b.parquet", cfg, threads=2), mixed_reference)


def test_an_error_line_sends_every_clip_of_the_batch_to_its_own_process(
    media, tmp_path, monkeypatch
):
    """The damaged file decodes with errors and exits 0: the errors name no clip, every
    input was described with both streams, so there is no clip to leave out."""
    ids = ["normal_0", "damaged_2000", "long_2000"]
    reference = singles(ids, media, tmp_path)
    runs = Processes(monkeypatch)
    table = shard(ids, media, tmp_path / "b.parquet", CFG)
    assert runs.runs == [("batch", 3, 0), ("clip", 0), ("clip", 0), ("clip", 0)]
    assert_same_rows(table, reference)
    notes = {row["clip_id"]: row["notes"] for row in table.to_pylist()}
    assert "; ffmpeg errors: " in notes["damaged_2000"]
    assert notes["normal_0"] == notes["long_2000"] == ""


def test_one_clip_to_run_is_left_to_the_single_clip_path(media, tmp_path, monkeypatch):
    runs = Processes(monkeypatch)
    jobs = [JOBS["normal_0"], JOBS["missing_0"], JOBS["tiny_section_0"]]
    rows = extract_batch(jobs, download_dir=media, cfg=CFG, ffmpeg=ffmpeg_exe(), resampler="swr")
    assert runs.runs == [("clip", 0)]
    assert [row["status"] for row in rows] == [st.OK, st.ERROR, st.BAD_MEDIA]


def test_a_batch_that_times_out_leaves_every_clip_to_its_own_limit(media, tmp_path, monkeypatch):
    runs = Processes(monkeypatch)
    cfg = dataclasses.replace(CFG, clip_timeout_s=1e-4)
    jobs = [JOBS["normal_0"], JOBS["long_2000"]]
    rows = extract_batch(jobs, download_dir=media, cfg=cfg, ffmpeg=ffmpeg_exe(), resampler="swr")
    assert runs.timeouts == [2e-4, 1e-4, 1e-4]
    assert runs.runs == [("batch", 2, "timed out"), ("clip", "timed out"), ("clip", "timed out")]
    assert [(row["status"], row["reason"]) for row in rows] == [
        (st.TIMEOUT, "ffmpeg timed out after 0.0001 s")
    ] * 2


def test_a_clip_that_fails_to_finish_in_the_batch_is_run_on_its_own(media, monkeypatch):
    """An exception while finishing a batch clip's row hands the clip to its own process
    (where, here, it does not happen again)."""
    real = clip._ppm_to_jpeg
    calls = []

    def fails_once(path, cfg):
        calls.append(path.name)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return real(path, cfg)

    monkeypatch.setattr(clip, "_ppm_to_jpeg", fails_once)
    runs = Processes(monkeypatch)
    jobs = [JOBS["normal_0"], JOBS["long_2000"]]
    rows = extract_batch(jobs, download_dir=media, cfg=CFG, ffmpeg=ffmpeg_exe(), resampler="swr")
    assert calls == ["frame0.ppm", "frame1.ppm", "frame.ppm"]
    assert runs.runs == [("batch", 2, 0), ("clip", 0)]
    assert [row["status"] for row in rows] == [st.OK, st.OK]
    reference = extract_clip_safely(
        jobs[0], download_dir=media, cfg=CFG, ffmpeg=ffmpeg_exe(), resampler="swr"
    )
    assert rows[0] == reference


@pytest.mark.parametrize(
    ("ids", "runs"),
    [
        # the garbage file stops the first process; the two clips left share the second
        (
            ["garbage_0", "normal_0", "long_2000"],
            [("batch", 3, 183), ("batch", 2, 0), ("clip", 183)],
        ),
        # one clip left: its own process
        (["garbage_0", "normal_0"], [("batch", 2, 183), ("clip", 183), ("clip", 0)]),
        # every input described, one without audio (its graph cannot be built): left out
        (
            ["normal_0", "no_audio_0", "long_2000"],
            [("batch", 3, 234), ("batch", 2, 0), ("clip", 234)],
        ),
        # nothing to leave out (both described, with both streams): each on its own
        (["normal_0", "damaged_2000"], [("batch", 2, 0), ("clip", 0), ("clip", 0)]),
    ],
)
def test_a_failed_process_runs_again_only_without_a_clip_and_with_two(
    media, tmp_path, monkeypatch, ids, runs
):
    reference = singles(ids, media, tmp_path)
    processes = Processes(monkeypatch)
    assert_same_rows(shard(ids, media, tmp_path / "b.parquet", CFG), reference)
    assert processes.runs == runs


def test_a_row_that_is_not_ok_is_left_to_the_single_clip_path(media, tmp_path, monkeypatch):
    """Half a second of sound under 3 s of video: the batch runs cleanly, but the row it
    would finish is not ok (too short), so the clip gets a process of its own."""
    ids = ["short_audio_0", "normal_0"]
    reference = singles(ids, media, tmp_path)
    processes = Processes(monkeypatch)
    table = shard(ids, media, tmp_path / "b.parquet", CFG)
    assert_same_rows(table, reference)
    assert processes.runs == [("batch", 2, 0), ("clip", 0)]
    row = table.to_pylist()[0]
    assert (row["status"], row["reason"][:13]) == (st.BAD_MEDIA, "too short: 0.")


def test_a_window_of_exactly_min_seconds_joins_the_batch(media, monkeypatch):
    processes = Processes(monkeypatch)
    cfg = dataclasses.replace(CFG, min_seconds=3.0)  # the clips' windows are 3 s
    jobs = [JOBS["normal_0"], JOBS["long_2000"]]
    rows = extract_batch(jobs, download_dir=media, cfg=cfg, ffmpeg=ffmpeg_exe(), resampler="swr")
    assert processes.runs == [("batch", 2, 0)]
    assert [row["status"] for row in rows] == [st.OK, st.OK]


DESCRIPTION = (
    "Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'file:a.mp4':\n"
    "  Duration: 00:00:12.00, start: 0.000000, bitrate: 100 kb/s\n"
    "  Stream #0:0[0x1](und): Video: h264 (High), yuv420p, 160x120, 25 fps, 25 tbr\n"
    "  Stream #0:1[0x2](und): Audio: aac (LC), 44100 Hz, mono, fltp, 69 kb/s"
)


@pytest.mark.parametrize(
    "description",
    [
        None,  # the input was not described
        "[error] moov atom not found",  # not a description
        DESCRIPTION.rsplit("\n", 1)[0],  # no audio stream
        DESCRIPTION.replace("  Stream #0:0[0x1](und): Video: h264 (High), yuv420p, 160x120, "
                            "25 fps, 25 tbr\n", ""),  # no video stream
    ],
)  # fmt: skip
def test_a_clip_without_a_whole_description_is_not_settled(tmp_path, description):
    clip_ = planned_clip(tmp_path, 0, "a.mp4")
    assert batch._settle(clip_, description, 1.5, CFG) is None


def test_a_process_that_cannot_start_leaves_every_clip_to_its_own(media, monkeypatch):
    def no_process(argv, **kwargs):
        raise OSError("no such program")

    monkeypatch.setattr(batch, "run_logged", no_process)
    jobs = [JOBS["normal_0"], JOBS["long_2000"]]
    rows = extract_batch(jobs, download_dir=media, cfg=CFG, ffmpeg=ffmpeg_exe(), resampler="swr")
    assert [(row["status"], row["reason"]) for row in rows] == [(st.OK, "")] * 2


def test_each_run_starts_without_outputs(tmp_path, monkeypatch):
    """Outputs an earlier run left (here: made up) are gone when a process starts, so a clip
    it writes nothing for cannot pass for one it did."""
    planned = [planned_clip(tmp_path, k, src=f"in{k}.mp4") for k in range(2)]
    for clip_ in planned:
        clip_.frame_out.write_bytes(b"P6 old")
        clip_.audio_out.write_bytes(b"fLaC old")
    seen = []

    def look(argv, **kwargs):
        seen.append([p.exists() for c in planned for p in (c.frame_out, c.audio_out)])
        return LoggedRun(0, "")

    monkeypatch.setattr(batch, "run_logged", look)
    assert batch.run_batch(planned, cfg=CFG, ffmpeg="/opt/ffmpeg", resampler="swr") == []
    assert seen == [[False] * 4]


# --- the argv and the stderr, by hand ---------------------------------------------------------


def planned_clip(folder, k, src, offset_s=0.0, window_s=3.0, start_s=0.0):
    window = ClipWindow(Path(src), start_s, offset_s, window_s, None)
    job = ClipJob(f"clip{k}", start_s, start_s + window_s, None)
    frame_at_s = start_s + window_s / 2
    return Planned(
        k, job, window, window_s, frame_at_s, folder / f"frame{k}.ppm", folder / f"audio{k}.flac"
    )


def test_batch_argv_written_out_by_hand():
    """Two clips: the first 5 s into its file (seek at 4 s), 10 s long, frame in the middle;
    the second at the file start, 3 s long. Each has its own input, part of the one graph
    (its input's streams, its own labels and showinfo name) and outputs (its own input's
    chapters)."""
    planned = [
        planned_clip(Path("/t"), 0, "a.mp4", offset_s=5.0, window_s=10.0, start_s=5.0),
        planned_clip(Path("/t"), 1, "b.mp4", offset_s=0.0, window_s=3.0, start_s=0.0),
    ]
    cfg = ExtractConfig(frame_size=64)
    graph0 = (
        "[0:V:0]trim=start=1.000000:end=6.001000,"
        "select=lte(t\\,6.000000)*gte(t\\,5.750000)+eq(n\\,0),"
        "showinfo@c0=checksum=0,scale=round(iw*sar):ih,setsar=1,crop=min(iw\\,ih):min(iw\\,ih),"
        "scale=64:64:flags=bicubic,format=rgb24[frame_c0];"
        "[0:a:0]atrim=start=1.000000:duration=10.000000,asetpts=PTS-STARTPTS,"
        "aresample=osr=16000:ochl=mono:osf=s16:resampler=swr[audio_c0]"
    )
    graph1 = (
        "[1:V:0]trim=start=0.000000:end=1.501000,"
        "select=lte(t\\,1.500000)*gte(t\\,1.250000)+eq(n\\,0),"
        "showinfo@c1=checksum=0,scale=round(iw*sar):ih,setsar=1,crop=min(iw\\,ih):min(iw\\,ih),"
        "scale=64:64:flags=bicubic,format=rgb24[frame_c1];"
        "[1:a:0]atrim=start=0.000000:duration=3.000000,asetpts=PTS-STARTPTS,"
        "aresample=osr=16000:ochl=mono:osf=s16:resampler=swr[audio_c1]"
    )

    def outputs(k):
        return [
            "-map", f"[frame_c{k}]", "-map_chapters", str(k), "-fps_mode", "passthrough",
            "-f", "image2", "-update", "1", "-c:v", "ppm", f"file:/t/frame{k}.ppm",
            "-map", f"[audio_c{k}]", "-map_chapters", str(k), "-ac", "1", "-ar", "16000",
            "-c:a", "flac", "-map_metadata", "-1", "-fflags", "+bitexact",
            "-flags:a", "+bitexact", "-f", "flac", f"file:/t/audio{k}.flac",
        ]  # fmt: skip

    expected = [
        "/opt/ffmpeg", "-hide_banner", "-nostdin", "-nostats", "-loglevel", "level+info", "-y",
        "-filter_complex_threads", "1",
        "-threads", "1", "-ss", "4.000000", "-t", "11.500000", "-i", "file:a.mp4",
        "-threads", "1", "-t", "3.500000", "-i", "file:b.mp4",
        "-filter_complex", f"{graph0};{graph1}",
        *outputs(0), *outputs(1),
    ]  # fmt: skip
    assert batch_argv(planned, cfg=cfg, ffmpeg="/opt/ffmpeg", resampler="swr") == expected


def test_a_clip_args_place_the_frame_from_the_clip_start(tmp_path):
    clip_ = planned_clip(tmp_path, 0, "a.mp4", offset_s=2.0, window_s=4.0, start_s=32.0)
    assert batch._clip_args(clip_) == ClipArgs(
        Path("a.mp4"), 2.0, 4.0, 2.0, tmp_path / "frame0.ppm", tmp_path / "audio0.flac"
    )


STDERR = """\
[info] Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'file:a.mp4':
[info]   Duration: 00:00:12.00, start: 0.000000, bitrate: 100 kb/s
[info]   Stream #0:0[0x1](und): Video: h264 (High), yuv420p, 160x120 [SAR 1:1 DAR 4:3], 25 fps, 25 tbr
[info]   Stream #0:1[0x2](und): Audio: aac (LC), 44100 Hz, mono, fltp, 69 kb/s (default)
[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55aa] [warning] a warning between the inputs
[info] Input #1, mov,mp4,m4a,3gp,3g2,mj2, from 'file:b.mp4':
[info]   Duration: 00:00:03.50, start: 0.000000, bitrate: 90 kb/s
[info]   Stream #1:0[0x1](und): Video: h264 (High), yuv420p, 80x120 [SAR 2:1 DAR 4:3], 25 fps, 25 tbr
[info]     Metadata:
[info]       handler_name    : Stream #1:0 of b
[info]   Stream #1:1[0x2](und): Audio: aac (LC), 48000 Hz, stereo, fltp, 96 kb/s
[info] Stream mapping:
[info]   Stream #0:0 (h264) -> trim:default (graph 0)
[showinfo@c1 @ 0x7efc] [info] config in time_base: 1/12288, frame_rate: 12/1
[showinfo@c1 @ 0x7efc] [info] n:   0 pts:   6144 pts_time:0.5     duration:   1024 \
duration_time:0.0833333 fmt:yuv420p cl:left sar:1/1 s:160x120 i:P iskey:0 type:P $
[showinfo@c0 @ 0x7efd] [info] n:   0 pts:  12288 pts_time:1       duration:   1024 \
duration_time:0.0833333 fmt:yuv420p cl:left sar:1/1 s:160x120 i:P iskey:0 type:B $
[showinfo@c1 @ 0x7efc] [info] color_range:unknown color_space:unknown
[showinfo@c1 @ 0x7efc] [info] n:   4 pts:  18432 pts_time:1.5     duration:   1024 \
duration_time:0.0833333 fmt:yuv420p cl:left sar:1/1 s:160x120 i:P iskey:0 type:B $
[showinfo@c12 @ 0x7eff] [info] n:  13 pts:  -3072 pts_time:-0.25   duration:    512 \
duration_time:0.04    fmt:yuv420p cl:left sar:2/1 s:80x120 i:P iskey:1 type:I $
[info] Output #0, image2, to 'file:f0.ppm':
[info]   Stream #0:0: Video: ppm, rgb24, 64x64
""".replace(" $\n", " \n")  # "$": where a line ends in a space


def test_each_input_gets_its_own_description_numbered_as_input_0():
    found = input_descriptions(STDERR)
    assert found == {
        0: (
            "Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'file:a.mp4':\n"
            "  Duration: 00:00:12.00, start: 0.000000, bitrate: 100 kb/s\n"
            "  Stream #0:0[0x1](und): Video: h264 (High), yuv420p, 160x120 [SAR 1:1 DAR 4:3], "
            "25 fps, 25 tbr\n"
            "  Stream #0:1[0x2](und): Audio: aac (LC), 44100 Hz, mono, fltp, 69 kb/s (default)"
        ),
        1: (
            "Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'file:b.mp4':\n"
            "  Duration: 00:00:03.50, start: 0.000000, bitrate: 90 kb/s\n"
            "  Stream #0:0[0x1](und): Video: h264 (High), yuv420p, 80x120 [SAR 2:1 DAR 4:3], "
            "25 fps, 25 tbr\n"
            "    Metadata:\n"
            "      handler_name    : Stream #1:0 of b\n"  # only a stream line is renumbered
            "  Stream #0:1[0x2](und): Audio: aac (LC), 48000 Hz, stereo, fltp, 96 kb/s"
        ),
    }
    info = parse_probe(found[1])
    assert (info.duration_s, info.video.width, info.video.height) == (3.5, 160, 120)
    assert (info.audio.sample_rate, info.audio.channels) == (48000, 2)


def test_an_input_described_twice_is_nobody_s():
    twice = STDERR + "[info] Input #1, wav, from 'file:c.wav':\n[info]   Duration: N/A\n"
    assert sorted(input_descriptions(twice)) == [0]
    assert input_descriptions("[error] nothing was opened\n") == {}


def test_each_clip_gets_the_time_of_its_own_last_shown_frame():
    assert showinfo_times(STDERR) == {0: 1.0, 1: 1.5, 12: -0.25}
    assert showinfo_times("[showinfo@c0 @ 0x1] [info] n: 0 pts: 1 duration: 1\n") == {}


# A whole frame line, and lines that ffmpeg glued together from two threads (seen when
# each clip's graph ran in a thread of its own): the frame in each cannot be told whose.
WHOLE = (
    "[showinfo@c2 @ 0x7f16d8043780] [info] n:   1 pts:  16384 pts_time:1.28    duration:    512 "
    "duration_time:0.04    fmt:yuv420p cl:left sar:2/1 s:80x120 i:P iskey:0 type:P "
)
RECORD = (
    "n:   4 pts:  17920 pts_time:1.4     duration:    512 duration_time:0.04    fmt:yuv420p "
    "cl:left sar:1/1 s:120x200 i:P iskey:0 type:P "
)


@pytest.mark.parametrize(
    "glued",
    [
        WHOLE + RECORD,  # another clip's frame, which lost its prefix
        "[showinfo@c3 @ 0x5634] [info] color_range:unknown color_space:unknown" + RECORD,
        "[showinfo@c1 @ 0x7f4d] [info] User Data=78323634202d20636f7265" + RECORD,
        WHOLE + "config in time_base: 1/12800, frame_rate: 25/1",  # a message after it
        "[info]   Stream #2:0: Video: ppm, rgb24(pc, progressive), 40x40 " + RECORD,
        RECORD,  # alone on a line, without its prefix
        WHOLE.replace("pts_time:1.28", "pts_time:NOPTS"),
        WHOLE.replace("[showinfo@c2", "[Parsed_showinfo_2"),  # not a clip's
    ],
)
def test_a_frame_line_that_is_not_whole_makes_every_time_unknown(glued):
    assert showinfo_times(WHOLE + "\n" + glued + "\n" + WHOLE + "\n") is None
    assert showinfo_times(WHOLE + "\n" + WHOLE + "\n") == {2: 1.28}


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("[h264 @ 0x55aa] [error] Invalid NAL unit size", True),
        ("[fatal] Conversion failed!", True),
        ("[in#1 @ 0x1] [panic] it broke", True),
        ("[aac @ 0x1] [warning] a warning", False),
        ("[info] error in the text of an info line", False),
        ("an untagged line saying [error]", False),
    ],
)
def test_an_error_line_is_one_tagged_error_fatal_or_panic(line, error):
    assert has_error_line(f"[info] first line\n{line}\n[info] last line\n") is error
