"""One clip's extraction: locate its download, run one ffmpeg process that extracts the
frame and the audio and describes the file, check them, and build its media row (a failure
becomes the row's status and reason). A batch of clips in one process
(wavbrivl.extract.batch) uses the same steps: ``locate_clip``, ``planned_seconds``,
``available_seconds``, ``frame_needs_every_frame`` and ``finish_clip``.
"""

from __future__ import annotations

import functools
import io
import math
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
import soundfile as sf
from PIL import Image

from wavbrivl import status as st
from wavbrivl.child_process import run_logged
from wavbrivl.clip_ids import is_safe_clip_id
from wavbrivl.extract.argv import extract_clip_argv, frame_window_start, seek_point
from wavbrivl.extract.config import ExtractConfig
from wavbrivl.extract.frame_policy import frame_time
from wavbrivl.extract.media import MEDIA_SCHEMA
from wavbrivl.extract.probe import (
    MediaInfo,
    ProbeError,
    describe_run,
    ffmpeg_errors,
    ffmpeg_failure_reason,
    last_showinfo_time,
    probe_media,
    split_description,
)

# A clip shorter than asked by less than this is not worth a note (container rounding).
SHORT_TOLERANCE_S = 0.05


class ClipFailure(Exception):
    """A per-clip outcome other than ok, with the status it should be recorded as."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class ClipJob:
    """One manifest clip joined with its download row."""

    clip_id: str
    start_s: float
    end_s: float
    download: Mapping[str, Any] | None  # None: no download row for this clip


def extract_clip_safely(
    job: ClipJob, *, download_dir: Path, cfg: ExtractConfig, ffmpeg: str, resampler: str
) -> dict[str, Any]:
    """``extract_clip`` that turns every exception into the clip's status row."""
    clip_id = shown_id(job.clip_id)
    try:
        return extract_clip(
            job, download_dir=download_dir, cfg=cfg, ffmpeg=ffmpeg, resampler=resampler
        )
    except ClipFailure as failure:
        return media_row(clip_id, failure.status, failure.reason)
    except subprocess.TimeoutExpired as exc:
        return media_row(clip_id, st.TIMEOUT, f"ffmpeg timed out after {exc.timeout:g} s")
    except Exception as exc:  # a per-clip bug or odd input must not lose the shard
        return media_row(clip_id, st.ERROR, f"{type(exc).__name__}: {exc}")


def extract_clip(
    job: ClipJob, *, download_dir: Path, cfg: ExtractConfig, ffmpeg: str, resampler: str
) -> dict[str, Any]:
    """One clip's media row; raises :class:`ClipFailure` for a non-ok outcome.

    One ffmpeg process does the work and describes the file on its stderr (docs/ffmpeg.md,
    "What a clip costs"). It runs again only when that description shows the file ending
    inside the window (the clip is then cut where the file ends), or when no frame fell in
    the quarter second before the frame time (every frame up to it is then selected, and up
    to a second past it).
    """
    window = locate_clip(job, download_dir)
    planned_s = planned_seconds(window)

    with tempfile.TemporaryDirectory(prefix="wavbrivl-extract-") as tmp:
        frame_out, audio_out = Path(tmp) / "frame.ppm", Path(tmp) / "audio.flac"
        run = functools.partial(
            _run_ffmpeg,
            job.clip_id,
            window,
            frame_out=frame_out,
            audio_out=audio_out,
            cfg=cfg,
            ffmpeg=ffmpeg,
            resampler=resampler,
        )
        # A window too short whatever the file holds needs only the file's description.
        done = run(planned_s) if planned_s >= cfg.min_seconds else None
        try:
            info = (
                describe_run(done.stderr)
                if done
                else probe_media(window.src, ffmpeg=ffmpeg, timeout_s=cfg.clip_timeout_s)
            )
        except ProbeError as exc:
            raise ClipFailure(st.BAD_MEDIA, str(exc)) from None
        fail = functools.partial(_failure_row, job.clip_id, source=_source_facts(info))
        missing = [
            kind for kind, stream in (("video", info.video), ("audio", info.audio)) if not stream
        ]
        if missing:
            return fail(st.BAD_MEDIA, " and ".join(f"no {kind} stream" for kind in missing))

        available_s = available_seconds(window, planned_s, info)
        if done is None or available_s < cfg.min_seconds:
            return fail(st.BAD_MEDIA, _too_short(max(available_s, 0.0), window.offset_s, cfg))
        if available_s != planned_s:  # the file ends inside the window: cut the clip there
            done = run(available_s)
        if frame_needs_every_frame(done, frame_out, window):
            done = run(available_s, every_frame=True)
        return finish_clip(job.clip_id, window, info, done, frame_out, audio_out, cfg)


def locate_clip(job: ClipJob, download_dir: Path) -> ClipWindow:
    """The clip's window in its downloaded file; :class:`ClipFailure` for a clip that has
    none (an unsafe id, a failed download, a missing file, a bad window)."""
    if not is_safe_clip_id(job.clip_id):
        raise ClipFailure(st.ERROR, f"unsafe clip id {job.clip_id!r}")
    return _locate(job, download_dir)


