"""Any audio file ffmpeg reads -> 16 kHz mono float32, streamed in fixed windows.

Used by :mod:`wavbrivl.api` and the ``wavbrivl`` command to embed the user's own audio
(wav, flac, mp3, m4a, the audio track of a video...). ffmpeg decodes, downmixes and resamples
into a pipe; the reader takes one window at a time from it, so a one-hour file never sits in
memory whole.

Each failure is an :class:`AudioFileError` whose message is one line naming the file and
the reason (no such file, a directory, an empty file, not media ffmpeg can read, no audio
stream, no samples); callers record it per file and go on with the next one.

Following the project's ffmpeg rule (docs/architecture.md), the argv is built by pure
functions and run by one runner; nothing reaches a shell.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from wavbrivl.extract.media import SAMPLE_RATE
from wavbrivl.ffmpeg_bin import ffmpeg_exe

PathLike = str | os.PathLike
BYTES_PER_SAMPLE = 4  # float32

#: ffmpeg stderr fragments -> the reason we print (first match wins).
_REASONS: tuple[tuple[str, str], ...] = (
    ("matches no streams", "has no audio stream"),
    ("does not contain any stream", "has no audio stream"),
    ("Output file does not contain", "has no audio stream"),
    ("Invalid data found", "is not audio ffmpeg can read (invalid data)"),
)


class AudioFileError(ValueError):
    """One file that cannot be read as audio; the message names it and says why."""


def decode_argv(ffmpeg: str, path: PathLike, sample_rate: int = SAMPLE_RATE) -> list[str]:
    """ffmpeg argv: the first audio stream of ``path`` -> mono float32 at ``sample_rate`` on
    stdout. ``file:`` keeps a name that starts with ``-`` or looks like a URL a plain file."""
    return [
        ffmpeg,
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-i",
        f"file:{os.fspath(path)}",
        "-map",
        "0:a:0",
        "-vn",
        *_mono_float32_to_stdout(sample_rate),
    ]


def resample_argv(
    ffmpeg: str, rate: int, channels: int, sample_rate: int = SAMPLE_RATE
) -> list[str]:
    """ffmpeg argv: interleaved float32 at ``rate`` Hz with ``channels`` on stdin -> mono
    float32 at ``sample_rate`` on stdout."""
    return [
        ffmpeg,
        "-hide_banner",
        "-loglevel",
        "error",
        "-f",
        "f32le",
        "-ar",
        str(rate),
        "-ac",
        str(channels),
        "-i",
        "pipe:0",
        *_mono_float32_to_stdout(sample_rate),
    ]


def _mono_float32_to_stdout(sample_rate: int) -> list[str]:
    """The output half both argvs share: mono float32 at ``sample_rate`` on stdout."""
    return ["-ac", "1", "-ar", str(sample_rate), "-f", "f32le", "pipe:1"]


def check_readable(path: PathLike) -> Path:
    """Refuse what is not worth starting ffmpeg for: missing, a directory, zero bytes."""
    path = Path(path)
    if path.is_dir():
        raise AudioFileError(f"{path}: is a directory, not an audio file")
    if not path.exists():
        raise AudioFileError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise AudioFileError(f"{path}: empty file (0 bytes)")
    return path


def ffmpeg_reason(stderr: str) -> str:
    """The one-line reason for a failed decode, from ffmpeg's error output."""
    for fragment, reason in _REASONS:
        if fragment in stderr:
            return reason
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return f"ffmpeg cannot decode it ({lines[-1] if lines else 'no error text'})"


def read_exact(stream, n: int) -> bytes:
    """Up to ``n`` bytes from a pipe: fewer only at its end (a pipe read may return less)."""
    parts: list[bytes] = []
    got = 0
    while got < n:
        chunk = stream.read(n - got)
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def iter_windows(path: PathLike, window: int) -> Iterator[np.ndarray]:
    """The file's 16 kHz mono samples as consecutive ``(<= window,)`` float32 arrays.

    Every array but the last has exactly ``window`` samples. At most one window (and the
    pipe's buffer) is held at a time. Raises :class:`AudioFileError` (before the first
    window for a file that is not media, after the last for one that fails mid-way).
    """
    if window < 1:
        raise ValueError(f"window must be at least one sample, got {window}")
    path = check_readable(path)
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(  # noqa: S603 - argv list from the pure builder, no shell
            decode_argv(ffmpeg_exe(), path), stdout=subprocess.PIPE, stderr=err
        )
        total = 0
        finished = False
        try:
            while not finished:
                raw = read_exact(proc.stdout, window * BYTES_PER_SAMPLE)
                finished = len(raw) < window * BYTES_PER_SAMPLE
                usable = len(raw) - len(raw) % BYTES_PER_SAMPLE
                if usable:
                    total += usable // BYTES_PER_SAMPLE
                    yield np.frombuffer(raw[:usable], dtype="<f4").astype(np.float32)
        finally:
            proc.stdout.close()
            if not finished:
                proc.kill()  # the caller stopped early: do not decode the rest
            code = proc.wait()
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
    if code != 0:
        raise AudioFileError(f"{path}: {ffmpeg_reason(stderr)}")
    if total == 0:
        raise AudioFileError(f"{path}: no audio samples (zero length)")


def read_audio(path: PathLike) -> np.ndarray:
    """The whole file as one (T,) float32 array at 16 kHz mono (for short files)."""
    pieces = list(iter_windows(path, SAMPLE_RATE * 10))
    return np.concatenate(pieces)


def to_mono_16k(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """An in-memory signal -> (T,) float32 at 16 kHz mono.

    ``samples``: (T,) mono, or (C, T) / (T, C) with C <= 8 channels (the shorter axis is
    the channels). Other rates are resampled by ffmpeg, as files are.
    """
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim == 2:
        x = x if x.shape[0] <= x.shape[1] else x.T  # (C, T)
        if x.shape[0] > 8:
            raise ValueError(f"audio array of shape {samples.shape}: more than 8 channels")
    elif x.ndim != 1:
        raise ValueError(f"audio arrays must be (T,) or (C, T), got shape {x.shape}")
    else:
        x = x[None]  # (1, T)
    if x.shape[1] == 0:
        raise ValueError("audio array has no samples")
    if not np.isfinite(x).all():
        raise ValueError("audio array holds NaN or infinite samples")
    if sample_rate == SAMPLE_RATE:
        return x.mean(axis=0).astype(np.float32)
    if sample_rate < 1:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    interleaved = np.ascontiguousarray(x.T, dtype="<f4").tobytes()
    proc = subprocess.run(  # noqa: S603 - argv list from the pure builder, no shell
        resample_argv(ffmpeg_exe(), sample_rate, x.shape[0]),
        input=interleaved,
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        raise ValueError(
            f"resampling from {sample_rate} Hz failed: {ffmpeg_reason(proc.stderr.decode())}"
        )
    return np.frombuffer(proc.stdout, dtype="<f4").astype(np.float32)


__all__ = [
    "AudioFileError",
    "check_readable",
    "decode_argv",
    "ffmpeg_reason",
    "iter_windows",
    "read_audio",
    "read_exact",
    "resample_argv",
    "to_mono_16k",
]
