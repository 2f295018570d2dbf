"""Probe: parsing ``ffmpeg -i`` stderr, on canned samples and on synthesised files."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from media_factory import (
    audio_only_clip,
    garbage_file,
    low_rate_clip,
    no_audio_clip,
    normal_clip,
    portrait_clip,
    stereo_48k_clip,
    surround_clip,
    truncated_clip,
    vfr_clip,
)

from wavbrivl.extract import probe
from wavbrivl.extract.probe import (
    ProbeError,
    _close,
    _split_fields,
    describe_run,
    ffmpeg_errors,
    ffmpeg_failure_reason,
    last_showinfo_time,
    parse_probe,
    probe_argv,
    probe_media,
    split_description,
)
from wavbrivl.ffmpeg_bin import ffmpeg_exe

# --- canned stderr (written for these tests in the shape ffmpeg prints) ---------------------

MP4_H264_AAC = """\
Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'file:clip.mp4':
  Metadata:
    major_brand     : isom
    encoder         : Lavf61.7.100
  Duration: 00:01:02.50, start: 0.000000, bitrate: 512 kb/s
  Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(tv, bt709, progressive), 1280x720 [SAR 1:1 DAR 16:9], 380 kb/s, 29.97 fps, 29.97 tbr, 30k tbn (default)
    Metadata:
      handler_name    : ISO Media file produced by Google Inc.
  Stream #0:1[0x2](eng): Audio: aac (LC) (mp4a / 0x6134706D), 44100 Hz, stereo, fltp, 128 kb/s (default)
    Metadata:
      handler_name    : ISO Media file produced by Google Inc.
At least one output file must be specified
"""

WEBM_VP9_OPUS_TAGGED = """\
[info] Input #0, matroska,webm, from 'file:abc.webm':
[info]   Metadata:
[info]     ENCODER         : Lavf60.3.100
[info]   Duration: 00:00:10.02, start: -0.007000, bitrate: 457 kb/s
[info]   Stream #0:0(eng): Video: vp9 (Profile 0), yuv420p(tv, bt709), 640x360, SAR 1:1 DAR 16:9, 25 fps, 25 tbr, 1k tbn (default)
[info]   Stream #0:1(eng): Audio: opus, 48000 Hz, 5.1(side), fltp (default)
[fatal] At least one output file must be specified
"""

PORTRAIT_ROTATED_PHONE = """\
Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'file:phone.mov':
  Duration: 00:00:07.40, start: 0.000000, bitrate: 9000 kb/s
  Stream #0:0[0x1](und): Video: hevc (Main) (hvc1 / 0x31637668), yuv420p(tv, bt709), 1920x1080, 8900 kb/s, 30 fps, 30 tbr, 600 tbn (default)
    Metadata:
      handler_name    : Core Media Video
    Side data:
      Display Matrix: rotation of -90.00 degrees
  Stream #0:1[0x2](und): Audio: aac (LC) (mp4a / 0x6134706D), 8000 Hz, mono, fltp, 24 kb/s (default)
"""

AUDIO_WITH_COVER_ART = """\
Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'file:song.m4a':
  Duration: N/A, start: 0.000000, bitrate: N/A
  Stream #0:0[0x1](und): Audio: alac (alac / 0x63616C61), 96000 Hz, 6 channels, s32p (24 bit), 3000 kb/s (default)
  Stream #0:1[0x0]: Video: mjpeg (Baseline), yuvj420p(pc, bt470bg/unknown/unknown), 600x600 [SAR 1:1 DAR 1:1], 90k tbr, 90k tbn (attached pic)
"""

ANAMORPHIC_INTERLACED = """\
Input #0, mpegts, from 'file:dvd.ts':
  Duration: 00:00:30.00, start: 1.400000, bitrate: 4000 kb/s
  Program 1
  Stream #0:0[0x100]: Video: mpeg2video (Main) ([2][0][0][0] / 0x0002), yuv420p(tv, top first), 720x576 [SAR 64:45 DAR 16:9], 25 fps, 50 tbr, 90k tbn
  Stream #0:1[0x101](deu): Audio: ac3 ([129][0][0][0] / 0x0081), 48000 Hz, FL+FR+LFE, fltp, 192 kb/s
