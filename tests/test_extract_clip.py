"""One clip's extraction (wavbrivl.extract.clip), clip by clip, with exact expected rows.

tests/test_extract_runner.py runs whole shards of every kind of media; these tests call the
per-clip runner directly on one small synthetic file (a 6 s download of the source section
[30, 36)), so that each outcome is pinned to the exact value worked out by hand. Where ffmpeg
itself would have to misbehave (no frame, a non-zero exit, damaged data, bytes that are not
UTF-8) a wrapper around the real ffmpeg call changes its result.
"""

from __future__ import annotations

import io
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from media_factory import (
    AvSpec,
    dominant_hz,
    make_av,
    make_av_argv,
    second_of_grey,
    tone_hz_at,
)
from PIL import Image

from wavbrivl import status as st
from wavbrivl.child_process import LoggedRun
from wavbrivl.extract import clip
from wavbrivl.extract.clip import ClipJob, extract_clip_safely
from wavbrivl.extract.config import ExtractConfig
from wavbrivl.extract.media import MEDIA_SCHEMA, decode_audio, decode_frame
from wavbrivl.extract.probe import AudioStream, MediaInfo, ProbeError, VideoStream
from wavbrivl.ffmpeg_bin import ffmpeg_exe

SECTION = (30.0, 36.0)  # the downloaded section of the source, in source time
CFG = ExtractConfig(frame_size=48, jpeg_quality=85, clip_timeout_s=37.0)
SOURCE = {"source_width": 160, "source_height": 120, "source_sample_rate": 44100}
SOURCE_FACTS = {**SOURCE, "source_channels": 1}


