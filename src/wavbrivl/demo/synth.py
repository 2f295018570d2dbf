"""Synthesise the demo dataset: H.264/AAC mp4 clips plus VGGSound- and AudioSet-format CSVs.

The demo stands in for VGGSound/AudioSet on machines without internet. Its files have the
real datasets' formats (headerless VGGSound CSV, AudioSet segment CSV with its three comment
lines, ``class_labels_indices.csv``), and ``sources.csv`` maps each YouTube-like id to a
``file://`` URL, so the ordinary download code serves it.

Layout under ``out_dir``::

    videos/<id>.mp4            12 s, 160x120, 12 fps, H.264 + AAC stereo 44.1 kHz, faststart
    videos/<id>.synth.json     the argv that made the mp4 (a re-run reuses the mp4 only if equal)
    vggsound.csv               id,start,label,split (no header)
    audioset/segments.csv      AudioSet segments (a second, disjoint set: generation inputs)
    audioset/class_labels_indices.csv
    sources.csv                id,url
    demo_info.json             seed, classes, counts, ffmpeg version; written last

Everything is a function of the parameters and the seed: ids and per-clip variation come from
hashes and ``random.Random`` seeded by strings, never from process state.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import math
import random
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from wavbrivl.atomic import atomic_path, write_text_atomic
from wavbrivl.clip_ids import check_clip_id
from wavbrivl.demo.classes import CLASSES_BY_KEY, DEMO_CLASSES, DemoClass, ParamValue, num
from wavbrivl.ffmpeg_bin import ffmpeg_exe

VGGSOUND = "vggsound"
AUDIOSET = "audioset"
VGGSOUND_CLIP_S = 10  # VGGSound clips are [start, start + 10 s)
AUDIOSET_SEGMENT_S = 10.0
ID_LENGTH = 11  # like a YouTube id
CLIP_TIMEOUT_S = 300

# The real AudioSet segment files start with these comment lines (counts filled in).
AUDIOSET_CREATED_LINE = "# Segments csv created Sun Mar  5 10:54:31 2017"
AUDIOSET_COLUMNS_LINE = "# YTID, start_seconds, end_seconds, positive_labels"


class DemoSynthesisError(RuntimeError):
    """One or more demo clips could not be rendered (the message names each)."""


class MissingFilter(RuntimeError):
    """The ffmpeg in use lacks a lavfi source or filter that a demo class needs."""


@dataclass(frozen=True)
class ClipSpec:
    """Everything that defines one demo clip; :func:`ffmpeg_argv` turns it into a command."""

    video_id: str  # 11 chars of [A-Za-z0-9_-], never starting with '-'
    dataset: str  # VGGSOUND or AUDIOSET
    class_key: str
    label: str  # the class display name
    mid: str
    index: int  # clip number within (dataset, class)
    start_s: float  # the labelled segment inside the file
    end_s: float
    split: str  # "train" / "test" for VGGSOUND, "eval" for AUDIOSET
    params: tuple[tuple[str, ParamValue], ...]  # the class's per-clip draw, sorted by name

    @property
    def demo_class(self) -> DemoClass:
        return CLASSES_BY_KEY[self.class_key]

    @property
    def param_map(self) -> dict[str, ParamValue]:
        return dict(self.params)


# --- the plan: which clips, with which ids, splits and variations -------------------------


def select_classes(n_classes: int | None = None) -> tuple[DemoClass, ...]:
    """The first ``n_classes`` demo classes (all when None)."""
    if n_classes is None:
        return DEMO_CLASSES
    if not 1 <= n_classes <= len(DEMO_CLASSES):
        raise ValueError(f"n_classes must be in [1, {len(DEMO_CLASSES)}], got {n_classes}")
    return DEMO_CLASSES[:n_classes]


def n_test_clips(n_clips: int, test_fraction: float) -> int:
    """Test clips of one class: ``test_fraction`` of them rounded half up, and, when a
    class has two clips or more, at least one clip in each split (unless the fraction is
    0 or 1) so that every class can be both learned and evaluated."""
    n_test = math.floor(n_clips * test_fraction + 0.5)
    if n_clips >= 2 and 0 < test_fraction < 1:
        n_test = min(max(n_test, 1), n_clips - 1)
    return n_test


def clip_plan(
    *,
    seed: int,
    clips_per_class: int,
    audioset_clips_per_class: int,
    test_fraction: float,
    n_classes: int | None = None,
    duration_s: float = 12.0,
) -> list[ClipSpec]:
    """All clips of the demo, VGGSound set first, each ordered by class then index.

    VGGSound starts are whole seconds drawn from ``[0, duration_s - 10]`` so the 10 s clip
    fits the file (``[0, 2]`` for the default 12 s; 0 when files are shorter than 10 s, as in
    tests). AudioSet segments are ``[1, 11]`` for 12 s files, clamped into shorter ones.
    """
    _check_plan_args(clips_per_class, audioset_clips_per_class, test_fraction, duration_s)
    classes = select_classes(n_classes)
    taken: set[str] = set()
    plan: list[ClipSpec] = []
    for dataset, per_class in ((VGGSOUND, clips_per_class), (AUDIOSET, audioset_clips_per_class)):
        for cls in classes:
            if dataset == VGGSOUND:
                test_indices = _test_indices(seed, cls, per_class, test_fraction)
            for index in range(per_class):
                rng = random.Random(f"wavbrivl-demo|{seed}|{dataset}|{cls.key}|{index}")
                start_s, end_s = _segment(dataset, rng, duration_s)
                video_id = _video_id(seed, dataset, cls.key, index, taken)
                taken.add(video_id.lower())
                draw = {"gain_db": round(rng.uniform(-6.0, 0.0), 2), **cls.draw(rng)}
                if dataset == VGGSOUND:
                    split = "test" if index in test_indices else "train"
                else:
                    split = "eval"
                plan.append(
                    ClipSpec(
                        video_id=video_id,
                        dataset=dataset,
                        class_key=cls.key,
                        label=cls.name,
                        mid=cls.mid,
                        index=index,
                        start_s=start_s,
                        end_s=end_s,
                        split=split,
                        params=tuple(sorted(draw.items())),
                    )
                )
    return plan


def _check_plan_args(
    clips_per_class: int, audioset_clips_per_class: int, test_fraction: float, duration_s: float
) -> None:
    if clips_per_class < 1:
        raise ValueError(f"clips_per_class must be >= 1, got {clips_per_class}")
    if audioset_clips_per_class < 0:
        raise ValueError(f"audioset_clips_per_class must be >= 0, got {audioset_clips_per_class}")
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction must be in [0, 1], got {test_fraction}")
    if not duration_s > 0:
        raise ValueError(f"duration_s must be > 0, got {duration_s}")


def _test_indices(seed: int, cls: DemoClass, n_clips: int, test_fraction: float) -> set[int]:
    # Stratified: each class sends the same share of its clips to the test split.
    rng = random.Random(f"wavbrivl-demo-split|{seed}|{cls.key}")
    return set(rng.sample(range(n_clips), n_test_clips(n_clips, test_fraction)))


def _segment(dataset: str, rng: random.Random, duration_s: float) -> tuple[float, float]:
    if dataset == VGGSOUND:
        start = rng.randint(0, max(0, math.floor(duration_s - VGGSOUND_CLIP_S)))
        return float(start), float(start + VGGSOUND_CLIP_S)
    start = min(1.0, max(0.0, duration_s - AUDIOSET_SEGMENT_S))
    return start, min(start + AUDIOSET_SEGMENT_S, duration_s)


def _video_id(seed: int, dataset: str, class_key: str, index: int, taken: set[str]) -> str:
    """A YouTube-like id from a hash; re-hashed with a salt if it would start with '-'
    (ffmpeg and yt-dlp would read it as an option) or is already used. ``taken`` holds
    lower-cased ids: two ids differing only in case would share a file on macOS."""
    for salt in range(1000):
        key = f"wavbrivl-demo-id|{seed}|{dataset}|{class_key}|{index}|{salt}".encode()
        digest = hashlib.blake2b(key, digest_size=9).digest()
        video_id = base64.urlsafe_b64encode(digest).decode("ascii")[:ID_LENGTH]
        if not video_id.startswith("-") and video_id.lower() not in taken:
            return video_id
    raise RuntimeError(f"no free id for {dataset}/{class_key}/{index}")  # pragma: no cover


# --- one clip: filtergraph and argv (pure) ------------------------------------------------


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


# --- the CSV and JSON files (pure text builders) ------------------------------------------


def vggsound_csv_text(plan: Iterable[ClipSpec]) -> str:
    """Headerless ``id,start,label,split`` rows; labels with commas are quoted."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for spec in plan:
        if spec.dataset == VGGSOUND:
            writer.writerow([spec.video_id, int(spec.start_s), spec.label, spec.split])
    return buf.getvalue()


