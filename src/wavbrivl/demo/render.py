"""Rendering one demo clip: its filtergraph and ffmpeg argv (pure), and running ffmpeg once.

The mp4 is written under a temporary name and renamed; a ``<id>.synth.json`` sidecar holding
the argv and the ffmpeg version lets a re-run reuse a clip only when it would be identical.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable
from pathlib import Path

from wavbrivl.atomic import atomic_path, write_text_atomic
from wavbrivl.clip_ids import check_clip_id
from wavbrivl.demo.classes import DemoClass, num
from wavbrivl.demo.plan import ClipSpec, video_path

CLIP_TIMEOUT_S = 300


class DemoSynthesisError(RuntimeError):
    """One or more demo clips could not be rendered (the message names each)."""


class MissingFilter(RuntimeError):
    """The ffmpeg in use lacks a lavfi source or filter that a demo class needs."""


def clip_filtergraph(spec: ClipSpec, *, width: int, height: int, fps: int, sample_rate: int) -> str:
    """The ``-filter_complex`` graph of a clip, with outputs ``[v]`` and ``[a]``.

    The class makes a mono sound; the clip's loudness, stereo layout and pixel format are
    the same for every class.
    """
    cls, p = spec.demo_class, spec.param_map
    video = cls.video(p, width, height, fps)
    audio = cls.audio(p, sample_rate)
    return (
        f"{video},format=yuv420p,setsar=1[v];"
        f"{audio},volume={num(p['gain_db'])}dB,pan=stereo|c0=c0|c1=c0[a]"
    )


def ffmpeg_argv(
    spec: ClipSpec,
    out_path: Path,
    *,
    ffmpeg: str = "ffmpeg",
    duration_s: float = 12.0,
    width: int = 160,
    height: int = 120,
    fps: int = 12,
    sample_rate: int = 44100,
) -> list[str]:
    """The ffmpeg command that renders ``spec`` into an mp4 at ``out_path`` (pure).

    The output goes through the ``file:`` protocol so no path can be read as an option or
    another protocol; the muxer is named (``-f mp4``) because the runner writes to a temp
    name. Keyframes every second keep seeking (and yt-dlp's section cuts) cheap.
    """
    check_clip_id(spec.video_id)
    if width < 2 or height < 2 or width % 2 or height % 2:
        raise ValueError(f"width and height must be even and >= 2 (yuv420p), got {width}x{height}")
    if fps < 1 or sample_rate < 8000 or not duration_s > 0:
        raise ValueError(f"bad fps={fps}, sample_rate={sample_rate} or duration_s={duration_s}")
    graph = clip_filtergraph(spec, width=width, height=height, fps=fps, sample_rate=sample_rate)
    return [
        ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
        "-filter_complex", graph,
        "-map", "[v]", "-map", "[a]",
        "-t", num(duration_s),
        # One encoder thread per clip: the pool already runs clips in parallel.
        "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", str(fps),
        "-threads", "1",
        "-c:a", "aac", "-b:a", "128k", "-ar", str(sample_rate), "-ac", "2",
        "-movflags", "+faststart", "-map_metadata", "-1",
        "-f", "mp4", f"file:{Path(out_path)}",
    ]  # fmt: skip


def ffmpeg_version(ffmpeg: str) -> str:
    """First line of ``ffmpeg -version``, e.g. ``ffmpeg version 6.1.1 Copyright ...``."""
    proc = subprocess.run(  # noqa: S603 - fixed argv list, no shell
        [ffmpeg, "-hide_banner", "-version"], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0 or not proc.stdout:
        raise RuntimeError(f"{ffmpeg} -version failed (exit {proc.returncode}): {proc.stderr}")
    return proc.stdout.splitlines()[0].strip()


def available_filters(ffmpeg: str) -> frozenset[str]:
    """Names of the filters and lavfi sources this ffmpeg has (from ``ffmpeg -filters``)."""
    proc = subprocess.run(  # noqa: S603 - fixed argv list, no shell
        [ffmpeg, "-hide_banner", "-filters"], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{ffmpeg} -filters failed (exit {proc.returncode}): {proc.stderr}")
    # Rows look like " TS volume            A->A       Change input volume."
    names = set()
    for line in proc.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 3 and "->" in fields[2]:
            names.add(fields[1])
    return frozenset(names)


# Used by every clip, whatever its class (see clip_filtergraph).
COMMON_FILTERS = ("format", "setsar", "volume", "pan")


def check_filters(classes: Iterable[DemoClass], ffmpeg: str) -> None:
    """Raise :class:`MissingFilter` naming each filter the classes need and ffmpeg lacks."""
    have = available_filters(ffmpeg)
    missing = [f"{name} (common)" for name in COMMON_FILTERS if name not in have]
    missing += [f"{f} (class {c.name!r})" for c in classes for f in c.filters if f not in have]
    if missing:
        raise MissingFilter(f"{ffmpeg} lacks lavfi filters: {', '.join(missing)}")


def render_clip(spec: ClipSpec, videos_dir: Path, *, ffmpeg: str, version: str, **video) -> bool:
    """Render one clip into ``videos_dir``; return False if an identical earlier render
    was reused. ``video``: the size/rate keywords of :func:`ffmpeg_argv`.

    The mp4 is written under a temp name and renamed; its sidecar (argv + ffmpeg version)
    is written after it, so a sidecar never vouches for a file that is not complete.
    """
    target = video_path(videos_dir, spec)
    sidecar = target.with_suffix(".synth.json")
    recipe = {"argv": ffmpeg_argv(spec, target, ffmpeg=ffmpeg, **video), "ffmpeg": version}
    if target.exists() and _read_json(sidecar) == recipe:
        return False
    with atomic_path(target, suffix=".mp4") as tmp:
        argv = ffmpeg_argv(spec, tmp, ffmpeg=ffmpeg, **video)
        try:
            # argv is a list built from our own numbers and ids: no shell, nothing from a CSV.
            proc = subprocess.run(  # noqa: S603
                argv, capture_output=True, text=True, timeout=CLIP_TIMEOUT_S
            )
        except subprocess.TimeoutExpired as exc:
            raise DemoSynthesisError(
                f"{spec.video_id} ({spec.label}): ffmpeg timed out after {CLIP_TIMEOUT_S} s"
            ) from exc
        if proc.returncode != 0:
            tail = proc.stderr.strip()[-800:] or "(no stderr)"
            raise DemoSynthesisError(
                f"{spec.video_id} ({spec.label}): ffmpeg exit {proc.returncode}: {tail}"
            )
    write_text_atomic(sidecar, json.dumps(recipe, indent=1) + "\n")
    return True


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