def planned_seconds(window: ClipWindow) -> float:
    """The window the section allows; the file's own duration is known once ffmpeg opened it."""
    if window.section_end_s is None:
        return window.asked_s
    return min(window.asked_s, window.section_end_s - window.start_s)


def available_seconds(window: ClipWindow, planned_s: float, info: MediaInfo) -> float:
    """How much of the planned window the file really holds (may be negative)."""
    if info.duration_s is None:
        return planned_s
    return min(planned_s, info.duration_s - window.offset_s)


def finish_clip(
    clip_id: str,
    window: ClipWindow,
    info: MediaInfo,
    done: FfmpegRun,
    frame_out: Path,
    audio_out: Path,
    cfg: ExtractConfig,
) -> dict[str, Any]:
    """The media row of a clip from its final extraction run ``done`` and its outputs."""
    source = _source_facts(info)
    fail = functools.partial(_failure_row, clip_id, source=source)
    stderr = done.stderr
    if done.returncode != 0:
        reason = ffmpeg_failure_reason(split_description(stderr)[1])
        return fail(st.BAD_MEDIA, reason or f"ffmpeg exited with {done.returncode}")
    damage = ffmpeg_errors(stderr)  # errors in a run that succeeded: data was skipped
    if not frame_out.is_file() or frame_out.stat().st_size == 0:
        return fail(st.BAD_MEDIA, _with_cause("no video frame decoded in the window", damage))
    if not audio_out.is_file():
        return fail(st.BAD_MEDIA, _with_cause("no audio decoded in the window", damage))
    jpeg = _ppm_to_jpeg(frame_out, cfg)
    flac = audio_out.read_bytes()

    n_samples = _check_audio(flac, cfg)
    got_s = n_samples / cfg.sample_rate
    if got_s < cfg.min_seconds:
        return fail(st.BAD_MEDIA, _too_short(got_s, window.offset_s, cfg))
    frame_at_s = done.frame_at_s
    if done.shown_at is not None:  # the frame really kept, on the source timeline
        frame_at_s = window.start_s - window.offset_s + seek_point(window.offset_s) + done.shown_at

    notes = _notes(info, cfg)
    if got_s < window.asked_s - SHORT_TOLERANCE_S:
        notes.append(f"shorter than asked: {got_s:.1f} of {window.asked_s:.1f} s")
    if damage:
        notes.append(f"ffmpeg errors: {damage}")
    return media_row(
        clip_id,
        st.OK,
        "",
        notes="; ".join(notes),
        frame=jpeg,
        frame_time_s=frame_at_s,
        audio=flac,
        n_samples=n_samples,
        sample_rate=cfg.sample_rate,
        **source,
    )


def frame_needs_every_frame(done: FfmpegRun, frame_out: Path, window: ClipWindow) -> bool:
    """Whether the window's frames did not settle the frame: none was written, or only the
    first one (``eq(n,0)``), earlier than the window, so a later one may have been skipped."""
    if not frame_out.is_file() or frame_out.stat().st_size == 0:
        return True
    kept_at = done.shown_at
    start_s = frame_window_start(window.offset_s, done.frame_at_s - window.start_s)
    return kept_at is not None and kept_at < start_s


class FfmpegRun(NamedTuple):
    returncode: int
    stderr: str  # the run's own stderr ("" for a clip of a batch that logged no error)
    frame_at_s: float  # the frame time asked for (source time), from the frame policy
    shown_at: float | None  # the kept frame's time (from the seek point) that showinfo logged


def _run_ffmpeg(
    clip_id: str,
    window: ClipWindow,
    window_s: float,
    *,
    every_frame: bool = False,
    frame_out: Path,
    audio_out: Path,
    cfg: ExtractConfig,
    ffmpeg: str,
    resampler: str,
) -> FfmpegRun:
    """The extraction process for the first ``window_s`` seconds of the clip (its outputs
    start absent: nothing of an earlier run can pass for this one's)."""
    frame_out.unlink(missing_ok=True)
    audio_out.unlink(missing_ok=True)
    frame_at_s = frame_time(cfg.frame_policy, clip_id, window.start_s, window_s, cfg.seed)
    argv = extract_clip_argv(
        window.src,
        offset_s=window.offset_s,
        duration_s=window_s,
        frame_offset_s=frame_at_s - window.start_s,
        frame_out=frame_out,
        audio_out=audio_out,
        cfg=cfg,
        ffmpeg=ffmpeg,
        resampler=resampler,
        every_frame=every_frame,
    )
    returncode, text = run_logged(argv, timeout=cfg.clip_timeout_s)
    return FfmpegRun(returncode, text, frame_at_s, last_showinfo_time(text))


