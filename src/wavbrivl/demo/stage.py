"""The demo stage's entry: H.264/AAC mp4 clips plus VGGSound- and AudioSet-format CSVs.

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

Modules: ``classes`` (the sound/picture pairs), ``plan`` (clips, ids, splits), ``render``
(one clip's ffmpeg argv and run), ``files`` (the CSV and JSON texts); this one runs them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from wavbrivl.atomic import write_text_atomic
from wavbrivl.demo.files import (
    audioset_segments_text,
    class_labels_text,
    demo_info,
    sources_csv_text,
    vggsound_csv_text,
)
from wavbrivl.demo.plan import VGGSOUND, clip_plan, select_classes
from wavbrivl.demo.render import (
    DemoSynthesisError,
    check_filters,
    ffmpeg_argv,
    ffmpeg_version,
    render_clip,
)
from wavbrivl.ffmpeg_bin import ffmpeg_exe


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
