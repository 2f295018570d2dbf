"""Synthesise test media with ffmpeg's lavfi sources (no network, no fixtures on disk).

Every audio/video file made here carries its own clock, so a test can tell *which* moment
of the source a decoded frame or audio window came from:

* video: a flat grey picture whose level steps once a second (``grey_level_at``);
* audio: a sine tone whose frequency steps once a second (``tone_hz_at``).

``dominant_hz`` and ``second_of_grey`` turn decoded samples / pixels back into that clock.
Other helpers' tests may import this module (``from media_factory import ...``).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wavbrivl.ffmpeg_bin import ffmpeg_exe

# The clocks. Luma steps of 16 keep 13 distinct seconds inside limited-range video (16..235).
GREY_STEP = 16
TONE_BASE_HZ = 300.0
TONE_STEP_HZ = 100.0


def grey_level_at(t: float) -> int:
    """Luma (limited range) of the synthetic picture at source time ``t``."""
    return 16 + GREY_STEP * int(np.floor(t))


def second_of_grey(rgb_mean: float) -> int:
    """Invert ``grey_level_at`` for a decoded full-range RGB mean: which second it shows."""
    return round(rgb_mean / (GREY_STEP * 255.0 / 219.0))


def tone_hz_at(t: float) -> float:
    """Frequency of the synthetic tone at source time ``t``."""
    return TONE_BASE_HZ + TONE_STEP_HZ * int(np.floor(t))


def dominant_hz(samples: np.ndarray, sample_rate: int) -> float:
    """Frequency of the strongest spectral peak of ``samples`` (1-D), Hann-windowed."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1.0 / sample_rate)[np.argmax(spectrum)])


@dataclass(frozen=True)
class AvSpec:
    """What to synthesise. ``vfr`` keeps every frame of the first second, then every third."""

    duration_s: float = 3.0
    video: bool = True
    audio: bool = True
    width: int = 160
    height: int = 120
    fps: int = 25
    vfr: bool = False
    sample_rate: int = 44100
    channel_layout: str = "mono"  # mono | stereo | 5.1: the tone goes to every channel
    faststart: bool = False  # index (moov) before the media data


_CHANNELS = {"mono": 1, "stereo": 2, "5.1": 6}


def make_av_argv(path: Path, spec: AvSpec, ffmpeg: str) -> list[str]:
    """The ffmpeg argv that writes ``spec`` to ``path`` (H.264 + AAC)."""
    argv = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y"]
    if spec.video:
        source = f"color=c=gray:s={spec.width}x{spec.height}:r={spec.fps}:d={spec.duration_s}"
        argv += ["-f", "lavfi", "-i", source]
    if spec.audio:
        tone = f"sin(2*PI*t*({TONE_BASE_HZ}+{TONE_STEP_HZ}*floor(t)))*0.5"
        exprs = "|".join([tone] * _CHANNELS[spec.channel_layout])
        source = (
            f"aevalsrc=exprs={exprs}:s={spec.sample_rate}"
            f":c={spec.channel_layout}:d={spec.duration_s}"
        )
        argv += ["-f", "lavfi", "-i", source]
    if spec.video:
        vf = f"format=yuv420p,geq=lum='16+{GREY_STEP}*floor(T)':cb=128:cr=128"
        if spec.vfr:
            # Drop two frames in three after the first second: the timestamps keep their
            # source times, so the stream is variable-rate but the clock still holds.
            vf += ",select='lt(t\\,1)+not(mod(n\\,3))'"
        argv += ["-vf", vf, "-c:v", "libx264", "-preset", "ultrafast", "-g", str(spec.fps)]
        argv += ["-fps_mode", "vfr" if spec.vfr else "cfr"]
    if spec.audio:
        argv += ["-c:a", "aac", "-b:a", "96k"]
    if spec.faststart:
        argv += ["-movflags", "+faststart"]
    argv += ["-f", "mp4", str(path)]
    return argv


def make_av(path: str | os.PathLike, spec: AvSpec = AvSpec()) -> Path:
    """Write ``spec`` to ``path`` and return the path."""
    path = Path(path)
    subprocess.run(make_av_argv(path, spec, ffmpeg_exe()), check=True, capture_output=True)
    return path


# --- the named kinds of media the extraction tests (and others) need -----------------------


