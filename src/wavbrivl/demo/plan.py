"""The demo's plan: which clips exist, with which ids, splits, segments and per-clip variation.

Everything is a function of the parameters and the seed: ids and per-clip variation come from
hashes and ``random.Random`` seeded by strings, never from process state.
"""

from __future__ import annotations

import base64
import hashlib
import math
import random
from dataclasses import dataclass
from pathlib import Path

from wavbrivl.clip_ids import check_clip_id
from wavbrivl.demo.classes import CLASSES_BY_KEY, DEMO_CLASSES, DemoClass, ParamValue

VGGSOUND = "vggsound"
AUDIOSET = "audioset"
VGGSOUND_CLIP_S = 10  # VGGSound clips are [start, start + 10 s)
AUDIOSET_SEGMENT_S = 10.0
ID_LENGTH = 11  # like a YouTube id


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
    lower-cased ids: two ids differing only in case would share a file on macOS.

    Not :func:`wavbrivl.hashing.seeded_int`: this is a name, not a number to seed or bucket
    with. It is 11 base64 characters of a 9-byte BLAKE2b digest (66 bits, more than the
    64 seeded_int gives), and the digest size is part of BLAKE2b's output, so any other
    hash would rename every demo clip (and move it to another shard).
    """
    for salt in range(1000):
        key = f"wavbrivl-demo-id|{seed}|{dataset}|{class_key}|{index}|{salt}".encode()
        digest = hashlib.blake2b(key, digest_size=9).digest()
        video_id = base64.urlsafe_b64encode(digest).decode("ascii")[:ID_LENGTH]
        if not video_id.startswith("-") and video_id.lower() not in taken:
            return video_id
    raise RuntimeError(f"no free id for {dataset}/{class_key}/{index}")  # pragma: no cover


def video_path(videos_dir: Path, spec: ClipSpec) -> Path:
    return Path(videos_dir) / f"{check_clip_id(spec.video_id)}.mp4"
