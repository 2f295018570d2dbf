"""A generation run's folder: what it holds, its writers and its readers.

::

    <clip_id>.png          the image (wavbrivl.generate.png), text chunks: clip id, label,
                           seed, steps, similarity, target norm, fingerprints of the models
    progress/<clip_id>/    frames every ``save_every`` steps (when asked for)
    trace.tsv              clip_id, step, similarity (mean cutout cosine before each update)
    targets.parquet        clip_id, label, embedding (unit, fixed_size_list<float32>[D]),
                           target_norm
    generation.json        config, fingerprints, per-clip label / seed / similarity / norm,
                           and the clips skipped with their reason
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from wavbrivl.atomic import write_table_atomic, write_text_atomic
from wavbrivl.clip_ids import check_clip_id
from wavbrivl.generate.png import generated_png_name, generated_png_path, save_png
from wavbrivl.manifest.labels import ClipLabels, display_label

if TYPE_CHECKING:  # readers of the folder (the sheets) need no torch
    from wavbrivl.generate.loop import GenerateConfig, GenerationResult
    from wavbrivl.generate.targets import AudioTargets

GENERATION_FORMAT = "wavbrivl.generation/1"
GENERATION_JSON = "generation.json"
TARGETS_PARQUET = "targets.parquet"
TRACE_TSV = "trace.tsv"
PROGRESS_DIR = "progress"


def write_generation_folder(
    out_dir: Path,
    results: Sequence[GenerationResult],
    targets: AudioTargets,
    labels: Mapping[str, str],
    fingerprints: dict[str, str],
    record: dict[str, Any],
    *,
    png_extra: Mapping[str, str] | None = None,
    trace_writer: Callable[[Path, Sequence[GenerationResult]], None] | None = None,
) -> None:
    """Every file of the folder but the progress frames: PNGs, trace, targets, record.

    ``png_extra`` adds text chunks to every PNG (a method's own settings); ``trace_writer``
    replaces :func:`write_trace` where a method has no per-step similarity.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    for result in results:
        save_png(
            result.image,
            generated_png_path(out_dir, result.clip_id),
            metadata={**png_metadata(result, fingerprints), **(png_extra or {})},
        )
    (trace_writer or write_trace)(out_dir / TRACE_TSV, results)
    target_labels = [labels[c] for c in targets.clip_ids]
    write_targets(out_dir / TARGETS_PARQUET, targets, target_labels, fingerprints=fingerprints)
    write_text_atomic(
        out_dir / GENERATION_JSON, json.dumps(record, indent=1, sort_keys=True) + "\n"
    )


def png_metadata(result: GenerationResult, fingerprints: dict[str, str]) -> dict[str, str]:
    """The text chunks of a generated PNG."""
    return {
        "clip_id": result.clip_id,
        "label": result.label,
        "seed": str(result.seed),
        "steps": str(result.steps),
        "final_similarity": f"{result.final_similarity:.6f}",
        "target_norm": f"{result.target_norm:.6g}",
        **{f"{name}_fingerprint": value for name, value in fingerprints.items()},
    }


def write_trace(path: Path, results: Sequence[GenerationResult]) -> None:
    """trace.tsv: one row per clip and step."""
    lines = ["clip_id\tstep\tsimilarity"]
    for result in results:
        lines += [f"{result.clip_id}\t{step}\t{sim:.6f}" for step, sim in enumerate(result.trace)]
    write_text_atomic(path, "\n".join(lines) + "\n")


def write_targets(
    path: Path,
    targets: AudioTargets,
    labels: Sequence[str],
    *,
    fingerprints: dict[str, str],
) -> None:
    """targets.parquet: the unit target per clip, for the sheets' automatic score."""
    dim = targets.dim
    flat = targets.vectors.float().numpy().reshape(-1)  # (N * D,); N may be 0
    table = pa.table(
        {
            "clip_id": pa.array(list(targets.clip_ids), pa.string()),
            "label": pa.array(list(labels), pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), dim),
            "target_norm": pa.array(list(targets.norms), pa.float64()),
        }
    )
    meta = {f"wavbrivl.{k}_fingerprint": v for k, v in fingerprints.items()} | {
        "wavbrivl.dim": str(dim)
    }
    write_table_atomic(path, table.replace_schema_metadata(meta))


def read_targets(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """``{clip_id: float32 (D,)}`` from a targets Parquet (columns clip_id, embedding)."""
    table = pq.read_table(path, columns=["clip_id", "embedding"])
    ids = table.column("clip_id").to_pylist()
    vectors = np.asarray(table.column("embedding").to_pylist(), dtype=np.float32)  # (N, D)
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: duplicate clip ids")
    return dict(zip(ids, vectors, strict=True))


def generation_record(
    cfg: GenerateConfig,
    fingerprints: dict[str, str],
    vqgan: Any,
    image_encoder: Any,
    results: Sequence[GenerationResult],
    skipped: dict[str, str],
) -> dict[str, Any]:
    """generation.json's content."""
    return {
        "format": GENERATION_FORMAT,
        "config": cfg.to_dict(),
        "fingerprints": fingerprints,
        "vqgan": getattr(vqgan, "name", type(vqgan).__name__),
        "image_encoder": image_encoder.name,
        "clips": [
            {
                "clip_id": r.clip_id,
                "label": r.label,
                "seed": r.seed,
                "png": generated_png_name(r.clip_id),
                "final_similarity": r.final_similarity,
                "initial_similarity": r.trace[0],
                "target_norm": r.target_norm,
                "notes": r.notes,
            }
            for r in results
        ],
        "skipped": [{"clip_id": c, "reason": skipped[c]} for c in sorted(skipped)],
    }


# --- reading a run folder back (the sheets) -------------------------------------------


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


__all__ = [
    "GENERATION_FORMAT",
    "GENERATION_JSON",
    "GeneratedClip",
    "GenerationRun",
    "PROGRESS_DIR",
    "TARGETS_PARQUET",
    "TRACE_TSV",
    "generation_record",
    "load_generation_run",
    "load_generation_runs",
    "png_metadata",
    "read_targets",
    "write_generation_folder",
    "write_targets",
    "write_trace",
]