def normal_clip(directory: Path, name: str = "normal.mp4", duration_s: float = 3.0) -> Path:
    """H.264 + AAC mono 44.1 kHz, 160x120, 25 fps."""
    return make_av(directory / name, AvSpec(duration_s=duration_s))


def no_audio_clip(directory: Path, name: str = "no_audio.mp4") -> Path:
    return make_av(directory / name, AvSpec(audio=False))


def audio_only_clip(directory: Path, name: str = "audio_only.m4a") -> Path:
    """An m4a with an AAC stream and no video stream."""
    return make_av(directory / name, AvSpec(video=False))


def truncated_clip(directory: Path, name: str = "truncated.mp4", keep: float = 0.5) -> Path:
    """A good mp4 with its tail cut off (the moov atom sits at the end, so it is lost)."""
    path = normal_clip(directory, name)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def damaged_clip(
    directory: Path, name: str = "damaged.mp4", duration_s: float = 12.0, keep: float = 0.5
) -> Path:
    """Index up front, media data cut short: ffmpeg opens it and decodes until the cut."""
    path = make_av(directory / name, AvSpec(duration_s=duration_s, faststart=True))
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def garbage_file(directory: Path, name: str = "garbage.mp4", n_bytes: int = 4096) -> Path:
    """Random bytes under a media file name (seeded: the same bytes every run)."""
    path = directory / name
    path.write_bytes(np.random.default_rng(1234).bytes(n_bytes))
    return path


def short_clip(directory: Path, name: str = "short.mp4", duration_s: float = 0.5) -> Path:
    return make_av(directory / name, AvSpec(duration_s=duration_s))


def portrait_clip(directory: Path, name: str = "portrait.mp4") -> Path:
    return make_av(directory / name, AvSpec(width=120, height=200))


# An anamorphic picture: stored 80x120 with 2:1 pixels, so it is shown 160x120. Its left and
# right 8 stored columns are white, its top and bottom 20 rows black, the rest mid grey: a
# square-pixel centre crop (stored columns 10..69, all rows) shows the black bands and no
# white; a crop of the stored pixels (all columns, rows 20..99) shows white and no black.
ANAMORPHIC_STORED = (80, 120)
ANAMORPHIC_SAR = 2
ANAMORPHIC_BAND_ROWS = 20


def anamorphic_clip(directory: Path, name: str = "anamorphic.mp4") -> Path:
    path = directory / name
    width, height = ANAMORPHIC_STORED
    side = f"lt(X,8)+gte(X,{width - 8})"
    band = f"lt(Y,{ANAMORPHIC_BAND_ROWS})+gte(Y,{height - ANAMORPHIC_BAND_ROWS})"
    lum = f"if({side},235,if({band},16,128))".replace(",", "\\,")  # commas inside a filter
    argv = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y"]
    argv += ["-f", "lavfi", "-i", f"color=c=gray:s={width}x{height}:r=25:d=3"]
    argv += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=3"]
    argv += ["-vf", f"format=yuv420p,geq=lum='{lum}':cb=128:cr=128,setsar={ANAMORPHIC_SAR}"]
    argv += ["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-f", "mp4", str(path)]
    subprocess.run(argv, check=True, capture_output=True)
    return path


def surround_clip(directory: Path, name: str = "surround.mp4") -> Path:
    """5.1 AAC audio at 48 kHz."""
    return make_av(directory / name, AvSpec(channel_layout="5.1", sample_rate=48000))


def low_rate_clip(directory: Path, name: str = "low_rate.mp4") -> Path:
    """8 kHz mono audio."""
    return make_av(directory / name, AvSpec(sample_rate=8000))


def vfr_clip(directory: Path, name: str = "vfr.mp4", duration_s: float = 3.0) -> Path:
    """25 fps for the first second, ~8.3 fps after (timestamps kept, ``-fps_mode vfr``)."""
    return make_av(directory / name, AvSpec(duration_s=duration_s, vfr=True))


def stereo_48k_clip(directory: Path, name: str = "stereo48k.mp4") -> Path:
    return make_av(directory / name, AvSpec(channel_layout="stereo", sample_rate=48000))


def long_clip(directory: Path, name: str = "long.mp4", duration_s: float = 12.0) -> Path:
    """A whole-source file long enough to cut several clips from (12 distinct seconds)."""
    return make_av(directory / name, AvSpec(duration_s=duration_s))
