"""Several clips in one ffmpeg process, each clip's row exactly what its own process gives.

A trivial ffmpeg process costs some 18 ms of CPU time before it decodes anything (start-up,
codec and filter registration, opening the outputs): a fifth of a small clip's whole cost
(docs/ffmpeg.md, "What a clip costs"). ``extract_batch`` gives up to
``extract.batch_size`` clips one process: input ``k`` is clip ``k``'s file with its own
seek and length, its part of the one filter graph reads ``[k:V:0]``/``[k:a:0]`` and ends in
``[frame_ck]``/``[audio_ck]``, its two outputs are its own files, and its ``showinfo`` is
named ``showinfo@ck``. From the one stderr each clip gets its own input description
(``Input #k``) and the time of its last kept frame (``showinfo@ck``'s lines, which must be
whole: see ``showinfo_times``).

A clip's row is taken from the batch only when nothing about it is in doubt, and then it
is built by the single-clip code (``clip.finish_clip``) from the same facts and the same
output bytes a process of its own would give: the process exited 0 and logged no error
line at all (an error line names no clip, so it could be any clip's), the clip's input
description parses and has both streams, the file holds the whole planned window, the
quarter second before the frame time held the kept frame, every showinfo frame line is
whole, and the finished row is ``ok``.
Every other clip (a failed download, an unsafe id, a window too short to run, a batch that
failed, timed out or logged an error, a clip that would need a second run) is extracted by
the single-clip path (``clip.extract_clip_safely``), which records its row as before.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from wavbrivl import status as st
from wavbrivl.child_process import run_logged
from wavbrivl.extract.argv import (
    ClipArgs,
    clip_filtergraph,
    clip_input_argv,
    clip_output_argv,
    global_argv,
)
from wavbrivl.extract.clip import (
    ClipJob,
    ClipWindow,
    FfmpegRun,
    available_seconds,
    extract_clip_safely,
    finish_clip,
    frame_needs_every_frame,
    locate_clip,
    planned_seconds,
)
from wavbrivl.extract.config import ExtractConfig
from wavbrivl.extract.frame_policy import frame_time
from wavbrivl.extract.probe import ProbeError, parse_probe, split_log_line

_ERROR_LEVELS = ("error", "fatal", "panic")
# One frame's line of showinfo@ck, whole: "[showinfo@c3 @ 0x55...] [info] n:   4 pts:  18432
# pts_time:1.5     duration:   1024 duration_time:0.04 fmt:yuv420p cl:left sar:1/1 s:160x120
# i:P iskey:0 type:B " (one line; showinfo ends it with a newline of its own).
_SHOWINFO = re.compile(
    r"^\[showinfo@c(?P<k>\d+) @ 0x[0-9a-f]+\] \[info\] n: *\d+ pts: *-?\d+ "
    r"pts_time:(?P<t>-?\d+(?:\.\d+)?) +duration: *-?\d+ duration_time:\S+ +fmt:\S+ cl:\S+ "
    r"sar:\d+/\d+ s:\d+x\d+ i:\S iskey:\d type:\S $"
)
_INPUT = re.compile(r"^Input #(?P<k>\d+), ")
_STREAM = re.compile(r"^(?P<indent>\s+Stream #)\d+:")


class Planned(NamedTuple):
    """A clip of the batch that ffmpeg runs: its place in the batch and in the process."""

    position: int  # index into the batch's jobs
    job: ClipJob
    window: ClipWindow
    window_s: float  # the planned window (what a process of its own would run first)
    frame_at_s: float  # the frame policy's time, source time
    frame_out: Path
    audio_out: Path


def tag(k: int) -> str:
    """The label of the process's ``k``-th clip in its graph, output and showinfo names."""
    return f"c{k}"


