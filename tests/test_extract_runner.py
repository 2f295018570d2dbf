"""The extraction runner over one shard mixing good clips and every kind of bad media."""

from __future__ import annotations

import dataclasses
import io
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from media_factory import (
    ANAMORPHIC_BAND_ROWS,
    ANAMORPHIC_STORED,
    AvSpec,
    anamorphic_clip,
    audio_only_clip,
    damaged_clip,
    dominant_hz,
    garbage_file,
    long_clip,
    low_rate_clip,
    make_av,
    no_audio_clip,
    normal_clip,
    portrait_clip,
    second_of_grey,
    short_clip,
    stereo_48k_clip,
    surround_clip,
    tone_hz_at,
    truncated_clip,
    vfr_clip,
)

from wavbrivl import status as st
from wavbrivl.extract import clip, stage
from wavbrivl.extract.config import ExtractConfig
from wavbrivl.extract.media import (
    decode_audio,
    decode_frame,
    read_media,
)
from wavbrivl.extract.stage import extract_shard

FRAME_SIZE = 96  # not the default, to see the config reach ffmpeg
CFG = ExtractConfig(frame_size=FRAME_SIZE, jpeg_quality=85)
NAN = math.nan


def download_row(clip_id, file, section=(0.0, NAN), status="ok", reason=""):
    return {
        "clip_id": clip_id,
        "status": status,
        "reason": reason,
        "file": file if status == "ok" else None,
        "section_start_s": section[0],
        "section_end_s": section[1],
    }


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("downloads")
    long_clip(d, "long.mp4", duration_s=12.0)  # a whole source
    make_av(d / "cut.mp4", AvSpec(duration_s=6.0))  # a downloaded section: source [30, 36)
    normal_clip(d, "normal.mp4")
    shutil.copy(d / "normal.mp4", d / "-x.mp4")
    no_audio_clip(d)
    audio_only_clip(d)
    truncated_clip(d)
    damaged_clip(d, duration_s=12.0, keep=0.6)  # data ends near 7 s
    garbage_file(d)
    short_clip(d)
    portrait_clip(d)
    surround_clip(d)
    low_rate_clip(d)
    vfr_clip(d)
    stereo_48k_clip(d)
    return d


# clip_id, start_s, end_s, download row (or None)
SHARD = [
    ("whole_5000", 5.0, 8.0, download_row("whole_5000", "long.mp4")),
    ("cut_31000", 31.0, 34.0, download_row("cut_31000", "cut.mp4", (30.0, 36.0))),
    ("normal_0", 0.0, 3.0, download_row("normal_0", "normal.mp4")),
    ("asked_long_0", 0.0, 10.0, download_row("asked_long_0", "normal.mp4")),
    ("dash_0", 0.0, 3.0, download_row("dash_0", "-x.mp4")),
    ("no_audio_0", 0.0, 3.0, download_row("no_audio_0", "no_audio.mp4")),
    ("audio_only_0", 0.0, 3.0, download_row("audio_only_0", "audio_only.m4a")),
    ("truncated_0", 0.0, 3.0, download_row("truncated_0", "truncated.mp4")),
    ("garbage_0", 0.0, 3.0, download_row("garbage_0", "garbage.mp4")),
    ("damaged_2000", 2.0, 8.0, download_row("damaged_2000", "damaged.mp4")),
    ("damaged_9000", 9.0, 12.0, download_row("damaged_9000", "damaged.mp4")),
    ("short_0", 0.0, 3.0, download_row("short_0", "short.mp4")),
    ("tail_11500", 11.5, 13.5, download_row("tail_11500", "long.mp4")),
    ("portrait_0", 0.0, 3.0, download_row("portrait_0", "portrait.mp4")),
    ("surround_0", 0.0, 3.0, download_row("surround_0", "surround.mp4")),
    ("low_rate_0", 0.0, 3.0, download_row("low_rate_0", "low_rate.mp4")),
    ("vfr_0", 0.0, 3.0, download_row("vfr_0", "vfr.mp4")),
    ("stereo_0", 0.0, 3.0, download_row("stereo_0", "stereo48k.mp4")),
    (
        "private_0",
        0.0,
        3.0,
        download_row("private_0", None, status=st.PRIVATE, reason="Private video"),
    ),
    ("gone_0", 0.0, 3.0, download_row("gone_0", None, status=st.UNAVAILABLE, reason="HTTP 404")),
    ("../evil", 0.0, 3.0, download_row("../evil", "normal.mp4")),
    ("no_row_0", 0.0, 3.0, None),
    ("lost_file_0", 0.0, 3.0, download_row("lost_file_0", "deleted.mp4")),
    ("escape_0", 0.0, 3.0, download_row("escape_0", "../long.mp4")),
    ("no_section_0", 0.0, 3.0, download_row("no_section_0", "normal.mp4", (NAN, NAN))),
    ("before_29000", 29.0, 32.0, download_row("before_29000", "cut.mp4", (30.0, 36.0))),
    ("normal_0", 0.0, 3.0, None),  # a duplicate manifest row
]