class ClipWindow(NamedTuple):
    src: Path  # the downloaded file
    start_s: float  # clip start, source time
    offset_s: float  # clip start inside the file
    asked_s: float  # clip length the manifest asks for
    section_end_s: float | None  # source time where the file's section ends, if cut


def _locate(job: ClipJob, download_dir: Path) -> ClipWindow:
    """Where the clip is on disk; carries a failed download through as a ClipFailure."""
    row = job.download
    if row is None:
        raise ClipFailure(st.ERROR, "no download status row for this clip")
    if row["status"] != st.OK:
        reason = row["reason"] if isinstance(row["reason"], str) else ""
        raise ClipFailure(str(row["status"]), f"download: {reason}")
    name = row["file"]
    # (Path(".").name is "", so "." fails the name test; ".." keeps its name)
    if not isinstance(name, str) or not name or Path(name).name != name or name == "..":
        raise ClipFailure(st.ERROR, f"download row has no plain file name: {name!r}")
    src = download_dir / name
    if not src.is_file():
        raise ClipFailure(st.ERROR, f"downloaded file is missing: {src}")

    start_s, end_s = _finite(job.start_s, "start_s"), _finite(job.end_s, "end_s")
    section_start = _finite(row["section_start_s"], "download section_start_s")
    section_end = row["section_end_s"]
    section_end = None if pd.isna(section_end) else _finite(section_end, "download section_end_s")
    if end_s <= start_s:
        raise ClipFailure(st.ERROR, f"empty clip window [{start_s}, {end_s})")
    offset_s = start_s - section_start
    if offset_s < 0:
        raise ClipFailure(
            st.ERROR,
            f"clip starts at {start_s} s, before the downloaded section ({section_start} s)",
        )
    return ClipWindow(src, start_s, offset_s, end_s - start_s, section_end)


def _finite(value: Any, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise ClipFailure(st.ERROR, f"{name} is not a finite number: {value!r}")
    return number


def _source_facts(info: MediaInfo) -> dict[str, int | None]:
    return {
        "source_width": info.video.width if info.video else None,
        "source_height": info.video.height if info.video else None,
        "source_sample_rate": info.audio.sample_rate if info.audio else None,
        "source_channels": info.audio.channels if info.audio else None,
    }


def _notes(info: MediaInfo, cfg: ExtractConfig) -> list[str]:
    """Non-fatal facts worth knowing when a frame or a sound looks odd later."""
    video, audio = info.video, info.audio
    notes = []
    if video.is_portrait:
        notes.append(f"portrait {video.width}x{video.height} cropped")
    if video.rotation:
        notes.append(f"rotated {video.rotation} degrees")
    if video.is_variable_rate:
        notes.append("variable frame rate")
    if audio.channels is not None and audio.channels > 2:
        notes.append(f"downmixed {audio.channels} channels")
    elif audio.channels is None and audio.layout:
        notes.append(f"downmixed layout {audio.layout!r}")
    if audio.sample_rate is not None and audio.sample_rate < cfg.sample_rate:
        notes.append(f"resampled from {audio.sample_rate} Hz")  # upsampled: band-limited
    return notes


def _with_cause(what: str, cause: str) -> str:
    return f"{what} ({cause})" if cause else what


def _too_short(seconds: float, offset_s: float, cfg: ExtractConfig) -> str:
    return (
        f"too short: {seconds:.2f} s of media from offset {offset_s:.2f} s "
        f"(min_seconds {cfg.min_seconds:g})"
    )


def _ppm_to_jpeg(path: Path, cfg: ExtractConfig) -> bytes:
    with Image.open(path) as image:
        image = image.convert("RGB")
        if image.size != (cfg.frame_size, cfg.frame_size):  # ffmpeg must have scaled it
            raise RuntimeError(f"frame is {image.size}, expected {cfg.frame_size} square")
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=cfg.jpeg_quality)
    return buffer.getvalue()


def _check_audio(flac: bytes, cfg: ExtractConfig) -> int:
    """Number of samples; refuses audio that is not what the argv asked for."""
    info = sf.info(io.BytesIO(flac))
    if info.samplerate != cfg.sample_rate or info.channels != 1:
        raise RuntimeError(
            f"ffmpeg wrote {info.channels} channel(s) at {info.samplerate} Hz, "
            f"expected mono at {cfg.sample_rate} Hz"
        )
    return int(info.frames)


def shown_id(clip_id: Any) -> str:
    """The id as it goes into the string column (a non-string id shows as its repr)."""
    return clip_id if isinstance(clip_id, str) else repr(clip_id)


def media_row(clip_id: str, status: str, reason: str, **values: Any) -> dict[str, Any]:
    """A media row: every column None but the given ones (notes empty)."""
    row = {name: None for name in MEDIA_SCHEMA.names}
    row.update(clip_id=clip_id, status=status, reason=reason, notes="")
    row.update(values)
    return row


def _failure_row(
    clip_id: str, status: str, reason: str, *, source: dict[str, int | None]
) -> dict[str, Any]:
    return media_row(clip_id, status, reason, **source)
