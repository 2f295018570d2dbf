"""A small sound-only benchmark set in ESC-50's layout, made from the demo's classes.

The benchmark harness reads ESC-50 from its official layout (docs/benchmarks.md); the demo
writes the same layout so that the harness runs end to end without the real dataset::

    audio/<fold>-<src_file>-<take>-<target>.wav   5 s, 44.1 kHz, mono, 16-bit PCM (as ESC-50)
    meta/esc50.csv                               filename,fold,target,category,esc10,src_file,take

Each class's clips are spread over the five folds in turn (clip ``i`` in fold ``i % 5 + 1``),
so with five clips per class every fold holds one clip of every class. ``esc10`` marks the
first half of the classes, so the harness's ``esc10`` option has a subset to select. The
sounds are the demo classes' own lavfi chains with a per-clip draw (seeded by strings, like
the demo plan), so they match the sounds the demo model was trained on, and the pictures do
not exist here.
"""

from __future__ import annotations

import csv
import io
import random
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from wavbrivl.atomic import atomic_path, write_text_atomic
from wavbrivl.demo.classes import CLASSES_BY_KEY, DemoClass, num
from wavbrivl.demo.plan import select_classes
from wavbrivl.demo.render import DemoSynthesisError, check_filters
from wavbrivl.ffmpeg_bin import ffmpeg_exe

CLIP_S = 5.0
SAMPLE_RATE = 44100
N_FOLDS = 5
TAKE = "A"
COLUMNS = ("filename", "fold", "target", "category", "esc10", "src_file", "take")


@dataclass(frozen=True)
class BenchmarkClip:
    """One WAV of the set: its ESC-50 metadata row and the class draw that makes its sound."""

    filename: str
    fold: int
    target: int
    category: str
    esc10: bool
    src_file: int
    class_key: str
    params: tuple[tuple[str, float | int | str], ...]

    @property
    def demo_class(self) -> DemoClass:
        return CLASSES_BY_KEY[self.class_key]


def category_name(cls: DemoClass) -> str:
    """ESC-50 style: lower case, words joined by underscores ("engine hum" -> "engine_hum")."""
    words = "".join(ch if ch.isalnum() else " " for ch in cls.name.lower()).split()
    return "_".join(words)


def benchmark_plan(
    *, seed: int, clips_per_class: int, n_classes: int | None = None
) -> list[BenchmarkClip]:
    """Every clip of the set, by class (target) then index."""
    if clips_per_class < 1:
        raise ValueError(f"clips_per_class must be >= 1, got {clips_per_class}")
    classes = select_classes(n_classes)
    n_esc10 = len(classes) // 2
    plan = []
    for target, cls in enumerate(classes):
        for index in range(clips_per_class):
            rng = random.Random(f"wavbrivl-demo-esc50|{seed}|{cls.key}|{index}")
            draw = {"gain_db": round(rng.uniform(-6.0, 0.0), 2), **cls.draw(rng)}
            fold = index % N_FOLDS + 1
            src_file = 100_000 + 1_000 * target + index  # ESC-50 names clips by Freesound id
            plan.append(
                BenchmarkClip(
                    filename=f"{fold}-{src_file}-{TAKE}-{target}.wav",
                    fold=fold,
                    target=target,
                    category=category_name(cls),
                    esc10=target < n_esc10,
                    src_file=src_file,
                    class_key=cls.key,
                    params=tuple(sorted(draw.items())),
                )
            )
    return plan


def wav_argv(clip: BenchmarkClip, out_path: Path, *, ffmpeg: str) -> list[str]:
    """The ffmpeg command that renders ``clip``'s sound as ESC-50's WAV format (pure)."""
    params = dict(clip.params)
    graph = f"{clip.demo_class.audio(params, SAMPLE_RATE)},volume={num(params['gain_db'])}dB[a]"
    return [
        ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
        "-filter_complex", graph, "-map", "[a]", "-t", num(CLIP_S),
        "-c:a", "pcm_s16le", "-ar", str(SAMPLE_RATE), "-ac", "1", "-map_metadata", "-1",
        "-f", "wav", f"file:{out_path}",
    ]  # fmt: skip


def esc50_csv_text(plan: list[BenchmarkClip]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for c in plan:
        writer.writerow([c.filename, c.fold, c.target, c.category, c.esc10, c.src_file, TAKE])
    return out.getvalue()


def synthesise_benchmark(
    out_dir: str | Path,
    *,
    seed: int = 0,
    clips_per_class: int = 5,
    n_classes: int | None = None,
    threads: int = 2,
    ffmpeg: str | None = None,
    log: Callable[[str], None] = print,
) -> list[BenchmarkClip]:
    """Write the set under ``out_dir`` (layout in the module docstring); returns its plan.

    Every WAV is written under a temporary name and renamed; the CSV is written last, so its
    presence means the set is complete. A failed clip fails the whole call, naming it."""
    out_dir = Path(out_dir)
    ffmpeg = ffmpeg or ffmpeg_exe()
    plan = benchmark_plan(seed=seed, clips_per_class=clips_per_class, n_classes=n_classes)
    check_filters(select_classes(n_classes), ffmpeg)
    audio_dir = out_dir / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)

    def render(clip: BenchmarkClip) -> None:
        target = audio_dir / clip.filename
        with atomic_path(target, suffix=".wav") as tmp:
            # An argv list of our own numbers and paths: no shell, nothing from a CSV.
            done = subprocess.run(  # noqa: S603
                wav_argv(clip, tmp, ffmpeg=ffmpeg), capture_output=True, text=True, check=False
            )
            if done.returncode != 0:
                raise DemoSynthesisError(
                    f"benchmark clip {clip.filename}: ffmpeg exit {done.returncode}: "
                    f"{done.stderr.strip()[-500:]}"
                )

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        list(pool.map(render, plan))
    write_text_atomic(out_dir / "meta" / "esc50.csv", esc50_csv_text(plan))
    log(
        f"demo: benchmark set of {len(plan)} clips ({clips_per_class} per class, "
        f"{N_FOLDS} folds) in ESC-50's layout -> {out_dir}"
    )
    return plan
