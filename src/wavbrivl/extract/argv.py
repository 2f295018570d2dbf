"""Pure ffmpeg argv builders for the extraction stage (testable without ffmpeg).

An ffmpeg process decodes a clip's window once and writes two outputs; a process of several
clips (wavbrivl.extract.batch) puts together one input, graph and pair of outputs per clip
from the same parts (``global_argv``, ``clip_input_argv``, ``clip_filtergraph``,
``clip_output_argv``). The input seek lands up to ``PREROLL_S`` before the clip and
``trim``/``atrim`` cut the clip out by timestamp (all filter times are relative to the seek
point, see ``seek_point``):

1. the frame on screen at ``frame_offset_s``: the frames of the last ``FRAME_WINDOW_S``
   up to that time pass a ``select`` and the image2 muxer (``-update 1``) keeps
   overwriting one PPM file, so the file ends up holding the *last* frame at or before the
   time (right for variable frame rates too); ``trim`` ends the video branch at the first
   frame past the time, so no more video is decoded. Only the selected frames are scaled
   and written, a quarter of a second of video whatever the frame time. ``showinfo``
   (without its per-frame checksums, which cost more than the scaling) logs each kept
   frame's time (relative to the seek point), so the runner can record the true one.
   ``eq(n,0)`` also keeps the window's first frame; kept alone, it means the window held
   no frame (a gap of more than 0.25 s: video under 4 fps, or a time before the first
   frame), and the runner asks again with ``every_frame=True``: every frame up to the
   time is selected, and the branch runs ``FRAME_LOOKAHEAD_S`` past the time, so a first
   frame up to a second after it is kept when none came before (``frame_window_start``).
2. the audio: first audio stream, downmixed to mono and resampled in one ``aresample``
   step (soxr when the build has it), 16-bit FLAC.

Paths are separate argv items behind ``file:``, so a file named ``-x.mp4`` is never read
as an option and nothing reaches a shell.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from wavbrivl.extract.config import ExtractConfig

# Decoding starts this long before the clip: after an input seek ffmpeg drops the first
# audio packet (AAC/Opus need a packet of pre-roll), so the clip's first samples would go
# missing and the audio would slide. The filters cut the clip out sample-exactly instead.
PREROLL_S = 1.0
# Read a little past the clip end so decoder delay does not clip its last samples.
READ_MARGIN_S = 0.5
# With every_frame, the video branch stops this long after the frame time: a first frame
# up to a second late still gives the clip a frame, and the rest is not decoded.
FRAME_LOOKAHEAD_S = 1.0
# Otherwise it stops at the first frame this little past the frame time (trim's end is
# exclusive; select keeps nothing past the time itself).
FRAME_PAST_S = 0.001
# Frames older than this before the frame time are not selected (not scaled, not written):
# 6 frames at 25 fps. Video under 4 fps has no frame in it and takes a second run.
FRAME_WINDOW_S = 0.25


def file_url(path: str | os.PathLike) -> str:
    """``file:<path>``: ffmpeg's explicit local-file protocol (no option, no other protocol)."""
    return f"file:{Path(path)}"


def seconds(value: float) -> str:
    """A time for ffmpeg: plain decimal seconds, microsecond precision."""
    return f"{value:.6f}"


def seek_point(offset_s: float) -> float:
    """Where the input seek lands: ``PREROLL_S`` before the clip, or the file start."""
    return max(0.0, offset_s - PREROLL_S)


def frame_window_start(offset_s: float, frame_offset_s: float) -> float:
    """Where the frame selection's window starts, relative to the seek point.

    A kept frame earlier than this can only be the window's first frame (``eq(n,0)``): a
    later frame at or before the frame time may then have been skipped, so the runner asks
    again with ``every_frame=True`` (as it does when no frame was kept at all).
    """
    return offset_s - seek_point(offset_s) + frame_offset_s - FRAME_WINDOW_S


def frame_filtergraph(
    clip_at_s: float,
    frame_at_s: float,
    frame_size: int,
    *,
    every_frame: bool,
    input_index: int,
    tag: str,
) -> str:
    """``[0:V:0]`` -> ``[frame]``; times are relative to the seek point.

    ``input_index`` and ``tag`` serve a batch of clips in one process (wavbrivl.extract.batch):
    the graph reads input ``input_index``, ends in ``[frame_<tag>]`` and names its showinfo
    ``showinfo@<tag>``, so each clip's log lines say which clip they are about.
    """
    window = "" if every_frame else f"*gte(t\\,{seconds(frame_at_s - FRAME_WINDOW_S)})"
    end_s = frame_at_s + (FRAME_LOOKAHEAD_S if every_frame else FRAME_PAST_S)
    steps = [
        f"trim=start={seconds(clip_at_s)}:end={seconds(end_s)}",
        f"select=lte(t\\,{seconds(frame_at_s)}){window}+eq(n\\,0)",
        f"showinfo@{tag}=checksum=0" if tag else "showinfo=checksum=0",
        "scale=round(iw*sar):ih",  # square pixels before cropping (anamorphic sources)
        "setsar=1",
        "crop=min(iw\\,ih):min(iw\\,ih)",  # centred by default
        f"scale={frame_size}:{frame_size}:flags=bicubic",
        "format=rgb24",
    ]
    return f"[{input_index}:V:0]" + ",".join(steps) + f"[{_label('frame', tag)}]"


