"""The audio file reader of the ``wavbrivl`` command: real ffmpeg, media made with lavfi.

Expected values come from the signal we synthesise (its length, its frequency), not from the
reader: a 2.5 s file at any rate is 40000 samples at 16 kHz, a 440 Hz tone stays 440 Hz.
"""

from __future__ import annotations

import io
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from media_factory import audio_only_clip, dominant_hz, no_audio_clip, normal_clip

from wavbrivl import audiofile
from wavbrivl.audiofile import (
    AudioFileError,
    check_readable,
    decode_argv,
    ffmpeg_reason,
    iter_windows,
    read_audio,
    read_exact,
    resample_argv,
    to_mono_16k,
)
from wavbrivl.ffmpeg_bin import ffmpeg_exe

SR = 16_000


def tone(path: Path, *, seconds: float, rate: int, channels: int = 1, hz: int = 440) -> Path:
    """A sine tone written by ffmpeg in the format of ``path``'s suffix."""
    subprocess.run(
        [
            ffmpeg_exe(),
            "-y",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            f"sine=frequency={hz}:duration={seconds}:sample_rate={rate}",
            "-ac",
            str(channels),
            str(path),
        ],
        check=True,
    )
    return path


def test_decode_argv_is_pinned():
    assert decode_argv("FF", "a b.wav") == [
        "FF",
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-i",
        "file:a b.wav",
        "-map",
        "0:a:0",
        "-vn",
        "-ac",
        "1",
        "-ar",
        "16000",
        "-f",
        "f32le",
        "pipe:1",
    ]
    assert decode_argv("FF", Path("-x.wav"), 8000)[6] == "file:-x.wav"
    assert decode_argv("FF", "x", 8000)[-4] == "8000"


def test_resample_argv_is_pinned():
    assert resample_argv("FF", 8000, 2) == [
        "FF",
        "-hide_banner",
        "-loglevel",
        "error",
        "-f",
        "f32le",
        "-ar",
        "8000",
        "-ac",
        "2",
        "-i",
        "pipe:0",
        "-ac",
        "1",
        "-ar",
        "16000",
        "-f",
        "f32le",
        "pipe:1",
    ]
    assert resample_argv("FF", 8000, 2, 22050)[-4] == "22050"


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".mp3", ".m4a"])
def test_8khz_stereo_in_any_container_becomes_16khz_mono(tmp_path, suffix):
    path = tone(tmp_path / f"t{suffix}", seconds=2.5, rate=8000, channels=2)
    samples = read_audio(path)
    assert samples.dtype == np.float32 and samples.ndim == 1
    # 2.5 s at 16 kHz = 40000 samples; lossy codecs add or trim a frame of padding.
    slack = 0 if suffix in (".wav", ".flac") else 2048
    assert abs(len(samples) - 40_000) <= slack
    assert dominant_hz(samples, SR) == pytest.approx(440, abs=3)
    assert 0.1 < np.abs(samples).max() <= 1.0


def test_the_audio_track_of_a_video_is_read(tmp_path):
    samples = read_audio(normal_clip(tmp_path, duration_s=2.0))
    assert abs(len(samples) - 32_000) <= 2048
    assert read_audio(audio_only_clip(tmp_path)).size > 0


def test_windows_are_full_but_the_last_and_add_up_to_the_file(tmp_path):
    path = tone(tmp_path / "t.wav", seconds=2.5, rate=SR)
    windows = list(iter_windows(path, 16_000))
    assert [len(w) for w in windows] == [16_000, 16_000, 8_000]
    whole = list(iter_windows(path, 100_000))
    assert len(whole) == 1
    np.testing.assert_array_equal(np.concatenate(windows), whole[0])


def test_a_file_of_exactly_two_windows_gives_two(tmp_path):
    path = tone(tmp_path / "t.wav", seconds=2.0, rate=SR)
    assert [len(w) for w in iter_windows(path, 16_000)] == [16_000, 16_000]


def test_stopping_early_ends_ffmpeg_without_reading_the_rest(tmp_path):
    path = tone(tmp_path / "long.flac", seconds=60, rate=SR)
    windows = iter_windows(path, 1600)
    first = next(windows)
    windows.close()  # the finally block kills ffmpeg; no error for the unread rest
    assert len(first) == 1600