"""

CONTAINER_SAR_OVERRIDES = """\
Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'file:x.mp4':
  Duration: 00:00:03.00, start: 0.000000, bitrate: 110 kb/s
  Stream #0:0[0x1](und): Video: h264 (avc1 / 0x31637661), yuv420p(progressive), 160x120 [SAR 4:3 DAR 16:9], 4 kb/s, SAR 1:1 DAR 4:3, 25 fps, 25 tbr, 12800 tbn (default)
  Stream #0:1[0x2](und): Audio: aac (LC) (mp4a / 0x6134706D), 22050 Hz, quad, fltp, 96 kb/s (default)
"""

TRUNCATED_TAGGED = """\
[in#0 @ 0x55882e6b7040] [error] moov atom not found
[in#0 @ 0x55882e6b6cc0] [error] Error opening input: Invalid data found when processing input
[error] Error opening input file file:truncated.mp4.
[fatal] Error opening input files: Invalid data found when processing input
"""


def test_parse_plain_mp4():
    info = parse_probe(MP4_H264_AAC)
    assert info.duration_s == pytest.approx(62.5)
    assert info.container.startswith("mov,mp4")
    assert (info.video.index, info.video.codec) == (0, "h264")
    assert (info.video.width, info.video.height) == (1280, 720)
    assert info.video.fps == pytest.approx(29.97) and info.video.tbr == pytest.approx(29.97)
    assert not info.video.is_portrait and not info.video.is_variable_rate
    assert (info.audio.index, info.audio.codec) == (1, "aac")
    assert (info.audio.sample_rate, info.audio.layout, info.audio.channels) == (44100, "stereo", 2)


def test_parse_level_tagged_webm_with_named_surround_layout():
    info = parse_probe(WEBM_VP9_OPUS_TAGGED)
    assert info.duration_s == pytest.approx(10.02)
    assert info.start_s == pytest.approx(-0.007)
    assert (info.video.width, info.video.height, info.video.tbr) == (640, 360, 25.0)
    assert (info.audio.layout, info.audio.channels, info.audio.sample_rate) == (
        "5.1(side)",
        6,
        48000,
    )


def test_rotation_swaps_the_displayed_size():
    info = parse_probe(PORTRAIT_ROTATED_PHONE)
    assert info.video.rotation == 270
    assert (info.video.width, info.video.height) == (1080, 1920)
    assert info.video.is_portrait
    assert info.audio.sample_rate == 8000


def test_cover_art_is_not_a_video_stream_and_duration_may_be_unknown():
    info = parse_probe(AUDIO_WITH_COVER_ART)
    assert info.video is None
    assert info.duration_s is None
    assert (info.audio.channels, info.audio.sample_rate) == (6, 96000)


def test_durations_over_an_hour_and_unknown_ones():
    header = "Input #0, mpegts, from 'file:x.ts':\n"
    long = parse_probe(header + "  Duration: 01:02:03.50, start: 0\n")
    assert long.duration_s == pytest.approx(3723.5)
    assert (
        parse_probe(header + "  Duration: N/A, start: 0.000000, bitrate: N/A\n").duration_s is None
    )


def test_anamorphic_interlaced_and_custom_layout():
    info = parse_probe(ANAMORPHIC_INTERLACED)
    assert info.start_s == pytest.approx(1.4)
    # 720 storage pixels of aspect 64:45 display 1024 wide.
    assert (info.video.width, info.video.height) == (1024, 576)
    # tbr = 2 x fps is the field rate of interlaced video, not a variable rate.
    assert not info.video.is_variable_rate
    assert (info.audio.layout, info.audio.channels) == ("FL+FR+LFE", 3)


def test_container_aspect_ratio_wins_over_the_codec_one():
    info = parse_probe(CONTAINER_SAR_OVERRIDES)
    assert (info.video.width, info.video.height) == (160, 120)
    assert info.audio.channels == 4


def test_failure_text_raises_with_the_meaningful_reason():
    with pytest.raises(ProbeError) as err:
        parse_probe(TRUNCATED_TAGGED)
    assert str(err.value) == (
        "moov atom not found; Error opening input: Invalid data found when processing input"
    )


def test_failure_reason_without_level_tags_skips_generic_lines():
    text = "[in#0 @ 0xabc] No such filter: 'bogus'\nConversion failed!\n"
    assert ffmpeg_failure_reason(text) == "No such filter: 'bogus'"
    assert ffmpeg_failure_reason("") == ""


def test_last_showinfo_time_takes_the_last_frame():
    text = (
        "[Parsed_showinfo_2 @ 0x7f01] [info] n:   0 pts:    256 pts_time:0.02    duration: 512\n"
        "[Parsed_showinfo_2 @ 0x7f01] [info] color_range:unknown\n"
        "[Parsed_showinfo_2 @ 0x7f01] [info] n:   1 pts:    768 pts_time:0.06    duration: 512\n"
        "[info] Output #0, null, to 'pipe:':\n"
    )
    assert last_showinfo_time(text) == pytest.approx(0.06)
    assert last_showinfo_time("nothing here") is None


# The stderr of an extraction run: a demuxer error before the description, the description
# (a rotated phone video), then the run's own lines, with showinfo's per-frame side data
# that must not be read as the stream's.
RUN_DESCRIPTION = """\
[info] Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'file:phone.mov':
[info]   Duration: 00:00:07.40, start: 0.000000, bitrate: 9000 kb/s
[info]   Stream #0:0[0x1](und): Video: h264 (High), yuv420p(progressive), 640x360, 25 fps, 25 tbr, 600 tbn
[info]     Side data:
[info]       Display Matrix: rotation of -90.00 degrees
[info]   Stream #0:1[0x2](und): Audio: aac (LC), 48000 Hz, stereo, fltp, 128 kb/s"""
RUN_MESSAGES_BEFORE = "[h264 @ 0x5f01] [error] corrupt block"
RUN_MESSAGES_AFTER = """\
[info] Stream mapping:
[info]   Stream #0:0 (h264) -> trim:default
[Parsed_showinfo_2 @ 0x7f01] [info] n:   0 pts:      0 pts_time:0       duration:    24
[Parsed_showinfo_2 @ 0x7f01] [info]     side data - display matrix: rotation of 90.00 degrees
[aac @ 0x5f02] [error] Invalid data
[info] Output #0, image2, to 'file:frame.ppm':"""
RUN_STDERR = "\n".join([RUN_MESSAGES_BEFORE, RUN_DESCRIPTION, RUN_MESSAGES_AFTER]) + "\n"


def test_split_description_separates_the_description_from_the_run_messages():
    description, messages = split_description(RUN_STDERR)
    assert description == RUN_DESCRIPTION
    assert messages == RUN_MESSAGES_BEFORE + "\n" + RUN_MESSAGES_AFTER


def test_split_description_of_a_run_that_opened_nothing():
    assert split_description(TRUNCATED_TAGGED) == ("", TRUNCATED_TAGGED.rstrip("\n"))
    # A description at the very end of the text (nothing after it).
    assert split_description(RUN_DESCRIPTION) == (RUN_DESCRIPTION, "")


def test_describe_run_reads_only_the_description():
    info = describe_run(RUN_STDERR)
    assert (info.duration_s, info.container) == (7.4, "mov,mp4,m4a,3gp,3g2,mj2")
    # 270 degrees from the description (-90), not the 90 of showinfo's frame side data.
    assert (info.video.width, info.video.height, info.video.rotation) == (360, 640, 270)
    assert (info.audio.sample_rate, info.audio.channels) == (48000, 2)


def test_describe_run_without_a_description_raises_with_the_reason():
    with pytest.raises(ProbeError) as err:
        describe_run(TRUNCATED_TAGGED)
    assert str(err.value) == (
        "moov atom not found; Error opening input: Invalid data found when processing input"
    )
    with pytest.raises(ProbeError, match="^ffmpeg printed no input description$"):
        describe_run("")


def test_describe_run_of_a_real_run_matches_the_probe(tmp_path):
    path = vfr_clip(tmp_path)
    run = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-loglevel", "level+info", "-i", f"file:{path}"]
        + ["-t", "0.5", "-f", "null", "-"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert describe_run(run.stderr) == probe_media(path)


def test_probe_argv_keeps_a_dash_name_from_being_an_option():
    argv = probe_argv("-x.mp4", "ffmpeg")
    assert argv == [
        "ffmpeg",
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "level+info",
        "-i",
        "file:-x.mp4",
    ]


def test_a_description_cut_short_by_an_unindented_line():
    text = "[info] Input #0, wav, from 'file:x.wav':\n[error] boom\n[info]   Stream #0:0: x"
    assert split_description(text) == (
        "[info] Input #0, wav, from 'file:x.wav':",
        "[error] boom\n[info]   Stream #0:0: x",
    )


# Three error lines (one repeated, one generic), info lines around them.
TAGGED_RUN = """\
[info] Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'file:x.mp4':
[h264 @ 0x5f] [error] first damage
[h264 @ 0x5f] [error] second damage
[info] frame=   12 fps=0.0
[h264 @ 0x5f] [error] first damage
[error] Conversion failed!
[aac @ 0x60] [error] third damage
[info] video:1kB audio:2kB
"""


def test_ffmpeg_errors_are_the_last_distinct_error_lines():
    # Distinct lines in order of their last appearance: second, first, third.
    assert ffmpeg_errors(TAGGED_RUN) == "first damage; third damage"
    assert ffmpeg_errors(TAGGED_RUN, n_lines=3) == "second damage; first damage; third damage"
    assert ffmpeg_errors("[info] all fine\n[warning] odd\n") == ""


def test_failure_reason_with_level_tags_takes_only_error_lines():
    assert ffmpeg_failure_reason(TAGGED_RUN) == "first damage; third damage"
    assert ffmpeg_failure_reason(TAGGED_RUN, 1) == "third damage"


def test_a_generic_line_does_not_end_the_search_for_reasons():
    text = "[error] Conversion failed!\n[error] the real reason\n"
    assert ffmpeg_failure_reason(text) == "the real reason"


# -- descriptions that ffmpeg prints rarely, each aimed at one branch of the parser -----------

HEADER = "Input #0, matroska,webm, from 'file:x.mkv':\n  Duration: 00:00:05.00, start: 0.000000\n"


def test_an_output_block_after_the_description_is_not_read():
    # An audio-only input whose run writes a picture: the output's video stream must not be
    # taken for the input's, nor its numbers for the input's.
    text = (
        "Input #0, wav, from 'file:x.wav':\n"
        "  Duration: 00:00:04.00, bitrate: 256 kb/s\n"
        "  Stream #0:0: Audio: pcm_s16le ([1][0][0][0] / 0x0001), 16000 Hz, mono, s16, 256 kb/s\n"
        "Output #0, image2, to 'file:frame.png':\n"
        "  Duration: 00:00:09.00, start: 2.000000\n"
        "  Stream #0:0: Video: png, rgb24, 224x224, q=2-31, 200 kb/s, 25 fps, 25 tbn\n"
        "  Stream #0:1: Audio: pcm_s16le, 48000 Hz, stereo, s16\n"
    )
    info = parse_probe(text)
    assert info.video is None
    assert (info.duration_s, info.start_s) == (4.0, 0.0)
    assert (info.audio.sample_rate, info.audio.channels) == (16000, 1)


def test_a_second_input_does_not_override_the_first():
    text = (
        "Input #0, wav, from 'file:a.wav':\n"
        "  Duration: 00:00:04.00, start: 0.500000\n"
        "  Stream #0:0: Audio: pcm_s16le, 16000 Hz, mono, s16\n"
        "Input #1, wav, from 'file:b.wav':\n"
        "  Duration: 00:00:09.00, start: 3.000000\n"
    )
    info = parse_probe(text)
    assert (info.duration_s, info.start_s) == (4.0, 0.5)


def test_start_defaults_to_zero_and_may_be_negative_without_decimals():
    assert parse_probe(HEADER.replace(", start: 0.000000", "")).start_s == 0.0
    assert parse_probe(HEADER.replace("start: 0.000000", "start: -2")).start_s == -2.0
    assert parse_probe(HEADER.replace("00:00:05.00", "00:10:07")).duration_s == 607.0


def test_k_suffixed_rates_are_thousands():
    line = "  Stream #0:0: Video: vp8, yuv420p, 64x48, 1k fps, 1.5k tbr, 1k tbn\n"
    info = parse_probe(HEADER + line)
    assert (info.video.fps, info.video.tbr) == (1000.0, 1500.0)


def test_a_sar_with_a_zero_term_is_ignored():
    for sar in ("SAR 0:1 DAR 0:1", "SAR 1:0 DAR 1:0", "SAR 0:0 DAR 0:0"):
        line = f"  Stream #0:0: Video: h264, yuv420p, 320x240 [{sar}], 25 fps, 25 tbr\n"
        video = parse_probe(HEADER + line).video
        assert (video.width, video.height) == (320, 240), sar


def test_a_size_right_after_the_codec_and_no_rates():
    # Raw video prints the size as the second field; a stream may print no fps or tbr.
    info = parse_probe(HEADER + "  Stream #0:3: Video: rawvideo, 96x64\n")
    video = info.video
    assert (video.index, video.codec, video.width, video.height) == (3, "rawvideo", 96, 64)
    assert (video.fps, video.tbr, video.rotation) == (None, None, 0)
    assert not video.is_variable_rate


def test_a_video_stream_without_a_size_is_skipped_for_the_next():
    text = HEADER + (
        "  Stream #0:0: Video: h264, none, 25 fps\n"
        "  Stream #0:1: Video: mjpeg, yuvj420p, 80x60 [SAR 1:1 DAR 4:3], 25 fps\n"
    )
    video = parse_probe(text).video
    assert (video.index, video.codec, video.width) == (1, "mjpeg", 80)


def test_cover_art_first_then_the_real_video():
    text = HEADER + (
        "  Stream #0:0: Video: png, rgb24(pc), 600x600, 90k tbr, 90k tbn (attached pic)\n"
        "  Stream #0:1: Video: vp9, yuv420p, 64x36, 30 fps, 30 tbr\n"
    )
    video = parse_probe(text).video
    assert (video.index, video.width, video.height, video.fps) == (1, 64, 36, 30.0)


def test_nested_and_stray_brackets_keep_the_fields_apart():
    # Commas inside nested brackets stay in one field; a stray closing bracket (a codec
    # tag ffmpeg prints raw) does not swallow the commas after it.
    nested = "  Stream #0:0: Video: h264 (a (b, c), d), yuv420p(tv, bt709[x, y]), 64x48, 25 fps\n"
    assert parse_probe(HEADER + nested).video.width == 64
    stray = "  Stream #0:0: Video: h264 (avc1 / X]1)), yuv420p, 64x48, 25 fps, 50 tbr\n"
    video = parse_probe(HEADER + stray).video
    assert (video.codec, video.width, video.height, video.fps, video.tbr) == (
        "h264",
        64,
        48,
        25.0,
        50.0,
    )


@pytest.mark.parametrize(
    "desc, fields",
    [
        # Nested brackets: the comma after the inner pair is still inside the outer one.
        (
            "h264 (a (b, c), d), yuv420p(tv, bt709[x, y]), 64x48",
            ["h264 (a (b, c), d)", "yuv420p(tv, bt709[x, y])", "64x48"],
        ),
        # Capital letters (XVID's tag) are not brackets.
        (
            "mpeg4 (Simple Profile) (XVID / 0x44495658), yuv420p, 640x480 [SAR 1:1 DAR 4:3]",
            ["mpeg4 (Simple Profile) (XVID / 0x44495658)", "yuv420p", "640x480 [SAR 1:1 DAR 4:3]"],
        ),
        ("h264 (X, y), 64x48", ["h264 (X, y)", "64x48"]),
        # A stray closing bracket does not make the depth negative.
        ("a), b, c", ["a)", "b", "c"]),
        ("a, , b,", ["a", "b"]),
        ("", []),
    ],
)
def test_split_fields_by_hand(desc, fields):
    assert _split_fields(desc) == fields


def test_an_xvid_stream_is_read():
    line = (
        "  Stream #0:0: Video: mpeg4 (Simple Profile) (XVID / 0x44495658), yuv420p, "
        "640x480 [SAR 1:1 DAR 4:3], 1000 kb/s, 25 fps, 25 tbr, 25 tbn\n"
    )
    video = parse_probe(HEADER + line).video
    assert (video.codec, video.width, video.height, video.fps) == ("mpeg4", 640, 480, 25.0)


def test_empty_fields_and_a_blank_stream_description():
    audio = parse_probe(HEADER + "  Stream #0:0: Audio: pcm_s16le,, 8000 Hz, , mono\n").audio
    assert (audio.codec, audio.sample_rate, audio.layout, audio.channels) == (
        "pcm_s16le",
        8000,
        "mono",
        1,
    )
    blank = parse_probe(HEADER + "  Stream #0:1: Audio: \n").audio
    assert (blank.index, blank.codec, blank.sample_rate, blank.layout) == (1, "", None, None)
    assert parse_probe(HEADER + "  Stream #0:1: Video: \n").video is None


def test_an_audio_stream_without_a_layout_or_with_its_rate_last():
    audio = parse_probe(HEADER + "  Stream #0:0: Audio: adpcm_ima_wav, 22050 Hz\n").audio
    assert (audio.sample_rate, audio.layout, audio.channels) == (22050, None, None)
    last = parse_probe(HEADER + "  Stream #0:0: Audio: opus, 48000 Hz, stereo\n").audio
    assert (last.layout, last.channels) == ("stereo", 2)
    # The first rate wins: a later field that looks like one is not the sample rate.
    twice = parse_probe(HEADER + "  Stream #0:0: Audio: x, 8000 Hz, mono, 44100 Hz, stereo\n")
    assert (twice.audio.sample_rate, twice.audio.layout) == (8000, "mono")
    # No rate at all: nothing guessed from the fields.
    none = parse_probe(HEADER + "  Stream #0:0: Audio: dts, stereo, fltp\n").audio
    assert (none.codec, none.sample_rate, none.layout, none.channels) == ("dts", None, None, None)


@pytest.mark.parametrize(
    "layout, channels",
    [
        ("FL+FR+LFE+TFL", 4),
        ("FL+FR", 2),
        ("USR63+FR", 2),  # a channel named by number
        ("fl+fr+lfe", 3),  # lower case: still one name per channel
        ("7 channels (FL+FR+FC+LFE+BL+BR+BC)", 7),
        ("12 channels", 12),
        ("FL", None),  # a single unknown name: not a custom order
        ("FL+", None),
        ("FL+FR (weird)", None),
        ("unknown", None),
        ("22.2", 24),
        ("downmix", 2),
    ],
)
def test_channel_counts_of_layout_names(layout, channels):
    text = HEADER + f"  Stream #0:0: Audio: pcm_f32le, 48000 Hz, {layout}, flt\n"
    assert parse_probe(text).audio.channels == channels


def test_side_data_belongs_to_the_stream_above_it():
    # The rotation sits under the audio stream here; the video above is not rotated.
    text = HEADER + (
        "  Stream #0:0: Video: h264, yuv420p, 64x36, 25 fps\n"
        "  Stream #0:1: Audio: aac, 48000 Hz, stereo\n"
        "    Side data:\n"
        "      displaymatrix: rotation of 90.00 degrees\n"
    )
    video = parse_probe(text).video
    assert (video.rotation, video.width, video.height) == (0, 64, 36)
    rotated = text.replace("Stream #0:1: Audio: aac, 48000 Hz, stereo\n", "")
    video = parse_probe(rotated).video
    assert (video.rotation, video.width, video.height) == (90, 36, 64)


def test_a_half_degree_rotation_rounds_to_the_nearest_degree():
    text = HEADER + (
        "  Stream #0:0: Video: h264, yuv420p, 64x36, 25 fps\n"
        "    Side data:\n"
        "      Display Matrix: rotation of -179.60 degrees\n"
    )
    assert parse_probe(text).video.rotation == 180


def test_close_is_inclusive_and_relative():
    assert _close(101.0, 100.0)  # exactly 1 % apart (both sides exact in binary)
    assert not _close(101.5, 100.0)
    assert _close(99.0, 100.0)


def test_probe_media_runs_without_stdin_within_the_time_limit(tmp_path, monkeypatch):
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"x")
    calls = []

    def fake_run(argv, **kwargs):
        calls.append((argv, kwargs))
        # Bytes that are not UTF-8 in a metadata line must not stop the parse.
        stderr = MP4_H264_AAC.replace("Lavf61.7.100", "Lavf\udcff").encode(
            "utf-8", "surrogateescape"
        )
        return subprocess.CompletedProcess(argv, 1, b"", stderr)

    monkeypatch.setattr(probe.subprocess, "run", fake_run)
    assert probe_media(path, ffmpeg="/opt/ffmpeg") == parse_probe(MP4_H264_AAC)
    probe_media(path, ffmpeg="/opt/ffmpeg", timeout_s=5.0)
    expected = {"stdin": subprocess.DEVNULL, "capture_output": True}
    assert calls == [
        (probe_argv(path, "/opt/ffmpeg"), {**expected, "timeout": 60.0}),
        (probe_argv(path, "/opt/ffmpeg"), {**expected, "timeout": 5.0}),
    ]


# --- real files -----------------------------------------------------------------------------


def test_probe_real_normal_clip(tmp_path):
    info = probe_media(normal_clip(tmp_path))
    assert info.duration_s == pytest.approx(3.0, abs=0.05)
    assert (info.video.width, info.video.height, info.video.fps) == (160, 120, 25.0)
    assert (info.audio.sample_rate, info.audio.channels) == (44100, 1)
    assert not info.video.is_variable_rate


@pytest.mark.parametrize(
    ("make", "check"),
    [
        (
            portrait_clip,
            lambda i: (i.video.width, i.video.height, i.video.is_portrait) == (120, 200, True),
        ),
        (
            surround_clip,
            lambda i: (i.audio.layout, i.audio.channels, i.audio.sample_rate) == ("5.1", 6, 48000),
        ),
        (low_rate_clip, lambda i: i.audio.sample_rate == 8000),
        (stereo_48k_clip, lambda i: (i.audio.channels, i.audio.sample_rate) == (2, 48000)),
        (vfr_clip, lambda i: i.video.is_variable_rate),
        (no_audio_clip, lambda i: i.audio is None and i.video is not None),
        (audio_only_clip, lambda i: i.video is None and i.audio is not None),
    ],
    ids=["portrait", "5.1", "8kHz", "stereo48k", "vfr", "no-audio", "audio-only"],
)
def test_probe_real_variants(tmp_path, make, check):
    assert check(probe_media(make(tmp_path)))


@pytest.mark.parametrize("make", [truncated_clip, garbage_file], ids=["truncated", "garbage"])
def test_probe_real_broken_files_raise(tmp_path, make):
    with pytest.raises(ProbeError, match="Invalid data|moov atom"):
        probe_media(make(tmp_path))


def test_probe_missing_file_raises(tmp_path):
    with pytest.raises(ProbeError, match="no such file"):
        probe_media(tmp_path / "absent.mp4")


def test_probe_reads_a_file_named_like_an_option(tmp_path, monkeypatch):
    shutil.copy(normal_clip(tmp_path), tmp_path / "-x.mp4")
    monkeypatch.chdir(tmp_path)
    assert probe_media("-x.mp4").video.width == 160