@pytest.fixture(scope="module")
def downloads(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("downloads")
    make_av(d / "cut.mp4", AvSpec(duration_s=6.0))
    return d


def download(file="cut.mp4", section=SECTION, status=st.OK, reason=""):
    return {
        "status": status,
        "reason": reason,
        "file": file,
        "section_start_s": section[0],
        "section_end_s": section[1],
    }


def run(job: ClipJob, directory: Path, cfg: ExtractConfig = CFG, ffmpeg: str = "") -> dict:
    return extract_clip_safely(
        job, download_dir=directory, cfg=cfg, ffmpeg=ffmpeg or ffmpeg_exe(), resampler="swr"
    )


def failure(clip_id: str, status: str, reason: str, **values) -> dict:
    """The row of a failed clip: every column None but these."""
    row = dict.fromkeys(MEDIA_SCHEMA.names)
    row.update(clip_id=clip_id, status=status, reason=reason, notes="", **values)
    return row


def patch_ffmpeg(monkeypatch, change):
    """Run the real extraction ffmpeg, then let ``change(frame, audio, result)`` alter its
    outcome: touch the output files, edit ``result``, or return another result.

    Only the extraction call (the one with a filter graph) is changed, not a probe. Returns
    the list of its ``(argv, kwargs)``.
    """
    real = clip.run_logged
    seen = []

    def fake(argv, **kwargs):
        logged = real(argv, **kwargs)
        if "-filter_complex" not in argv:
            return logged
        seen.append((argv, kwargs))
        frame = Path(argv[argv.index("ppm") + 1].removeprefix("file:"))
        audio = Path(argv[-1].removeprefix("file:"))
        result = subprocess.CompletedProcess(argv, logged.returncode, b"", logged.stderr.encode())
        final = change(frame, audio, result) or result
        return LoggedRun(final.returncode, final.stderr.decode("utf-8", errors="replace"))

    monkeypatch.setattr(clip, "run_logged", fake)
    return seen


# --- a clip that works ------------------------------------------------------------------------


def test_a_clip_inside_a_downloaded_section_gives_the_exact_row(downloads, monkeypatch):
    """Source [33, 35.5): 3 s into the file, so the seek lands at 2 s (1 s pre-roll)."""
    seen = patch_ffmpeg(monkeypatch, lambda frame, audio, result: None)
    row = run(ClipJob("cut_33000", 33.0, 35.5, download()), downloads)
    assert (row["clip_id"], row["status"], row["reason"], row["notes"]) == (
        "cut_33000",
        st.OK,
        "",
        "",
    )
    assert {k: row[k] for k in SOURCE_FACTS} == SOURCE_FACTS
    # The middle of the clip is 34.25 s; the 25 fps frame on screen then started at 34.24 s
    # (file time 4.24 s), and showinfo's time of it is what the row keeps.
    assert row["frame_time_s"] == pytest.approx(34.24, abs=1e-3)
    image = decode_frame(row["frame"])
    assert image.size == (48, 48)
    assert second_of_grey(np.asarray(image).mean()) == 4  # file second 4 = source 34 s
    # 2.5 s of 16 kHz mono; each second carries its own tone (file seconds 3 and 4).
    assert (row["n_samples"], row["sample_rate"]) == (40000, 16000)
    audio = decode_audio(row["audio"])
    assert len(audio) == 40000
    assert dominant_hz(audio[800:15200], 16000) == pytest.approx(tone_hz_at(3.5), abs=3)
    assert dominant_hz(audio[16800:31200], 16000) == pytest.approx(tone_hz_at(4.5), abs=3)
    # ffmpeg ran once, under the clip's time limit (no stdin or stdout: child_process.run_logged).
    ((argv, kwargs),) = seen
    assert kwargs == {"timeout": 37.0}
    # Its outputs went to fixed names in a per-clip temp dir, removed afterwards.
    frame_out = Path(argv[argv.index("ppm") + 1].removeprefix("file:"))
    audio_out = Path(argv[-1].removeprefix("file:"))
    assert (frame_out.name, audio_out.name) == ("frame.ppm", "audio.flac")
    assert frame_out.parent == audio_out.parent
    assert frame_out.parent.name.startswith("wavbrivl-extract-")
    assert not frame_out.parent.exists()


def test_the_window_given_to_ffmpeg_is_the_clip_inside_the_file(downloads, monkeypatch):
    calls = []
    real = clip.extract_clip_argv

    def spy(src, **kwargs):
        calls.append((src, kwargs))
        return real(src, **kwargs)

    monkeypatch.setattr(clip, "extract_clip_argv", spy)
    run(ClipJob("cut_33000", 33.0, 35.5, download()), downloads)
    ((src, kwargs),) = calls
    assert src == downloads / "cut.mp4"
    # 3 s into the file, 2.5 s long, frame in the middle: 1.25 s after the clip start.
    assert (kwargs["offset_s"], kwargs["duration_s"]) == (3.0, 2.5)
    assert kwargs["frame_offset_s"] == pytest.approx(1.25)
    assert (kwargs["ffmpeg"], kwargs["resampler"], kwargs["cfg"]) == (ffmpeg_exe(), "swr", CFG)


def test_without_showinfo_lines_the_policy_time_is_kept(downloads, monkeypatch):
    def drop_showinfo(frame, audio, result):
        lines = result.stderr.decode().splitlines(keepends=True)
        result.stderr = "".join(x for x in lines if "showinfo" not in x).encode()

    patch_ffmpeg(monkeypatch, drop_showinfo)
    row = run(ClipJob("cut_33000", 33.0, 35.5, download()), downloads)
    assert row["status"] == st.OK
    assert row["frame_time_s"] == 34.25  # the middle of [33, 35.5), not a frame's start


def test_a_random_frame_follows_the_configured_seed(downloads, monkeypatch):
    """The policy gets the clip id, the clip start, the available length and the seed."""
    calls = []
    real = clip.frame_time

    def spy(*args):
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(clip, "frame_time", spy)
    cfg = ExtractConfig(frame_size=48, frame_policy="random", seed=11)
    run(ClipJob("cut_33000", 33.0, 35.5, download()), downloads, cfg)
    assert calls == [("random", "cut_33000", 33.0, 2.5, 11)]


# --- how much of the asked window the file holds ----------------------------------------------


def test_a_section_that_ends_early_cuts_the_clip_with_a_note(downloads):
    # The row says the section ends at 35.5 s (the file holds more): [34, 40) gets 1.5 s.
    row = run(ClipJob("cut_34000", 34.0, 40.0, download(section=(30.0, 35.5))), downloads)
    assert (row["status"], row["notes"]) == (st.OK, "shorter than asked: 1.5 of 6.0 s")
    assert row["n_samples"] == 24000


def test_without_a_section_end_the_file_duration_cuts_the_clip(downloads):
    # The 6 s file ends at source 36 s: [34, 40) gets 2 s.
    row = run(ClipJob("cut_34000", 34.0, 40.0, download(section=(30.0, math.nan))), downloads)
    assert (row["status"], row["notes"]) == (st.OK, "shorter than asked: 2.0 of 6.0 s")
    assert row["n_samples"] == 32000


def test_a_clip_short_by_exactly_the_tolerance_has_no_note(downloads):
    # The row says the section is [0, 1.5): asked 1.55 s, got 1.5 s, and 1.55 - 0.05 is
    # exactly 1.5 in floating point, so the clip is not *more* than the tolerance short.
    assert 1.55 - 0.05 == 1.5
    row = run(ClipJob("cut_0", 0.0, 1.55, download(section=(0.0, 1.5))), downloads)
    assert (row["status"], row["notes"], row["n_samples"]) == (st.OK, "", 24000)


def test_a_clip_within_the_tolerance_of_its_length_has_no_note(downloads):
    # Asked 2.04 s, got 2.0 s: less than SHORT_TOLERANCE_S (0.05 s) short.
    row = run(ClipJob("cut_34000", 34.0, 36.04, download(section=(30.0, 36.0))), downloads)
    assert (row["status"], row["notes"], row["n_samples"]) == (st.OK, "", 32000)
    # Asked 2.2 s, got 2.0 s: worth a note.
    row = run(ClipJob("cut_34000", 34.0, 36.2, download(section=(30.0, 36.0))), downloads)
    assert row["notes"] == "shorter than asked: 2.0 of 2.2 s"


def test_exactly_min_seconds_of_media_is_enough(downloads):
    cfg = ExtractConfig(frame_size=48, min_seconds=1.5)
    row = run(ClipJob("cut_34000", 34.0, 40.0, download(section=(30.0, 35.5))), downloads, cfg)
    assert (row["status"], row["n_samples"]) == (st.OK, 24000)


@pytest.mark.parametrize(
    ("start", "reason"),
    [
        (35.5, "too short: 0.50 s of media from offset 5.50 s (min_seconds 1)"),
        (37.0, "too short: 0.00 s of media from offset 7.00 s (min_seconds 1)"),  # past the end
    ],
)
def test_too_little_media_in_the_file_is_bad_media(downloads, start, reason):
    job = ClipJob("late", start, start + 3.0, download(section=(30.0, math.nan)))
    assert run(job, downloads) == failure("late", st.BAD_MEDIA, reason, **SOURCE_FACTS)


def test_a_file_that_ends_inside_the_window_is_extracted_again_up_to_its_end(
    downloads, monkeypatch
):
    """The first run asks for the whole window [34, 40) (6 s from file time 4 s, frame 3 s
    in); the file's description says it ends at 6 s, so the second run asks for the 2 s it
    holds (frame 1 s in), exactly as if the duration had been known before."""
    calls = []
    real = clip.extract_clip_argv

    def spy(src, **kwargs):
        calls.append((kwargs["offset_s"], kwargs["duration_s"], kwargs["frame_offset_s"]))
        assert kwargs["every_frame"] is False
        return real(src, **kwargs)

    monkeypatch.setattr(clip, "extract_clip_argv", spy)
    seen = patch_ffmpeg(monkeypatch, lambda frame, audio, result: None)
    row = run(ClipJob("cut_34000", 34.0, 40.0, download(section=(30.0, math.nan))), downloads)
    assert calls == [(4.0, 6.0, 3.0), (4.0, 2.0, 1.0)]
    assert len(seen) == 2
    assert (row["status"], row["n_samples"]) == (st.OK, 32000)
    # The frame in the middle of [34, 36): 35 s, file time 5 s.
    assert row["frame_time_s"] == pytest.approx(35.0, abs=1e-3)


def test_a_window_that_fits_the_file_is_extracted_once(downloads, monkeypatch):
    # The section row says [30, 36) and the file holds 6 s: the window is known up front.
    seen = patch_ffmpeg(monkeypatch, lambda frame, audio, result: None)
    row = run(ClipJob("cut_30000", 30.0, 36.0, download()), downloads)
    assert (row["status"], row["n_samples"], len(seen)) == (st.OK, 96000, 1)


def test_a_section_too_short_for_any_clip_is_only_described(downloads, monkeypatch):
    """The section ends 0.3 s after the clip start: too short whatever the file holds, so
    ffmpeg only describes the file (no extraction run) and the reason gives those 0.3 s."""
    seen = patch_ffmpeg(monkeypatch, lambda frame, audio, result: None)
    row = run(ClipJob("late", 35.2, 38.2, download(section=(30.0, 35.5))), downloads)
    reason = "too short: 0.30 s of media from offset 5.20 s (min_seconds 1)"
    assert row == failure("late", st.BAD_MEDIA, reason, **SOURCE_FACTS)
    assert seen == []


def test_a_section_too_short_for_a_file_that_is_not_media_is_bad_media(tmp_path):
    (tmp_path / "junk.mp4").write_bytes(b"not a video at all" * 64)
    job = ClipJob("junk", 35.2, 38.2, download(file="junk.mp4", section=(30.0, 35.5)))
    row = run(job, tmp_path)
    assert (row["status"], row["source_width"]) == (st.BAD_MEDIA, None)
    assert "Invalid data found when processing input" in row["reason"]


@pytest.fixture(scope="module")
def gappy(tmp_path_factory) -> Path:
    """3 s at 25 fps with no frame in [0.5, 2.5): frames at 0, 0.04, ..., 0.48, 2.52, ..."""
    d = tmp_path_factory.mktemp("gappy")
    argv = make_av_argv(d / "gap.mp4", AvSpec(duration_s=3.0, vfr=True), ffmpeg_exe())
    i = next(i for i, item in enumerate(argv) if "select=" in item)
    argv[i] = argv[i].replace("lt(t\\,1)+not(mod(n\\,3))", "lt(t\\,0.5)+gte(t\\,2.5)")
    subprocess.run(argv, check=True, capture_output=True)
    return d


@pytest.mark.parametrize(
    ("end_s", "every_frame_runs"),
    [
        # middle 1.5 s: no frame in [1.25, 1.5], only the window's first one (0 s) is kept,
        # so the second run selects every frame up to 1.5 s and keeps 0.48 s
        (3.0, [False, True]),
        # middle 0.73 s: the window starts at 0.48 s, where a frame is: one run keeps it
        (1.46, [False]),
    ],
)
def test_a_gap_before_the_frame_time_is_searched_frame_by_frame(
    gappy, monkeypatch, end_s, every_frame_runs
):
    calls = []
    real = clip.extract_clip_argv

    def spy(src, **kwargs):
        calls.append(kwargs["every_frame"])
        return real(src, **kwargs)

    monkeypatch.setattr(clip, "extract_clip_argv", spy)
    job = ClipJob("gap_0", 0.0, end_s, download(file="gap.mp4", section=(0.0, math.nan)))
    row = run(job, gappy)
    assert calls == every_frame_runs
    assert row["status"] == st.OK
    assert row["frame_time_s"] == pytest.approx(0.48, abs=1e-6)  # the last frame before


def test_a_frame_time_before_the_first_frame_keeps_the_first_frame_after_it(gappy, monkeypatch):
    """Clip [0.6, 3.0): middle 1.8 s, and the first frame of the window comes at 2.52 s (the
    first 25 fps frame past 2.5 s). The first run stops at 1.8 s and writes no frame; the
    second runs a second past the frame time and keeps the window's first frame, 0.72 s
    after the time."""
    calls = []
    real = clip.extract_clip_argv

    def spy(src, **kwargs):
        calls.append(kwargs["every_frame"])
        return real(src, **kwargs)

    monkeypatch.setattr(clip, "extract_clip_argv", spy)
    job = ClipJob("gap_600", 0.6, 3.0, download(file="gap.mp4", section=(0.0, math.nan)))
    row = run(job, gappy)
    assert calls == [False, True]
    assert (row["status"], row["reason"]) == (st.OK, "")
    assert row["frame_time_s"] == pytest.approx(2.52, abs=1e-6)


@pytest.mark.parametrize(
    ("written", "reason"),
    [
        ((), "no video frame decoded in the window"),
        (("frame",), "no audio decoded in the window"),
    ],
)
def test_a_rerun_never_takes_the_outputs_of_the_run_before(gappy, monkeypatch, written, reason):
    """The second run (every frame) writes only ``written``: the first run's frame and audio
    must not stand in for its own."""
    real = clip.run_logged
    runs = []
    good_frame = []  # the first run's frame, for the second run to write

    def fake(argv, **kwargs):
        if "-filter_complex" not in argv:
            return real(argv, **kwargs)
        runs.append(argv)
        frame = Path(argv[argv.index("ppm") + 1].removeprefix("file:"))
        if len(runs) == 1:
            logged = real(argv, **kwargs)
            good_frame.append(frame.read_bytes())
            return logged
        if "frame" in written:
            frame.write_bytes(good_frame[0])
        return LoggedRun(0, "")

    monkeypatch.setattr(clip, "run_logged", fake)
    job = ClipJob("gap_0", 0.0, 3.0, download(file="gap.mp4", section=(0.0, math.nan)))
    row = run(job, gappy)
    assert len(runs) == 2
    assert (row["status"], row["reason"]) == (st.BAD_MEDIA, reason)


def test_a_too_short_window_is_described_by_the_stage_binary_within_the_time_limit(
    downloads, monkeypatch
):
    """The section leaves 0.3 s: no extraction run (the binary does not even exist), one
    description of the file by the stage's ffmpeg, under the clip's time limit."""
    calls = []

    def fake_probe(path, *, ffmpeg, timeout_s):
        calls.append((path, ffmpeg, timeout_s))
        return MediaInfo(6.0, 0.0, video(), audio_stream())

    monkeypatch.setattr(clip, "probe_media", fake_probe)
    job = ClipJob("late", 35.2, 38.2, download(section=(30.0, 35.5)))
    row = run(job, downloads, ffmpeg="/opt/ffmpeg")
    assert calls == [(downloads / "cut.mp4", "/opt/ffmpeg", 37.0)]
    reason = "too short: 0.30 s of media from offset 5.20 s (min_seconds 1)"
    assert row == failure("late", st.BAD_MEDIA, reason, **SOURCE_FACTS)


def test_less_audio_than_the_probe_promised_is_too_short(downloads, monkeypatch):
    def half_a_second(frame, audio, result):
        sf.write(audio, np.zeros(8000, dtype=np.int16), 16000, format="FLAC")

    patch_ffmpeg(monkeypatch, half_a_second)
    row = run(ClipJob("cut_33000", 33.0, 35.5, download()), downloads)
    reason = "too short: 0.50 s of media from offset 3.00 s (min_seconds 1)"
    assert row == failure("cut_33000", st.BAD_MEDIA, reason, **SOURCE_FACTS)


# --- ffmpeg misbehaving -----------------------------------------------------------------------


def _description(stderr: bytes) -> bytes:
    """The input description a real run printed: its lines up to "Stream mapping:"."""
    head = stderr.split(b"[info] Stream mapping:")[0]
    assert b"Input #0" in head and b"Stream #0:1" in head
    return head


def _replaced(returncode: int, stderr: bytes):
    """Replace the run's messages (the stream facts come from its input description)."""

    def change(frame, audio, result):
        return subprocess.CompletedProcess(
            result.args, returncode, b"", _description(result.stderr) + stderr
        )

    return change


@pytest.mark.parametrize(
    ("stderr", "reason"),
    [
        (b"[in#0 @ 0x5f] [error] Invalid data found\nConversion failed!\n", "Invalid data found"),
        (b"", "ffmpeg exited with 3"),
    ],
)
def test_a_failed_ffmpeg_run_is_bad_media_with_its_reason(downloads, monkeypatch, stderr, reason):
    patch_ffmpeg(monkeypatch, _replaced(3, stderr))
    row = run(ClipJob("cut_33000", 33.0, 35.5, download()), downloads)
    assert row == failure("cut_33000", st.BAD_MEDIA, reason, **SOURCE_FACTS)


ERROR_LINE = b"[h264 @ 0x5f] [error] corrupt block\n"


@pytest.mark.parametrize(
    ("lose", "stderr", "reason"),
    [
        ("frame", b"", "no video frame decoded in the window"),
        ("empty frame", ERROR_LINE, "no video frame decoded in the window (corrupt block)"),
        ("audio", b"", "no audio decoded in the window"),
        ("audio", ERROR_LINE, "no audio decoded in the window (corrupt block)"),
    ],
)
def test_a_missing_output_is_bad_media_with_the_errors_as_cause(
    downloads, monkeypatch, lose, stderr, reason
):
    def change(frame, audio, result):
        if lose == "frame":
            frame.unlink()
        elif lose == "empty frame":
            frame.write_bytes(b"")
        else:
            audio.unlink()
        result.stderr += stderr

    seen = patch_ffmpeg(monkeypatch, change)
    row = run(ClipJob("cut_33000", 33.0, 35.5, download()), downloads)
    assert row == failure("cut_33000", st.BAD_MEDIA, reason, **SOURCE_FACTS)
    # No frame (or an empty one) is asked for again with every frame; missing audio is not.
    every_frame = ["*gte(" not in argv[argv.index("-filter_complex") + 1] for argv, _ in seen]
    assert every_frame == ([False] if lose == "audio" else [False, True])


def test_errors_in_a_run_that_succeeded_are_noted(downloads, monkeypatch):
    def damage(frame, audio, result):
        result.stderr += ERROR_LINE

    patch_ffmpeg(monkeypatch, damage)
    row = run(ClipJob("cut_33000", 33.0, 35.5, download()), downloads)
    assert (row["status"], row["notes"]) == (st.OK, "ffmpeg errors: corrupt block")


def test_several_notes_are_joined_by_semicolons(downloads, monkeypatch):
    def damage(frame, audio, result):
        result.stderr += ERROR_LINE

    patch_ffmpeg(monkeypatch, damage)
    row = run(ClipJob("cut_34000", 34.0, 40.0, download(section=(30.0, 35.5))), downloads)
    assert row["notes"] == "shorter than asked: 1.5 of 6.0 s; ffmpeg errors: corrupt block"


def test_stderr_that_is_not_utf8_does_not_fail_the_clip(downloads, monkeypatch):
    def latin1(frame, audio, result):
        result.stderr += b"[info] caf\xe9 \xff\n"

    patch_ffmpeg(monkeypatch, latin1)
    row = run(ClipJob("cut_33000", 33.0, 35.5, download()), downloads)
    assert (row["status"], row["reason"], row["notes"]) == (st.OK, "", "")


def _times_out(frame, audio, result):
    raise subprocess.TimeoutExpired(result.args, 2.5)


def _has_a_bug(frame, audio, result):
    raise KeyError("oops")


@pytest.mark.parametrize(
    ("change", "status", "reason"),
    [
        (_times_out, st.TIMEOUT, "ffmpeg timed out after 2.5 s"),
        (_has_a_bug, st.ERROR, "KeyError: 'oops'"),  # a per-clip bug must not lose the shard
    ],
)
def test_a_timeout_and_an_unexpected_error_become_rows(
    downloads, monkeypatch, change, status, reason
):
    patch_ffmpeg(monkeypatch, change)
    row = run(ClipJob("cut_33000", 33.0, 35.5, download()), downloads)
    assert row == failure("cut_33000", status, reason)


# --- what the probe says ----------------------------------------------------------------------


def video(width=160, height=120, fps=25.0, tbr=25.0, rotation=0):
    return VideoStream(0, "h264", width, height, fps, tbr, rotation)


def audio_stream(sample_rate=44100, layout="mono", channels=1):
    return AudioStream(1, "aac", sample_rate, layout, channels)


def probed(monkeypatch, info_or_error):
    """The extraction run describes the file as ``info_or_error`` says."""

    def fake_describe(stderr):
        assert "Input #0, mov,mp4" in stderr  # the real run's stderr
        if isinstance(info_or_error, Exception):
            raise info_or_error
        return info_or_error

    monkeypatch.setattr(clip, "describe_run", fake_describe)


def test_a_file_the_probe_cannot_read_is_bad_media_with_its_reason(downloads, monkeypatch):
    probed(monkeypatch, ProbeError("moov atom not found"))
    row = run(ClipJob("cut_33000", 33.0, 35.5, download()), downloads)
    assert row == failure("cut_33000", st.BAD_MEDIA, "moov atom not found")


@pytest.mark.parametrize(
    ("streams", "reason", "facts"),
    [
        ((None, None), "no video stream and no audio stream", {}),
        ((video(), None), "no audio stream", {"source_width": 160, "source_height": 120}),
        (
            (None, audio_stream(48000, "stereo", 2)),
            "no video stream",
            {"source_sample_rate": 48000, "source_channels": 2},
        ),
    ],
)
def test_a_missing_stream_is_bad_media_naming_it(downloads, monkeypatch, streams, reason, facts):
    probed(monkeypatch, MediaInfo(6.0, 0.0, *streams))
    row = run(ClipJob("cut_33000", 33.0, 35.5, download()), downloads)
    assert row == failure("cut_33000", st.BAD_MEDIA, reason, **facts)


def test_notes_name_every_odd_fact_in_order():
    info = MediaInfo(
        6.0,
        0.0,
        video(width=120, height=200, fps=25.0, tbr=30.0, rotation=90),
        audio_stream(sample_rate=8000, layout="5.1", channels=6),
    )
    assert clip._notes(info, CFG) == [
        "portrait 120x200 cropped",
        "rotated 90 degrees",
        "variable frame rate",
        "downmixed 6 channels",
        "resampled from 8000 Hz",
    ]


@pytest.mark.parametrize(
    ("stream", "notes"),
    [
        (audio_stream(16000, "stereo", 2), []),  # two channels are a plain downmix
        (audio_stream(16000, "3.0", 3), ["downmixed 3 channels"]),
        (audio_stream(16000, "weird", None), ["downmixed layout 'weird'"]),
        (audio_stream(16000, None, None), []),
        (audio_stream(None, "mono", 1), []),
        (audio_stream(15999, "mono", 1), ["resampled from 15999 Hz"]),
    ],
)
def test_audio_notes_and_their_thresholds(stream, notes):
    assert clip._notes(MediaInfo(6.0, 0.0, video(), stream), CFG) == notes


def test_a_plain_landscape_constant_rate_video_has_no_note():
    assert clip._notes(MediaInfo(6.0, 0.0, video(), audio_stream(16000)), CFG) == []


def test_a_clip_failure_carries_its_reason_as_its_message():
    failure = clip.ClipFailure(st.PRIVATE, "download: Private video")
    assert (failure.status, failure.reason) == (st.PRIVATE, "download: Private video")
    assert str(failure) == "download: Private video"


# --- where the clip is: the download row ------------------------------------------------------


@pytest.mark.parametrize(
    ("job", "status", "reason"),
    [
        (ClipJob("a_0", 0.0, 3.0, None), st.ERROR, "no download status row for this clip"),
        (
            ClipJob("a_0", 0.0, 3.0, download(None, status=st.PRIVATE, reason="Private video")),
            st.PRIVATE,
            "download: Private video",
        ),
        (
            ClipJob("a_0", 0.0, 3.0, download(None, status=st.UNAVAILABLE, reason=math.nan)),
            st.UNAVAILABLE,
            "download: ",
        ),
        (ClipJob("a/0", 0.0, 3.0, download()), st.ERROR, "unsafe clip id 'a/0'"),
        (ClipJob(42, 0.0, 3.0, download()), st.ERROR, "unsafe clip id 42"),
    ],
)
def test_failed_downloads_and_bad_ids_are_carried_through(downloads, job, status, reason):
    clip_id = job.clip_id if isinstance(job.clip_id, str) else repr(job.clip_id)
    assert run(job, downloads) == failure(clip_id, status, reason)


@pytest.mark.parametrize("name", [None, math.nan, "", "sub/cut.mp4", "..", "."])
def test_a_file_name_that_is_not_plain_is_refused(tmp_path, name):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "cut.mp4").write_bytes(b"")  # there, but not a plain name
    row = run(ClipJob("a_0", 31.0, 33.0, download(name)), tmp_path)
    assert row == failure("a_0", st.ERROR, f"download row has no plain file name: {name!r}")