# clip_id -> (status, start of reason, regular expression for the notes)
EXPECTED = {
    "whole_5000": (st.OK, "", ""),
    "cut_31000": (st.OK, "", ""),
    "normal_0": (st.OK, "", ""),
    "asked_long_0": (st.OK, "", "shorter than asked: 3.0 of 10.0 s"),
    "dash_0": (st.OK, "", ""),
    "no_audio_0": (st.BAD_MEDIA, "no audio stream", ""),
    "audio_only_0": (st.BAD_MEDIA, "no video stream", ""),
    "truncated_0": (st.BAD_MEDIA, "moov atom not found", ""),
    "garbage_0": (st.BAD_MEDIA, "moov atom not found", ""),
    "damaged_2000": (st.OK, "", r"shorter than asked: [3-5]\.\d of 6\.0 s; ffmpeg errors: .+"),
    "damaged_9000": (st.BAD_MEDIA, "no video frame decoded in the window", ""),
    "short_0": (st.BAD_MEDIA, "too short: 0.52 s", ""),
    "tail_11500": (st.BAD_MEDIA, "too short: 0.50 s of media from offset 11.50 s", ""),
    "portrait_0": (st.OK, "", "portrait 120x200 cropped"),
    "surround_0": (st.OK, "", "downmixed 6 channels"),
    "low_rate_0": (st.OK, "", "resampled from 8000 Hz"),
    "vfr_0": (st.OK, "", "variable frame rate"),
    "stereo_0": (st.OK, "", ""),
    "private_0": (st.PRIVATE, "download: Private video", ""),
    "gone_0": (st.UNAVAILABLE, "download: HTTP 404", ""),
    "../evil": (st.ERROR, "unsafe clip id", ""),
    "no_row_0": (st.ERROR, "no download status row", ""),
    "lost_file_0": (st.ERROR, "downloaded file is missing", ""),
    "escape_0": (st.ERROR, "download row has no plain file name", ""),
    "no_section_0": (st.ERROR, "download section_start_s is not a finite number", ""),
    "before_29000": (st.ERROR, "clip starts at 29.0 s, before the downloaded section", ""),
}


def shard_inputs(rows):
    manifest = pd.DataFrame(
        [{"clip_id": c, "start_s": s, "end_s": e} for c, s, e, _ in rows],
        columns=["clip_id", "start_s", "end_s"],
    )
    seen, downloads = set(), []
    for c, _, _, d in rows:
        if d is not None and c not in seen:
            downloads.append(d)
            seen.add(c)
    return manifest, pd.DataFrame(downloads, columns=list(stage.DOWNLOAD_COLUMNS))


@pytest.fixture(scope="module")
def shard(media_dir, tmp_path_factory):
    manifest, downloads = shard_inputs(SHARD)
    out = tmp_path_factory.mktemp("media") / "000.parquet"
    log = io.StringIO()
    frame = extract_shard(manifest, downloads, media_dir, out, CFG, threads=2, log=log)
    return frame, out, log.getvalue()