def extract_batch(
    jobs: Sequence[ClipJob],
    *,
    download_dir: Path,
    cfg: ExtractConfig,
    ffmpeg: str,
    resampler: str,
) -> list[dict[str, Any]]:
    """One media row per job, in order: the batch's ok rows, the single-clip path's others."""
    rows: list[dict[str, Any] | None] = [None] * len(jobs)
    with tempfile.TemporaryDirectory(prefix="wavbrivl-batch-") as tmp:
        planned = plan_batch(jobs, download_dir=download_dir, cfg=cfg, folder=Path(tmp))
        if len(planned) > 1:  # one clip alone is the single-clip path's
            try:
                settled = run_batch(planned, cfg=cfg, ffmpeg=ffmpeg, resampler=resampler)
            except Exception:  # the process could not run: every clip on its own
                settled = []
            for position, row in settled:
                rows[position] = row
    return [
        rows[position]
        or extract_clip_safely(
            job, download_dir=download_dir, cfg=cfg, ffmpeg=ffmpeg, resampler=resampler
        )
        for position, job in enumerate(jobs)
    ]


def plan_batch(
    jobs: Sequence[ClipJob], *, download_dir: Path, cfg: ExtractConfig, folder: Path
) -> list[Planned]:
    """The jobs that a process of their own would start with a full extraction run."""
    planned: list[Planned] = []
    for position, job in enumerate(jobs):
        try:
            window = locate_clip(job, download_dir)
            window_s = planned_seconds(window)
            if window_s < cfg.min_seconds:  # described only, never run
                continue
            frame_at_s = frame_time(
                cfg.frame_policy, job.clip_id, window.start_s, window_s, cfg.seed
            )
        except Exception:  # the single-clip path records why
            continue
        k = len(planned)
        planned.append(
            Planned(
                position,
                job,
                window,
                window_s,
                frame_at_s,
                folder / f"frame{k}.ppm",
                folder / f"audio{k}.flac",
            )
        )
    return planned


def batch_argv(
    planned: Sequence[Planned], *, cfg: ExtractConfig, ffmpeg: str, resampler: str
) -> list[str]:
    """One process for the planned clips: every input, then each clip's graph, then each
    clip's two outputs. Clip ``k`` is input ``k`` and carries :func:`tag` ``(k)``."""
    clips = [_clip_args(p) for p in planned]
    inputs = [item for clip in clips for item in clip_input_argv(clip)]
    # One graph for all clips: ffmpeg runs a graph in one thread, so the clips' showinfo
    # lines come one after the other (a graph each would log from threads of their own, and
    # ffmpeg glues a line logged by one thread into another thread's unfinished one).
    graph = ";".join(
        clip_filtergraph(clip, cfg, resampler, input_index=k, tag=tag(k))
        for k, clip in enumerate(clips)
    )
    outputs = [
        item
        for k, clip in enumerate(clips)
        for item in clip_output_argv(clip, cfg, tag=tag(k), chapters_from=k)
    ]
    return [*global_argv(ffmpeg), *inputs, "-filter_complex", graph, *outputs]


def run_batch(
    planned: Sequence[Planned], *, cfg: ExtractConfig, ffmpeg: str, resampler: str
) -> list[tuple[int, dict[str, Any]]]:
    """``(position, row)`` of every clip whose row the batch settles; [] when it settles none.

    A process that failed or logged an error runs again without the clips its stderr shows
    to be at fault, as long as that leaves out at least one clip and keeps two: an input
    described without a video or an audio stream (its graph cannot be built), and the first
    input not described at all (ffmpeg stops at a file it cannot open, before the inputs
    after it). Each run has ``clip_timeout_s`` per clip.
    """
    while True:
        log = _run_process(planned, cfg=cfg, ffmpeg=ffmpeg, resampler=resampler)
        if log is None:
            return []
        if log.clean:
            break
        descriptions = input_descriptions(log.text)
        opened = next((k for k in range(len(planned)) if k not in descriptions), len(planned))
        whole = [
            *(clip for k, clip in enumerate(planned[:opened]) if _has_both(descriptions[k])),
            *planned[opened + 1 :],
        ]
        if len(whole) < 2 or len(whole) == len(planned):
            return []
        planned = whole
    descriptions = input_descriptions(log.text)
    shown = showinfo_times(log.text)
    if shown is None:  # a frame's time that cannot be told whose
        return []
    settled = []
    for k, clip in enumerate(planned):
        row = _settle(clip, descriptions.get(k), shown.get(k), cfg)
        if row is not None:
            settled.append((clip.position, row))
    return settled