def test_a_missing_file_is_an_error_naming_its_path(downloads):
    row = run(ClipJob("a_0", 31.0, 33.0, download("gone.mp4")), downloads)
    assert row == failure("a_0", st.ERROR, f"downloaded file is missing: {downloads / 'gone.mp4'}")


@pytest.mark.parametrize(
    ("start", "end", "section", "reason"),
    [
        ("x", 33.0, SECTION, "start_s is not a finite number: 'x'"),
        (31.0, None, SECTION, "end_s is not a finite number: None"),
        (31.0, math.inf, SECTION, "end_s is not a finite number: inf"),
        (31.0, 33.0, (None, 36.0), "download section_start_s is not a finite number: None"),
        (31.0, 33.0, (30.0, "end"), "download section_end_s is not a finite number: 'end'"),
        (31.0, 31.0, SECTION, "empty clip window [31.0, 31.0)"),
        (31.0, 30.5, SECTION, "empty clip window [31.0, 30.5)"),
        (29.5, 32.0, SECTION, "clip starts at 29.5 s, before the downloaded section (30.0 s)"),
    ],
)
def test_bad_clip_windows_are_errors(downloads, start, end, section, reason):
    row = run(ClipJob("a_0", start, end, download(section=section)), downloads)
    assert row == failure("a_0", st.ERROR, reason)