def ok_row(frame: pd.DataFrame, clip_id: str) -> pd.Series:
    row = frame[frame.clip_id == clip_id].iloc[0]
    assert row.status == st.OK, (clip_id, row.reason)
    return row


def test_one_row_per_manifest_row_in_order(shard):
    frame, _, _ = shard
    assert frame.clip_id.tolist() == [c for c, *_ in SHARD]


def test_statuses_reasons_and_notes(shard):
    frame, _, _ = shard
    first = frame.drop_duplicates("clip_id")
    got = {r.clip_id: (r.status, r.reason, r.notes) for r in first.itertuples()}
    for clip_id, (status, reason, notes) in EXPECTED.items():
        assert got[clip_id][0] == status, (clip_id, got[clip_id])
        assert got[clip_id][1].startswith(reason), (clip_id, got[clip_id])
        assert re.fullmatch(notes, got[clip_id][2]), (clip_id, got[clip_id])
    duplicate = frame.iloc[-1]
    assert (duplicate.status, duplicate.reason) == (
        st.ERROR,
        "duplicate clip id in the manifest shard",
    )


def test_summary_line_and_progress_go_to_the_log(shard):
    _, _, log = shard
    assert "extract:" in log and "clip" in log
    # Counted by hand from EXPECTED, plus the duplicate row (an error): 11 + 1 + 1 + 7 + 7.
    summary = "extract: ok=11 unavailable=1 private=1 bad_media=7 error=7"
    assert log.rstrip().splitlines()[-1] == summary


def test_ok_rows_hold_a_square_frame_and_mono_16k_audio(shard):
    frame, _, _ = shard
    ok = frame[frame.status == st.OK]
    assert len(ok) == sum(1 for s, *_ in EXPECTED.values() if s == st.OK)
    for row in ok.itertuples():
        image = decode_frame(row.frame)
        assert image.size == (FRAME_SIZE, FRAME_SIZE) and image.mode == "RGB"
        audio = decode_audio(row.audio, expect_rate=16000)
        assert audio.dtype == np.float32 and audio.ndim == 1
        assert len(audio) == row.n_samples and row.sample_rate == 16000
        if row.clip_id != "damaged_2000":  # every other ok clip here has 3 s of media
            assert abs(row.n_samples - 3.0 * 16000) <= 16, (row.clip_id, row.n_samples)
        assert 0.1 < np.abs(audio).max() <= 1.0  # real signal, not silence


def test_failed_rows_have_no_media(shard):
    frame, _, _ = shard
    failed = frame[frame.status != st.OK]
    assert failed.frame.isna().all() and failed.audio.isna().all()
    assert failed.n_samples.isna().all()


def test_source_facts_are_recorded(shard):
    frame, _, _ = shard
    portrait = ok_row(frame, "portrait_0")
    assert (portrait.source_width, portrait.source_height) == (120, 200)
    surround = ok_row(frame, "surround_0")
    assert (surround.source_channels, surround.source_sample_rate) == (6, 48000)
    assert ok_row(frame, "low_rate_0").source_sample_rate == 8000
    no_audio = frame[frame.clip_id == "no_audio_0"].iloc[0]
    assert no_audio.source_width == 160 and pd.isna(no_audio.source_sample_rate)


def test_anamorphic_frame_is_cropped_in_square_pixels(tmp_path):
    # 80x120 stored at SAR 2:1 is a 160x120 picture: its centre square keeps every row (the
    # black bands at the top and bottom) and drops the white side columns.
    anamorphic_clip(tmp_path)
    manifest, downloads = shard_inputs(
        [("wide_0", 0.0, 3.0, download_row("wide_0", "anamorphic.mp4"))]
    )
    frame = extract_shard(
        manifest, downloads, tmp_path, tmp_path / "a.parquet", CFG, log=io.StringIO()
    )
    row = ok_row(frame, "wide_0")
    assert (row.source_width, row.source_height) == (160, 120)  # as displayed
    pixels = np.asarray(decode_frame(row.frame).convert("L"), dtype=float)
    assert pixels.shape == (FRAME_SIZE, FRAME_SIZE)
    band = FRAME_SIZE * ANAMORPHIC_BAND_ROWS // ANAMORPHIC_STORED[1]  # 16 of 96 rows
    middle = pixels[band + 4 : -band - 4]
    assert pixels[: band - 4].mean() < 20 and pixels[-band + 4 :].mean() < 20  # black bands
    assert 110 < middle.mean() < 150  # mid grey (luma 128 is 130 in full range)...
    assert middle[:, :8].max() < 170 and middle[:, -8:].max() < 170  # ...with no white edge