def audio_filtergraph(
    clip_at_s: float,
    duration_s: float,
    sample_rate: int,
    resampler: str = "soxr",
    *,
    input_index: int = 0,
    tag: str = "",
) -> str:
    """``[0:a:0]`` -> ``[audio]``: cut the clip, then downmix + resample in one swr step."""
    steps = [
        f"atrim=start={seconds(clip_at_s)}:duration={seconds(duration_s)}",
        "asetpts=PTS-STARTPTS",
        f"aresample=osr={sample_rate}:ochl=mono:osf=s16:resampler={resampler}",
    ]
    return f"[{input_index}:a:0]" + ",".join(steps) + f"[{_label('audio', tag)}]"


def _label(name: str, tag: str) -> str:
    return f"{name}_{tag}" if tag else name


def extract_clip_argv(
    src: str | os.PathLike,
    *,
    offset_s: float,
    duration_s: float,
    frame_offset_s: float,
    frame_out: str | os.PathLike,
    audio_out: str | os.PathLike,
    cfg: ExtractConfig,
    ffmpeg: str,
    resampler: str = "soxr",
    every_frame: bool = False,
) -> list[str]:
    """argv that writes the clip's frame (PPM, S x S) and audio (FLAC, mono) in one decode.

    ``offset_s``/``duration_s`` place the clip inside ``src``; ``frame_offset_s`` is the
    frame time relative to the clip start (the runner's frame policy picks it);
    ``every_frame`` selects every frame up to it, not only the last ``FRAME_WINDOW_S``, and
    decodes ``FRAME_LOOKAHEAD_S`` past it.
    """
    clip = ClipArgs(src, offset_s, duration_s, frame_offset_s, frame_out, audio_out)
    return [
        *global_argv(ffmpeg),
        *clip_input_argv(clip),
        "-filter_complex",
        clip_filtergraph(clip, cfg, resampler, every_frame=every_frame),
        *clip_output_argv(clip, cfg),
    ]


class ClipArgs(NamedTuple):
    """Where one clip is and where its outputs go (times in seconds, see extract_clip_argv)."""

    src: str | os.PathLike
    offset_s: float
    duration_s: float
    frame_offset_s: float
    frame_out: str | os.PathLike
    audio_out: str | os.PathLike


def global_argv(ffmpeg: str) -> list[str]:
    """The options of the whole process, before its first input."""
    return [
        ffmpeg,
        "-hide_banner",
        "-nostdin",
        "-nostats",
        "-loglevel",
        "level+info",  # info for showinfo's frame times; level tags to find the error lines
        "-y",
        # One thread per clip: the runner's pool provides the parallelism.
        "-filter_complex_threads",
        "1",
    ]


def clip_input_argv(clip: ClipArgs) -> list[str]:
    """The clip's input: its file read from ``PREROLL_S`` before the clip to past its end."""
    if clip.offset_s < 0 or clip.duration_s <= 0:
        raise ValueError(f"bad clip window: offset {clip.offset_s} s, duration {clip.duration_s} s")
    if not 0 <= clip.frame_offset_s <= clip.duration_s:
        raise ValueError(
            f"frame offset {clip.frame_offset_s} s outside the clip [0, {clip.duration_s}]"
        )
    seek_s = seek_point(clip.offset_s)
    clip_at_s = clip.offset_s - seek_s  # where the clip starts on the decoded timeline
    seek = ["-ss", seconds(seek_s)] if seek_s > 0 else []  # even "-ss 0" drops a packet
    return [
        "-threads",
        "1",
        *seek,
        "-t",
        seconds(clip_at_s + clip.duration_s + READ_MARGIN_S),
        "-i",
        file_url(clip.src),
    ]


def clip_filtergraph(
    clip: ClipArgs,
    cfg: ExtractConfig,
    resampler: str,
    *,
    every_frame: bool = False,
    input_index: int = 0,
    tag: str = "",
) -> str:
    """The clip's frame and audio graphs (input ``input_index``, labels tagged ``tag``)."""
    clip_at_s = clip.offset_s - seek_point(clip.offset_s)
    where = {"input_index": input_index, "tag": tag}
    return ";".join(
        [
            frame_filtergraph(
                clip_at_s,
                clip_at_s + clip.frame_offset_s,
                cfg.frame_size,
                every_frame=every_frame,
                **where,
            ),
            audio_filtergraph(clip_at_s, clip.duration_s, cfg.sample_rate, resampler, **where),
        ]
    )


def clip_output_argv(
    clip: ClipArgs, cfg: ExtractConfig, *, tag: str = "", chapters_from: int | None = None
) -> list[str]:
    """The clip's two outputs: the frame (PPM) and the audio (FLAC).

    ``chapters_from``: the input whose chapters the outputs may copy. ffmpeg's default is
    the first input that has chapters, which in a batch is another clip's file; a batch
    names each clip's own input, so its outputs are what a process of its own would write.
    """
    chapters = [] if chapters_from is None else ["-map_chapters", str(chapters_from)]
    return [
        # output 1: the frame; image2 keeps overwriting one file, so the last frame stays
        "-map",
        f"[{_label('frame', tag)}]",
        *chapters,
        "-fps_mode",
        "passthrough",
        "-f",
        "image2",
        "-update",
        "1",
        "-c:v",
        "ppm",
        file_url(clip.frame_out),
        # output 2: the audio
        "-map",
        f"[{_label('audio', tag)}]",
        *chapters,
        "-ac",
        "1",
        "-ar",
        str(cfg.sample_rate),
        "-c:a",
        "flac",
        "-map_metadata",
        "-1",
        "-fflags",
        "+bitexact",
        "-flags:a",
        "+bitexact",
        "-f",
        "flac",
        file_url(clip.audio_out),
    ]