def test_a_clip_at_the_very_start_of_its_section_is_where_locate_says(tmp_path):
    (tmp_path / "cut.mp4").write_bytes(b"")  # _locate only checks that the file is there
    window = clip._locate(ClipJob("a_0", 30.0, 32.5, download(section=(30.0, 35.0))), tmp_path)
    assert window == clip.ClipWindow(tmp_path / "cut.mp4", 30.0, 0.0, 2.5, 35.0)
    job = ClipJob("a_0", 31.0, 32.0, download(section=(30.0, math.nan)))
    assert clip._locate(job, tmp_path) == (tmp_path / "cut.mp4", 31.0, 1.0, 1.0, None)


# --- the frame and audio checks ---------------------------------------------------------------


def _write_ppm(path: Path, size: tuple[int, int], mode: str = "RGB") -> Path:
    Image.new(mode, size, 90 if mode == "L" else (200, 30, 90)).save(path, format="PPM")
    return path


@pytest.mark.parametrize(("quality", "dc_step"), [(85, 5), (50, 16)])
def test_the_frame_is_a_jpeg_at_the_configured_quality(tmp_path, quality, dc_step):
    """libjpeg scales its base tables by 200 - 2q percent for q >= 50: the luma DC step of the
    base table (16) becomes (16 * 30 + 50) // 100 = 5 at quality 85, and stays 16 at 50."""
    cfg = ExtractConfig(frame_size=32, jpeg_quality=quality)
    jpeg = clip._ppm_to_jpeg(_write_ppm(tmp_path / "f.ppm", (32, 32)), cfg)
    with Image.open(io.BytesIO(jpeg)) as image:
        assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (32, 32))
        assert image.quantization[0][0] == dc_step