@pytest.mark.parametrize(
    ("clip_id", "section_start", "clip_start", "clip_end"),
    [("whole_5000", 0.0, 5.0, 8.0), ("cut_31000", 30.0, 31.0, 34.0)],
)
def test_frame_comes_from_the_middle_of_the_clip(
    shard, clip_id, section_start, clip_start, clip_end
):
    row = ok_row(shard[0], clip_id)
    middle = (clip_start + clip_end) / 2
    # The frame on screen at the middle: at most one frame period (25 fps) before it.
    assert middle - 0.04 - 1e-6 <= row.frame_time_s <= middle + 1e-6
    shown_second = second_of_grey(np.asarray(decode_frame(row.frame)).mean())
    assert shown_second == math.floor(row.frame_time_s - section_start)
    assert shown_second == math.floor(middle - section_start)


@pytest.mark.parametrize(
    ("clip_id", "section_start", "clip_start"),
    [("whole_5000", 0.0, 5.0), ("cut_31000", 30.0, 31.0), ("low_rate_0", 0.0, 0.0)],
)
def test_audio_comes_from_the_clip_window(shard, clip_id, section_start, clip_start):
    row = ok_row(shard[0], clip_id)
    audio = decode_audio(row.audio)
    for k in range(3):  # each output second has its own tone; skip 50 ms at the edges
        window = audio[k * 16000 + 800 : (k + 1) * 16000 - 800]
        expected = tone_hz_at(clip_start - section_start + k + 0.5)
        assert dominant_hz(window, 16000) == pytest.approx(expected, abs=3), (clip_id, k)


def test_audio_starts_on_the_exact_sample(shard):
    """The cut is sample-accurate: the tone's phase at sample 0 is the source's at 5.0 s."""
    audio = decode_audio(ok_row(shard[0], "whole_5000").audio)
    t = 5.0 + np.arange(16000) / 16000
    expected = 0.5 * np.sin(2 * np.pi * t * tone_hz_at(5.5))
    assert np.corrcoef(audio[:16000][200:-200], expected[200:-200])[0, 1] > 0.99


def test_vfr_frame_is_picked_by_time(shard):
    row = ok_row(shard[0], "vfr_0")
    # After 1 s the stream keeps every third frame (0.12 s apart): 1.44 is on screen at 1.5.
    assert row.frame_time_s == pytest.approx(1.44, abs=1e-3)
    assert second_of_grey(np.asarray(decode_frame(row.frame)).mean()) == 1


def test_parquet_round_trip_and_metadata(shard):
    frame, out, _ = shard
    pd.testing.assert_frame_equal(read_media(out), frame)
    meta = {k.decode(): v.decode() for k, v in pq.read_schema(out).metadata.items()}
    assert meta["wavbrivl.frame_size"] == str(FRAME_SIZE)
    assert meta["wavbrivl.sample_rate"] == "16000"
    assert meta["wavbrivl.frame_policy"] == "middle"
    assert meta["wavbrivl.jpeg_quality"] == "85"
    assert list(read_media(out, columns=["clip_id", "frame"]).columns) == ["clip_id", "frame"]
    assert not list(out.parent.glob(".*.tmp"))  # the atomic write left no temp file


def test_one_process_per_clip_gives_the_same_rows(shard, media_dir, tmp_path):
    """The shard above ran in batches of 8 clips (the default); one process per clip gives
    the same Parquet rows, frame and audio bytes included (tests/test_extract_batch.py)."""
    assert CFG.batch_size == 8
    manifest, downloads = shard_inputs(SHARD)
    out = tmp_path / "single.parquet"
    cfg = dataclasses.replace(CFG, batch_size=1)
    extract_shard(manifest, downloads, media_dir, out, cfg, threads=2, log=io.StringIO())
    assert pq.read_table(out).to_pylist() == pq.read_table(shard[1]).to_pylist()