def test_stopping_early_kills_ffmpeg_and_a_whole_read_lets_it_exit(tmp_path, monkeypatch):
    procs = []
    real = subprocess.Popen

    def spy(*args, **kwargs):
        procs.append(real(*args, **kwargs))
        return procs[-1]

    monkeypatch.setattr(subprocess, "Popen", spy)
    windows = iter_windows(tone(tmp_path / "long.flac", seconds=60, rate=SR), 1600)
    next(windows)
    windows.close()
    assert procs[-1].returncode == -signal.SIGKILL  # killed, not left to die of the pipe
    assert sum(map(len, iter_windows(tone(tmp_path / "t.wav", seconds=1, rate=SR), 1600))) == SR
    assert procs[-1].returncode == 0


def test_the_whole_of_ffmpeg_s_error_text_is_the_reason(tmp_path, monkeypatch):
    # A stand-in ffmpeg that fails with one line: the reason keeps it whole, first letter too.
    fake = tmp_path / "ffmpeg"
    fake.write_text("#!/bin/sh\necho 'boom: no decoder for this' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(audiofile, "ffmpeg_exe", lambda: str(fake))
    path = tone(tmp_path / "t.wav", seconds=1, rate=SR)
    with pytest.raises(AudioFileError) as info:
        list(iter_windows(path, 1600))
    assert str(info.value) == f"{path}: ffmpeg cannot decode it (boom: no decoder for this)"


def test_a_window_below_one_sample_is_refused(tmp_path):
    with pytest.raises(ValueError, match="at least one sample"):
        next(iter_windows(tone(tmp_path / "t.wav", seconds=1, rate=SR), 0))


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        # ffmpeg reads a text file as a "tty" video without sound
        (
            lambda d: (d / "notes.txt").write_text("not audio\n" * 50) and d / "notes.txt",
            "no audio stream",
        ),
        (
            lambda d: (d / "noise.wav").write_bytes(bytes(range(256)) * 8) and d / "noise.wav",
            "invalid data",
        ),
        (lambda d: (d / "empty.wav").write_bytes(b"") or d / "empty.wav", "empty file (0 bytes)"),
        (lambda d: (d / "folder").mkdir() or d / "folder", "is a directory"),
        (lambda d: d / "missing.wav", "no such file"),
        (lambda d: no_audio_clip(d), "has no audio stream"),
    ],
    ids=["text", "bytes", "empty", "directory", "missing", "mp4-without-audio"],
)
def test_each_bad_file_gets_one_line_naming_it(tmp_path, make, reason):
    path = make(tmp_path)
    with pytest.raises(AudioFileError) as info:
        read_audio(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert reason in message
    assert "\n" not in message


def test_a_header_without_samples_is_zero_length(tmp_path):
    cut = tmp_path / "zero_frames.wav"
    sf.write(cut, np.zeros(0, np.float32), SR)  # a valid WAV header, no sample data
    assert cut.stat().st_size > 0
    with pytest.raises(AudioFileError, match="no audio samples"):
        read_audio(cut)


def test_check_readable_accepts_a_file_and_returns_its_path(tmp_path):
    path = tmp_path / "a.wav"
    path.write_bytes(b"x")
    assert check_readable(str(path)) == path


def test_ffmpeg_reason_maps_known_errors_and_keeps_the_last_line_otherwise():
    assert ffmpeg_reason("x\nStream map '0:a:0' matches no streams.\n") == "has no audio stream"
    assert ffmpeg_reason("f: Invalid data found when processing input") == (
        "is not audio ffmpeg can read (invalid data)"
    )
    assert ffmpeg_reason("first\n  second line  \n\nthird\n") == "ffmpeg cannot decode it (third)"
    assert ffmpeg_reason("") == "ffmpeg cannot decode it (no error text)"


class Trickle(io.RawIOBase):
    """A pipe that hands out at most 3 bytes per read."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self, n: int = -1) -> bytes:
        chunk, self.data = self.data[: min(n, 3)], self.data[min(n, 3) :]
        return chunk


def test_read_exact_collects_short_reads_until_the_end():
    stream = Trickle(bytes(range(10)))
    assert read_exact(stream, 7) == bytes(range(7))
    assert read_exact(stream, 7) == bytes(range(7, 10))
    assert read_exact(stream, 7) == b""


def test_arrays_at_16khz_are_averaged_over_channels_either_way_round():
    rng = np.random.default_rng(0)
    stereo = rng.uniform(-1, 1, (2, 1000)).astype(np.float32)
    expected = (stereo[0] + stereo[1]) / 2
    np.testing.assert_allclose(to_mono_16k(stereo, SR), expected, rtol=1e-6)
    np.testing.assert_allclose(to_mono_16k(stereo.T, SR), expected, rtol=1e-6)
    np.testing.assert_array_equal(to_mono_16k(stereo[0], SR), stereo[0])
    assert to_mono_16k([0.5, 0.25], SR).dtype == np.float32


def test_arrays_at_other_rates_are_resampled_keeping_the_pitch():
    t = np.arange(8000 * 2) / 8000  # 2 s at 8 kHz
    x = np.sin(2 * np.pi * 300 * t).astype(np.float32)
    out = to_mono_16k(np.stack([x, x]), 8000)
    assert out.dtype == np.float32
    assert abs(len(out) - 32_000) <= 16
    assert dominant_hz(out, SR) == pytest.approx(300, abs=3)


@pytest.mark.parametrize(
    ("array", "rate", "message"),
    [
        (np.zeros((2, 3, 4)), SR, "must be \\(T,\\) or \\(C, T\\)"),
        (np.zeros(0), SR, "^audio array has no samples$"),
        (np.array([0.0, np.nan]), SR, "^audio array holds NaN or infinite samples$"),
        (
            np.zeros(100),
            2**31,
            "^resampling from 2147483648 Hz failed: ffmpeg cannot decode it \\(",
        ),
        (np.zeros((9, 100)), SR, "more than 8 channels"),
        (np.zeros(100), 0, "sample_rate must be positive"),
    ],
)
def test_bad_arrays_are_refused_with_the_reason(array, rate, message):
    with pytest.raises(ValueError, match=message):
        to_mono_16k(array, rate)


def test_edge_values_are_accepted():
    square = np.array([[1.0, 3.0], [5.0, 7.0]], np.float32)  # 2 channels of 2 samples
    np.testing.assert_array_equal(to_mono_16k(square, SR), [3.0, 5.0])
    eight = np.ones((8, 50), np.float32) * np.arange(8)[:, None]
    np.testing.assert_allclose(to_mono_16k(eight, SR), np.full(50, 3.5))
    assert len(to_mono_16k(np.zeros(100, np.float32), 1)) == 1_600_000  # 1 Hz is a rate: 100 s


def test_a_window_of_one_sample_is_allowed(tmp_path):
    path = tone(tmp_path / "t.wav", seconds=0.01, rate=SR)
    windows = list(iter_windows(path, 1))
    assert len(windows) == 160 and all(len(w) == 1 for w in windows)


def test_a_file_name_that_is_not_utf8_still_gets_its_line(tmp_path):
    name = (bytes(tmp_path) + b"/bad\xff.bin").decode("utf-8", "surrogateescape")
    Path(name).write_bytes(bytes(range(256)) * 8)  # ffmpeg's error repeats the raw name
    with pytest.raises(AudioFileError, match="invalid data"):
        read_audio(name)


@pytest.mark.slow
def test_a_one_hour_file_streams_in_bounded_memory(tmp_path):
    """The hour at 16 kHz float32 is 230 MB; reading it window by window holds one window."""
    import tracemalloc

    path = tone(tmp_path / "hour.flac", seconds=3600, rate=SR)
    window = 2 * SR
    tracemalloc.start()
    try:
        n_windows, n_samples = 0, 0
        for w in iter_windows(path, window):
            n_windows += 1
            n_samples += len(w)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n_samples == 3600 * SR and n_windows == 1800
    assert peak < 10 * window * 4  # a few windows' worth of bytes, not the 230 MB hour
