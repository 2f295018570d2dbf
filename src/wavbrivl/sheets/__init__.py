"""The evaluation sheets: the Figure-4 grid, the two-choice study kit and its Table-1 analysis.

Every sheet starts from one or more generation folders (one per run), read here:

    <folder>/<clip_id>.png      the image generated from the clip's audio
    <folder>/generation.json    {"clips": [{"clip_id": ..., "label": ..., "labels": [...],
                                            "seed": ..., "final_similarity": ...}, ...], ...}

``label`` is the display name of the clip's class (shown under the grid, written to the answer
key); ``labels`` (optional) are its class ids, used to decide that two clips are of *different*
classes (disjoint label sets). Without ``labels`` the display label is the class. Labels from
the manifest (:func:`wavbrivl.manifest.labels.read_clip_labels`) can replace both
(:meth:`GenerationRun.with_labels`).

Modules: :mod:`.grid` (figure), :mod:`.study` (trials, HTML page, answer key),
:mod:`.analysis` (Table 1 from answer CSVs), :mod:`.auto2afc` (the automatic two-choice score).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from wavbrivl.clip_ids import check_clip_id
from wavbrivl.generate.png import generated_png_path
from wavbrivl.generate.records import GENERATION_JSON
from wavbrivl.manifest.labels import ClipLabels, display_label


@dataclass(frozen=True)
class GeneratedClip:
    """One generated image and the facts about its clip."""

    clip_id: str
    label: str  # display name of the clip's class(es)
    classes: tuple[str, ...]  # class ids; two clips are "another class" when these are disjoint
    image_path: Path
    seed: int | None = None
    similarity: float | None = None  # final cosine to the audio target, as the generator saw it


@dataclass(frozen=True)
class GenerationRun:
    """The generated images of one run, in the order of its ``generation.json``."""

    name: str
    folder: Path
    clips: dict[str, GeneratedClip]

    def with_labels(self, labels: Mapping[str, ClipLabels]) -> GenerationRun:
        """A copy whose clips take their display label and class ids from ``labels``
        (the manifest's, :func:`wavbrivl.manifest.labels.read_clip_labels`).

        A clip that ``labels`` does not know is an error: a wrong class would silently
        produce wrong distractors.
        """
        missing = [cid for cid in self.clips if cid not in labels]
        if missing:
            raise KeyError(f"run {self.name!r}: no label for clip(s) {missing[:10]}")
        unlabelled = [cid for cid in self.clips if not labels[cid].display or not labels[cid].ids]
        if unlabelled:
            raise ValueError(f"run {self.name!r}: empty label for clip(s) {unlabelled[:10]}")
        clips = {
            cid: replace(clip, label=labels[cid].display, classes=labels[cid].ids)
            for cid, clip in self.clips.items()
        }
        return replace(self, clips=clips)


def load_generation_run(name: str, folder: str | os.PathLike) -> GenerationRun:
    """Read ``<folder>/generation.json`` and check every listed clip has its PNG."""
    folder = Path(folder)
    meta_path = folder / GENERATION_JSON
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"run {name!r}: {meta_path} does not exist") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"run {name!r}: {meta_path} is not valid JSON ({err})") from None
    entries = meta.get("clips") if isinstance(meta, dict) else None
    if isinstance(entries, dict):  # {clip_id: {...}} is accepted as well as a list
        entries = [{"clip_id": cid, **(entry or {})} for cid, entry in entries.items()]
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"run {name!r}: {meta_path} has no non-empty 'clips' list")

    clips: dict[str, GeneratedClip] = {}
    for i, entry in enumerate(entries):
        clip = _parse_entry(entry, folder, f"{meta_path} clips[{i}]")
        if clip.clip_id in clips:
            raise ValueError(f"{meta_path}: clip {clip.clip_id!r} is listed twice")
        clips[clip.clip_id] = clip
    return GenerationRun(name=name, folder=folder, clips=clips)


def _parse_entry(entry: Any, folder: Path, where: str) -> GeneratedClip:
    if not isinstance(entry, dict) or "clip_id" not in entry:
        raise ValueError(f"{where}: expected an object with 'clip_id'")
    clip_id = check_clip_id(entry["clip_id"])  # it becomes a file name
    label = entry.get("label")
    classes = entry.get("labels")
    if label is None and classes:
        label = display_label(classes, None)
    if not isinstance(label, str) or not label:
        raise ValueError(f"{where} ({clip_id}): missing 'label'")
    if not classes:
        classes = [label]
    image_path = generated_png_path(folder, clip_id)
    if not image_path.is_file():
        raise FileNotFoundError(f"{where}: image {image_path} does not exist")
    similarity = entry.get("final_similarity", entry.get("similarity"))
    seed = entry.get("seed")
    return GeneratedClip(
        clip_id=clip_id,
        label=label,
        classes=tuple(str(c) for c in classes),
        image_path=image_path,
        seed=None if seed is None else int(seed),
        similarity=None if similarity is None else float(similarity),
    )


def load_generation_runs(runs: Mapping[str, str | os.PathLike]) -> dict[str, GenerationRun]:
    """``{run name: folder}`` -> ``{run name: GenerationRun}`` (order kept)."""
    return {name: load_generation_run(name, folder) for name, folder in runs.items()}