def test_random_policy_is_inside_the_window_and_repeatable(media_dir, tmp_path):
    rows = [SHARD[0], SHARD[1]]
    manifest, downloads = shard_inputs(rows)
    cfg = ExtractConfig(frame_size=32, frame_policy="random", seed=7)
    runs = [
        extract_shard(
            manifest, downloads, media_dir, tmp_path / f"{i}.parquet", cfg, log=io.StringIO()
        )
        for i in range(2)
    ]
    for row, (_, start, end, download) in zip(runs[0].itertuples(), rows, strict=True):
        assert start <= row.frame_time_s < end
        shown = second_of_grey(np.asarray(decode_frame(row.frame)).mean())
        assert shown == math.floor(row.frame_time_s - download["section_start_s"])
    assert runs[0].frame_time_s.tolist() == runs[1].frame_time_s.tolist()
    assert runs[0].frame.tolist() == runs[1].frame.tolist()  # same bytes: deterministic
    other = extract_shard(
        manifest, downloads, media_dir, tmp_path / "seed8.parquet",
        ExtractConfig(frame_size=32, frame_policy="random", seed=8), log=io.StringIO(),
    )  # fmt: skip
    assert other.frame_time_s.tolist() != runs[0].frame_time_s.tolist()


def test_ffmpeg_timeout_is_a_timeout_row(media_dir, tmp_path):
    manifest, downloads = shard_inputs([SHARD[2]])
    cfg = ExtractConfig(clip_timeout_s=1e-4)
    frame = extract_shard(
        manifest, downloads, media_dir, tmp_path / "t.parquet", cfg, log=io.StringIO()
    )
    assert frame.status.tolist() == [st.TIMEOUT]
    assert frame.reason[0].startswith("ffmpeg timed out")


def test_an_unexpected_exception_costs_one_clip_not_the_shard(media_dir, tmp_path, monkeypatch):
    real = clip._ppm_to_jpeg
    calls = []

    def fails_once(path, cfg):
        calls.append(path)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return real(path, cfg)

    monkeypatch.setattr(clip, "_ppm_to_jpeg", fails_once)
    manifest, downloads = shard_inputs([SHARD[2], SHARD[4]])
    # one process per clip (a batch would hand the clip to that path, which would pass:
    # tests/test_extract_batch.py)
    cfg = dataclasses.replace(CFG, batch_size=1)
    frame = extract_shard(
        manifest, downloads, media_dir, tmp_path / "x.parquet", cfg, threads=1, log=io.StringIO()
    )
    assert frame.status.tolist() == [st.ERROR, st.OK]
    assert frame.reason[0] == "RuntimeError: boom"


def test_inputs_wrong_as_a_whole_raise(media_dir, tmp_path):
    manifest, downloads = shard_inputs([SHARD[2]])
    with pytest.raises(ValueError, match=r"manifest rows lack columns \['end_s'\]"):
        extract_shard(manifest.drop(columns="end_s"), downloads, media_dir, tmp_path / "a", CFG)
    doubled = pd.concat([downloads, downloads])
    with pytest.raises(ValueError, match="duplicate clip ids: \\['normal_0'\\]"):
        extract_shard(manifest, doubled, media_dir, tmp_path / "b", CFG)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_config_from_dict_refuses_unknown_and_bad_values():
    assert ExtractConfig.from_dict({"frame_size": 128}).frame_size == 128
    with pytest.raises(ValueError, match=r"unknown extract config key\(s\) \['frame_sise'\]"):
        ExtractConfig.from_dict({"frame_sise": 128})
    with pytest.raises(ValueError, match="frame_policy"):
        ExtractConfig(frame_policy="first")
    with pytest.raises(ValueError, match="jpeg_quality"):
        ExtractConfig(jpeg_quality=0)
