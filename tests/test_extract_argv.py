"""Pure builders of the extraction stage: the ffmpeg argv and the frame policy (no ffmpeg)."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest

from wavbrivl.extract.argv import (
    PREROLL_S,
    READ_MARGIN_S,
    audio_filtergraph,
    extract_clip_argv,
    frame_window_start,
    seek_point,
)
from wavbrivl.extract.config import ExtractConfig
from wavbrivl.extract.frame_policy import frame_time, stable_unit_interval


def build(src="in.mp4", offset_s=5.0, duration_s=10.0, frame_offset_s=5.0, cfg=None, **kw):
    return extract_clip_argv(
        src,
        offset_s=offset_s,
        duration_s=duration_s,
        frame_offset_s=frame_offset_s,
        frame_out=kw.pop("frame_out", "/tmp/clip/frame.ppm"),
        audio_out=kw.pop("audio_out", "/tmp/clip/audio.flac"),
        cfg=cfg or ExtractConfig(),
        ffmpeg="/opt/ffmpeg",
        **kw,
    )


def value_after(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def graphs(argv: list[str]) -> tuple[str, str]:
    frame, audio = value_after(argv, "-filter_complex").split(";")
    return frame, audio


def test_seeks_before_the_clip_and_cuts_it_out_in_the_filters():
    argv = build(offset_s=5.0, duration_s=10.0, frame_offset_s=2.5)
    assert value_after(argv, "-ss") == f"{5.0 - PREROLL_S:.6f}"
    assert value_after(argv, "-ss") and argv.index("-ss") < argv.index("-i")  # input seek
    assert value_after(argv, "-t") == f"{PREROLL_S + 10.0 + READ_MARGIN_S:.6f}"
    frame, audio = graphs(argv)
    assert f"atrim=start={PREROLL_S:.6f}:duration=10.000000" in audio
    # The frame time is relative to the seek point: clip start (1 s in) + 2.5 s.
    assert f"lte(t\\,{PREROLL_S + 2.5:.6f})" in frame
    assert f"trim=start={PREROLL_S:.6f}" in frame


def test_whole_argv_of_a_seeked_clip_written_out_by_hand():
    """Every item of one argv, spelled out: a renamed option or value cannot slip through.

    Clip at 5 s for 10 s, frame 2.5 s in, default config (224 px, 16 kHz): the seek lands at
    4 s, so the clip starts 1 s into the decoded timeline, the frame is at 3.5 s, only frames
    of the quarter second before it are selected (from 3.25 s), and the video branch stops at the
    first frame past it (trim's end 1 ms later, 3.501 s); ffmpeg reads 1 + 10 + 0.5 s.
    """
    frame_graph = (
        "[0:V:0]trim=start=1.000000:end=3.501000,"
        "select=lte(t\\,3.500000)*gte(t\\,3.250000)+eq(n\\,0),"
        "showinfo=checksum=0,scale=round(iw*sar):ih,setsar=1,crop=min(iw\\,ih):min(iw\\,ih),"
        "scale=224:224:flags=bicubic,format=rgb24[frame]"
    )
    audio_graph = (
        "[0:a:0]atrim=start=1.000000:duration=10.000000,asetpts=PTS-STARTPTS,"
        "aresample=osr=16000:ochl=mono:osf=s16:resampler=soxr[audio]"
    )
    expected = [
        "/opt/ffmpeg", "-hide_banner", "-nostdin", "-nostats", "-loglevel", "level+info", "-y",
        "-filter_complex_threads", "1", "-threads", "1",
        "-ss", "4.000000", "-t", "11.500000", "-i", "file:in.mp4",
        "-filter_complex", f"{frame_graph};{audio_graph}",
        "-map", "[frame]", "-fps_mode", "passthrough", "-f", "image2", "-update", "1",
        "-c:v", "ppm", "file:/tmp/clip/frame.ppm",
        "-map", "[audio]", "-ac", "1", "-ar", "16000", "-c:a", "flac", "-map_metadata", "-1",
        "-fflags", "+bitexact", "-flags:a", "+bitexact", "-f", "flac", "file:/tmp/clip/audio.flac",
    ]  # fmt: skip
    assert build(offset_s=5.0, duration_s=10.0, frame_offset_s=2.5) == expected


def test_every_frame_selects_every_frame_up_to_the_time():
    """The same clip with ``every_frame``: every frame up to 3.5 s, the video branch running
    1 s past it (4.5 s); only the frame graph differs from the default argv."""
    default = build(offset_s=5.0, duration_s=10.0, frame_offset_s=2.5)
    every = build(offset_s=5.0, duration_s=10.0, frame_offset_s=2.5, every_frame=True)
    frame, audio = graphs(every)
    assert frame == (
        "[0:V:0]trim=start=1.000000:end=4.500000,select=lte(t\\,3.500000)+eq(n\\,0),"
        "showinfo=checksum=0,scale=round(iw*sar):ih,setsar=1,crop=min(iw\\,ih):min(iw\\,ih),"
        "scale=224:224:flags=bicubic,format=rgb24[frame]"
    )
    assert audio == graphs(default)[1]
    i = every.index("-filter_complex")
    assert every[:i] + every[i + 2 :] == default[:i] + default[i + 2 :]


@pytest.mark.parametrize(
    ("offset_s", "frame_offset_s", "expected"),
    [
        (5.0, 2.5, 3.25),  # seek at 4 s: clip 1 s in, frame at 3.5 s, window from 3.25 s
        (0.25, 2.0, 2.0),  # no seek: the clip starts 0.25 s in, frame at 2.25 s
        (1.5, 0.5, 1.25),  # seek at 0.5 s: clip 1 s in, frame at 1.5 s, window from 1.25 s
        (0.0, 0.125, -0.125),  # a frame at the very start: the window starts before 0
    ],
)
def test_frame_window_start_by_hand(offset_s, frame_offset_s, expected):
    assert frame_window_start(offset_s, frame_offset_s) == pytest.approx(expected, abs=1e-12)
    frame, _ = graphs(build(offset_s=offset_s, duration_s=3.0, frame_offset_s=frame_offset_s))
    assert f"*gte(t\\,{expected:.6f})+" in frame


def test_audio_graph_defaults_to_the_soxr_resampler():
    graph = audio_filtergraph(0.25, 2.0, 16000)
    assert graph == (
        "[0:a:0]atrim=start=0.250000:duration=2.000000,asetpts=PTS-STARTPTS,"
        "aresample=osr=16000:ochl=mono:osf=s16:resampler=soxr[audio]"
    )


def test_a_seek_shorter_than_a_second_is_still_a_seek():
    # Clip at 1.5 s: the seek lands at 0.5 s (any seek past the file start is kept).
    argv = build(offset_s=1.5, duration_s=3.0, frame_offset_s=1.0)
    assert value_after(argv, "-ss") == "0.500000"


def test_no_seek_when_the_clip_starts_within_the_preroll():
    argv = build(offset_s=0.4, duration_s=3.0, frame_offset_s=1.0)
    assert "-ss" not in argv  # even "-ss 0" drops the first audio packet
    assert seek_point(0.4) == 0.0
    _, audio = graphs(argv)
    assert "atrim=start=0.400000:duration=3.000000" in audio


def test_crop_scale_and_sample_rate_follow_the_config():
    # The schema pins the rate to 16 kHz; a duck-typed config shows the builder reads it.
    cfg = SimpleNamespace(
        **{**dataclasses.asdict(ExtractConfig(frame_size=96)), "sample_rate": 22050}
    )
    argv = build(cfg=cfg)
    frame, audio = graphs(argv)
    assert frame.startswith("[0:V:0]") and frame.endswith("[frame]")
    assert "crop=min(iw\\,ih):min(iw\\,ih)" in frame
    assert "scale=96:96" in frame
    assert frame.index("crop=") < frame.index("scale=96:96")  # crop first: no distortion
    assert audio.startswith("[0:a:0]") and audio.endswith("[audio]")
    assert "osr=22050" in audio and "ochl=mono" in audio
    assert value_after(argv, "-ar") == "22050" and value_after(argv, "-ac") == "1"


def test_resampler_is_selectable():
    _, audio = graphs(build(resampler="swr"))
    assert "resampler=swr" in audio
    _, audio = graphs(build())
    assert "resampler=soxr" in audio


def test_two_outputs_each_mapped_from_its_own_graph_label():
    argv = build()
    maps = [argv[i + 1] for i, item in enumerate(argv) if item == "-map"]
    assert maps == ["[frame]", "[audio]"]
    frame_out = argv.index("file:/tmp/clip/frame.ppm")
    audio_out = argv.index("file:/tmp/clip/audio.flac")
    assert argv.index("[frame]") < frame_out < argv.index("[audio]") < audio_out
    assert value_after(argv, "-update") == "1"  # the last frame at or before the time stays
    assert argv[audio_out - 1] == "flac" and argv[audio_out - 2] == "-f"


def test_paths_are_separate_items_behind_file_protocol():
    argv = build(src="dir with space/-x.mp4", frame_out="-f.ppm", audio_out="out dir/a;rm -rf.flac")
    assert argv[0] == "/opt/ffmpeg"
    assert value_after(argv, "-i") == "file:dir with space/-x.mp4"
    assert "file:-f.ppm" in argv and "file:out dir/a;rm -rf.flac" in argv
    # No argv item is a bare path that ffmpeg could read as an option.
    assert "-x.mp4" not in argv and "-f.ppm" not in argv


@pytest.mark.parametrize(
    ("offset_s", "duration_s", "frame_offset_s"),
    [(-1.0, 3.0, 1.0), (0.0, 0.0, 0.0), (0.0, 3.0, 3.5), (0.0, 3.0, -0.1)],
)
def test_bad_windows_are_refused(offset_s, duration_s, frame_offset_s):
    with pytest.raises(ValueError):
        build(offset_s=offset_s, duration_s=duration_s, frame_offset_s=frame_offset_s)


def test_bad_windows_are_refused_with_the_numbers_in_the_message():
    with pytest.raises(ValueError, match=r"^bad clip window: offset -1\.0 s, duration 3\.0 s$"):
        build(offset_s=-1.0, duration_s=3.0, frame_offset_s=1.0)
    with pytest.raises(ValueError, match=r"^frame offset 3\.5 s outside the clip \[0, 3\.0\]$"):
        build(offset_s=0.0, duration_s=3.0, frame_offset_s=3.5)


@pytest.mark.parametrize("frame_offset_s", [0.0, 0.5])
def test_windows_on_the_boundaries_are_accepted(frame_offset_s):
    """A clip under a second long, with its frame at its very start or its very end."""
    argv = build(offset_s=0.0, duration_s=0.5, frame_offset_s=frame_offset_s)
    frame, _ = graphs(argv)
    assert f"select=lte(t\\,{frame_offset_s:.6f})" in frame


# --- frame policy ---------------------------------------------------------------------------


def test_middle_is_the_window_midpoint():
    assert frame_time("middle", "a_1000", 30.0, 10.0) == pytest.approx(35.0)
    assert frame_time("middle", "a_1000", 30.0, 7.4) == pytest.approx(33.7)


def test_random_is_inside_the_window_and_stable_per_clip_and_seed():
    times = [frame_time("random", f"clip_{i}", 100.0, 10.0, seed=3) for i in range(200)]
    assert all(100.0 <= t < 110.0 for t in times)
    assert times == [frame_time("random", f"clip_{i}", 100.0, 10.0, seed=3) for i in range(200)]
    assert len(set(times)) == 200  # clips get different moments
    # A different seed moves the frames; roughly uniform over the window.
    other = [frame_time("random", f"clip_{i}", 100.0, 10.0, seed=4) for i in range(200)]
    assert sum(a != b for a, b in zip(times, other, strict=True)) == 200
    assert 103.5 < sum(times) / len(times) < 106.5


def test_stable_unit_interval_depends_only_on_the_key():
    assert stable_unit_interval("0:x") == stable_unit_interval("0:x")
    assert 0.0 <= stable_unit_interval("0:x") < 1.0
    assert stable_unit_interval("0:x") != stable_unit_interval("1:x")


def test_unknown_policy_and_empty_window_are_errors():
    with pytest.raises(ValueError, match="unknown frame_policy 'first'"):
        frame_time("first", "a", 0.0, 1.0)
    with pytest.raises(ValueError, match="empty frame window"):
        frame_time("middle", "a", 0.0, 0.0)