def audioset_segments_text(plan: Iterable[ClipSpec]) -> str:
    """AudioSet segment CSV: three comment lines, then ``YTID, start, end, "labels"``."""
    rows = [spec for spec in plan if spec.dataset == AUDIOSET]
    n_labels = len({spec.mid for spec in rows})
    lines = [
        AUDIOSET_CREATED_LINE,
        f"# num_ytids={len({s.video_id for s in rows})}, num_segs={len(rows)}, "
        f"num_unique_labels={n_labels}, num_positive_labels={len(rows)}",
        AUDIOSET_COLUMNS_LINE,
    ]
    lines += [f'{s.video_id}, {s.start_s:.3f}, {s.end_s:.3f}, "{s.mid}"' for s in rows]
    return "\n".join(lines) + "\n"


def class_labels_text(classes: Sequence[DemoClass]) -> str:
    """``class_labels_indices.csv``: names always quoted, as in the real file."""
    lines = ["index,mid,display_name"]
    lines += [f"{i},{c.mid},{_csv_quote(c.name)}" for i, c in enumerate(classes)]
    return "\n".join(lines) + "\n"


def sources_csv_text(plan: Iterable[ClipSpec], videos_dir: Path) -> str:
    """``id,url`` with the absolute ``file://`` URL of each clip's mp4."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", "url"])
    for spec in plan:
        writer.writerow([spec.video_id, video_path(videos_dir, spec).resolve().as_uri()])
    return buf.getvalue()


def demo_info(plan: Sequence[ClipSpec], classes: Sequence[DemoClass], **settings) -> dict:
    """The content of ``demo_info.json``: settings, classes and counts (no timings, so a
    re-run with the same parameters writes the same bytes)."""
    vgg = [s for s in plan if s.dataset == VGGSOUND]
    return {
        **settings,
        "classes": [
            {
                "index": i,
                "name": c.name,
                "mid": c.mid,
                "key": c.key,
                "sound": c.sound,
                "picture": c.picture,
            }
            for i, c in enumerate(classes)
        ],  # fmt: skip
        "counts": {
            "classes": len(classes),
            "vggsound": len(vgg),
            "vggsound_train": sum(s.split == "train" for s in vgg),
            "vggsound_test": sum(s.split == "test" for s in vgg),
            "audioset": len(plan) - len(vgg),
            "videos": len(plan),
        },
        "files": {
            "videos": "videos",
            "vggsound": "vggsound.csv",
            "audioset_segments": "audioset/segments.csv",
            "audioset_labels": "audioset/class_labels_indices.csv",
            "sources": "sources.csv",
        },
    }


def _csv_quote(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def video_path(videos_dir: Path, spec: ClipSpec) -> Path:
    return Path(videos_dir) / f"{check_clip_id(spec.video_id)}.mp4"


# --- running ffmpeg -----------------------------------------------------------------------


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


# --- the whole demo -----------------------------------------------------------------------


def synthesise_demo(
    out_dir: str | Path,
    *,
    seed: int = 0,
    clips_per_class: int = 10,
    audioset_clips_per_class: int = 3,
    test_fraction: float = 0.25,
    n_classes: int | None = None,
    duration_s: float = 12.0,
    width: int = 160,
    height: int = 120,
    fps: int = 12,
    sample_rate: int = 44100,
    threads: int = 2,
    ffmpeg: str | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Write the demo dataset under ``out_dir`` (layout in the module docstring).

    Clips render in a pool of ``threads`` ffmpeg processes. A failed clip does not stop
    the others (finished clips are kept and reused by the next run); afterwards
    :class:`DemoSynthesisError` names every failure and no CSV or ``demo_info.json`` is
    written, so their presence means the dataset is complete. mp4s left over from other
    parameters are not deleted; ``sources.csv`` lists the current ones.

    Returns the ``demo_info.json`` content plus ``out_dir``, ``written``, ``reused`` and
    ``seconds``.
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    began = time.monotonic()
    out_dir = Path(out_dir)
    videos_dir = out_dir / "videos"
    ffmpeg = ffmpeg or ffmpeg_exe()
    classes = select_classes(n_classes)
    plan = clip_plan(
        seed=seed,
        clips_per_class=clips_per_class,
        audioset_clips_per_class=audioset_clips_per_class,
        test_fraction=test_fraction,
        n_classes=n_classes,
        duration_s=duration_s,
    )
    video = {"duration_s": duration_s, "width": width, "height": height, "fps": fps,
             "sample_rate": sample_rate}  # fmt: skip
    ffmpeg_argv(plan[0], videos_dir / "check.mp4", ffmpeg=ffmpeg, **video)  # fail fast on args
    check_filters(classes, ffmpeg)
    version = ffmpeg_version(ffmpeg)
    videos_dir.mkdir(parents=True, exist_ok=True)

    written: dict[str, bool] = {}
    failures: list[str] = []
    with ThreadPoolExecutor(max_workers=threads) as pool:
        futures = {
            spec.video_id: pool.submit(
                render_clip, spec, videos_dir, ffmpeg=ffmpeg, version=version, **video
            )
            for spec in plan
        }
        for video_id, future in futures.items():
            try:
                written[video_id] = future.result()
            except DemoSynthesisError as exc:
                failures.append(str(exc))
    if failures:
        raise DemoSynthesisError(
            f"{len(failures)} of {len(plan)} demo clips failed:\n" + "\n".join(failures)
        )

    write_text_atomic(out_dir / "vggsound.csv", vggsound_csv_text(plan))
    write_text_atomic(out_dir / "audioset" / "segments.csv", audioset_segments_text(plan))
    write_text_atomic(out_dir / "audioset" / "class_labels_indices.csv", class_labels_text(classes))
    write_text_atomic(out_dir / "sources.csv", sources_csv_text(plan, videos_dir))
    settings = {
        "seed": seed,
        "clips_per_class": clips_per_class,
        "audioset_clips_per_class": audioset_clips_per_class,
        "test_fraction": test_fraction,
        **video,
        "ffmpeg_version": version,
    }
    info = demo_info(plan, classes, **settings)
    write_text_atomic(out_dir / "demo_info.json", json.dumps(info, indent=2) + "\n")

    for cls in classes:
        specs = [s for s in plan if s.class_key == cls.key]
        n_vgg = sum(s.dataset == VGGSOUND for s in specs)
        n_test = sum(s.split == "test" for s in specs)
        n_new = sum(written[s.video_id] for s in specs)
        log(
            f"demo: {cls.name!r}: {n_vgg} vggsound ({n_test} test) + {len(specs) - n_vgg} "
            f"audioset clips; {n_new} rendered, {len(specs) - n_new} reused"
        )
    n_new, seconds = sum(written.values()), time.monotonic() - began
    log(
        f"demo: {len(plan)} clips in {len(classes)} classes ({n_new} rendered, "
        f"{len(plan) - n_new} reused) in {seconds:.1f} s -> {out_dir}"
    )
    return {
        **info,
        "out_dir": str(out_dir),
        "written": n_new,
        "reused": len(plan) - n_new,
        "seconds": seconds,
    }