def test_a_grey_frame_becomes_an_rgb_jpeg(tmp_path):
    cfg = ExtractConfig(frame_size=32)
    jpeg = clip._ppm_to_jpeg(_write_ppm(tmp_path / "f.pgm", (32, 32), "L"), cfg)
    with Image.open(io.BytesIO(jpeg)) as image:
        assert image.mode == "RGB"


def test_a_frame_of_the_wrong_size_is_refused(tmp_path):
    cfg = ExtractConfig(frame_size=32)
    with pytest.raises(RuntimeError, match=r"^frame is \(32, 31\), expected 32 square$"):
        clip._ppm_to_jpeg(_write_ppm(tmp_path / "f.ppm", (32, 31)), cfg)


def _flac(n: int, rate: int, channels: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros((n, channels), dtype=np.int16), rate, format="FLAC")
    return buffer.getvalue()


def test_audio_check_counts_the_samples_of_mono_16k():
    assert clip._check_audio(_flac(12345, 16000, 1), CFG) == 12345


@pytest.mark.parametrize(
    ("rate", "channels", "message"),
    [
        (16000, 2, "ffmpeg wrote 2 channel(s) at 16000 Hz, expected mono at 16000 Hz"),
        (22050, 1, "ffmpeg wrote 1 channel(s) at 22050 Hz, expected mono at 16000 Hz"),
    ],
)
def test_audio_that_is_not_what_was_asked_is_refused(rate, channels, message):
    with pytest.raises(RuntimeError) as info:
        clip._check_audio(_flac(1000, rate, channels), CFG)
    assert str(info.value) == message