class ProcessLog(NamedTuple):
    text: str  # the process's stderr
    clean: bool  # it exited 0 and logged no error line


def _run_process(
    planned: Sequence[Planned], *, cfg: ExtractConfig, ffmpeg: str, resampler: str
) -> ProcessLog | None:
    """Run one process for ``planned`` (its outputs start absent); None when it timed out."""
    for clip in planned:
        clip.frame_out.unlink(missing_ok=True)
        clip.audio_out.unlink(missing_ok=True)
    argv = batch_argv(planned, cfg=cfg, ffmpeg=ffmpeg, resampler=resampler)
    try:
        returncode, text = run_logged(argv, timeout=cfg.clip_timeout_s * len(planned))
    except subprocess.TimeoutExpired:
        return None
    return ProcessLog(text, returncode == 0 and not has_error_line(text))


def _has_both(description: str) -> bool:
    """Whether an input description shows a video and an audio stream."""
    try:
        info = parse_probe(description)
    except ProbeError:
        return False
    return info.video is not None and info.audio is not None


def _settle(
    clip: Planned, description: str | None, shown_at: float | None, cfg: ExtractConfig
) -> dict[str, Any] | None:
    """The clip's row when the batch's run is the one its own process would end with."""
    if description is None or not _has_both(description):
        return None
    info = parse_probe(description)
    if available_seconds(clip.window, clip.window_s, info) != clip.window_s:
        return None  # a process of its own would run again (or stop) here
    done = FfmpegRun(0, "", clip.frame_at_s, shown_at)
    if frame_needs_every_frame(done, clip.frame_out, clip.window):
        return None
    try:
        row = finish_clip(
            clip.job.clip_id, clip.window, info, done, clip.frame_out, clip.audio_out, cfg
        )
    except Exception:  # the single-clip path records why
        return None
    return row if row["status"] == st.OK else None


def _clip_args(clip: Planned) -> ClipArgs:
    window = clip.window
    return ClipArgs(
        window.src,
        window.offset_s,
        clip.window_s,
        clip.frame_at_s - window.start_s,
        clip.frame_out,
        clip.audio_out,
    )


def has_error_line(stderr: str) -> bool:
    """Whether any line of the stderr is tagged error, fatal or panic."""
    return any(split_log_line(line)[0] in _ERROR_LEVELS for line in stderr.splitlines())


def input_descriptions(stderr: str) -> dict[int, str]:
    """Input ``k``'s description, as ffmpeg prints it for a process whose only input it is.

    The ``Input #k`` line and the indented lines under it, with the input's number made 0
    (``Input #0``, ``Stream #0:i``), which is all that differs. An input described twice is
    left out: it cannot be told which description is whose.
    """
    texts = [split_log_line(line)[1] for line in stderr.splitlines()]
    found: dict[int, list[str]] = {}
    twice: set[int] = set()
    i = 0
    while i < len(texts):
        m = _INPUT.match(texts[i])
        if not m:
            i += 1
            continue
        k = int(m["k"])
        block = ["Input #0, " + texts[i][m.end() :]]
        i += 1
        while i < len(texts) and texts[i].startswith(" "):
            block.append(_STREAM.sub(r"\g<indent>0:", texts[i]))
            i += 1
        if k in found:
            twice.add(k)
        found[k] = block
    return {k: "\n".join(block) for k, block in found.items() if k not in twice}


def showinfo_times(stderr: str) -> dict[int, float] | None:
    """``{k: pts_time}`` of the last frame each clip's ``showinfo@ck`` logged; None when a
    frame's line is not whole.

    ffmpeg writes a showinfo frame line in parts (the line, then its newline), and only a
    message that starts a line gets the ``[name @ 0x...] [level]`` prefix: a message another
    thread logs between the parts is glued to the line, and a frame line logged while
    another thread's line is open loses its prefix. Either way some ``pts_time:`` is then
    outside a whole frame line, and which clip it belongs to cannot be told.
    """
    times: dict[int, float] = {}
    for line in stderr.splitlines():
        if "pts_time:" not in line:
            continue
        m = _SHOWINFO.match(line)
        if not m or line.count("pts_time:") != 1:
            return None
        times[int(m["k"])] = float(m["t"])
    return times
