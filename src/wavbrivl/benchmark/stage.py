"""The benchmark harness as two workflow stages: embed a dataset with an audio model, then
score the embeddings with one protocol (docs/benchmarks.md, "In the workflow").

The ``benchmarks`` config block names datasets (``format``: ``esc50``, ``esc10``,
``urbansound8k`` with a ``root`` folder in the official layout, or ``vggsound_test`` with the
project ``dataset`` whose test split and media shards to use) and audio models (``kind``:
``wavbrivl``, this config's trained run unless ``path`` names another run or an export;
``wav2clip``, a local checkpoint in its release format at ``path``, with an optional ``text``
block naming the CLIP encoder whose text tower scores it). Which protocols run is fixed when
the DAG is built (:func:`protocols_for`): zero-shot where the model's space has a text side,
the linear probe where the dataset has at least three folds.

Embedding writes ``embeddings.npz``: the unit rows, the clips they belong to (id, fold, class)
and a JSON record of the dataset (every skipped clip with its reason) and of the model (its
fingerprint and its space's), so scoring needs neither the audio nor the model again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from wavbrivl.atomic import atomic_path
from wavbrivl.benchmark.datasets import (
    BenchmarkTable,
    iter_clip_audio,
    read_esc50,
    read_urbansound8k,
    read_vggsound_test,
    without_skipped,
)
from wavbrivl.benchmark.linear_probe import DEFAULT_C_GRID, MIN_FOLDS, evaluate_linear_probe
from wavbrivl.benchmark.results import write_result
from wavbrivl.benchmark.zeroshot import evaluate_zeroshot

PathLike = str | os.PathLike

#: Dataset formats and the folds each defines (the linear probe needs MIN_FOLDS of them).
DATASET_FOLDS = {"esc50": 5, "esc10": 5, "urbansound8k": 10, "vggsound_test": 1}
#: Where a dataset format's metadata file lies under its root (a job input).
METADATA_FILES = {
    "esc50": "meta/esc50.csv",
    "esc10": "meta/esc50.csv",
    "urbansound8k": "metadata/UrbanSound8K.csv",
}
PROTOCOLS = ("zeroshot", "linear_probe")


class BenchmarkConfigError(ValueError):
    """A ``benchmarks`` entry that cannot run; the message names the key."""


def protocols_for(dataset: Mapping[str, Any], has_text: bool) -> list[str]:
    """The protocols a (model, dataset) pair runs, in :data:`PROTOCOLS` order."""
    chosen = ["zeroshot"] if has_text else []
    if DATASET_FOLDS[dataset["format"]] >= MIN_FOLDS:
        chosen.append("linear_probe")
    return chosen


def metadata_file(dataset: Mapping[str, Any], key: str) -> str:
    """The official metadata file of a folder dataset (``root`` joined with its layout)."""
    if not dataset.get("root"):
        raise BenchmarkConfigError(f"{key}.root: a {dataset['format']} dataset needs its folder")
    return str(Path(dataset["root"]) / METADATA_FILES[dataset["format"]])


def read_dataset(
    dataset: Mapping[str, Any],
    *,
    manifest: PathLike | None = None,
    media_shards: Sequence[PathLike] = (),
) -> BenchmarkTable:
    """The dataset's table (``manifest`` and ``media_shards`` for ``vggsound_test``)."""
    fmt = dataset["format"]
    if fmt in ("esc50", "esc10"):
        return read_esc50(dataset["root"], esc10=fmt == "esc10")
    if fmt == "urbansound8k":
        return read_urbansound8k(dataset["root"])
    return read_vggsound_test(manifest, list(media_shards))


def embed_table(
    table: BenchmarkTable,
    model: Any,
    *,
    batch_size: int = 16,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> tuple[np.ndarray, BenchmarkTable]:
    """``(embeddings (N, D), table of those N clips)``: a clip that cannot be decoded or is
    too short for the model joins the table's skipped list with its reason."""
    from wavbrivl.benchmark.audio_models import embed_clips

    reasons: dict[int, str] = {}
    parts: list[np.ndarray] = []
    positions: list[int] = []
    clips: list[np.ndarray] = []

    def flush() -> None:
        done = embed_clips(model, clips)  # at most batch_size clips: one call
        parts.append(done.embeddings)
        for i, reason in done.skipped.items():
            reasons[positions[i]] = reason
        positions.clear()
        clips.clear()

    decoded = iter_clip_audio(table)
    for position, samples, reason in progress(decoded) if progress else decoded:
        if samples is None:
            reasons[position] = reason
            continue
        positions.append(position)
        clips.append(samples)
        if len(clips) == batch_size:
            flush()
    flush()
    kept = without_skipped(table, reasons)
    embeddings = np.concatenate(parts).astype(np.float32)
    if len(embeddings) == 0:
        raise ValueError(f"{table.name}: no clip could be embedded ({len(kept.skipped)} skipped)")
    return embeddings, kept


def save_embedded(
    path: PathLike, embeddings: np.ndarray, table: BenchmarkTable, model: Mapping[str, Any]
) -> None:
    """Write ``embeddings.npz`` atomically (layout in the module docstring)."""
    record = {"data": table.report(), "model": dict(model)}
    with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as fh:
        np.savez(
            fh,
            embeddings=np.asarray(embeddings, dtype=np.float32),
            clip_id=np.array([str(c) for c in table.rows["clip_id"]], dtype=np.str_),
            fold=table.rows["fold"].to_numpy(dtype=np.int64),
            class_index=table.rows["class_index"].to_numpy(dtype=np.int64),
            record=np.array(json.dumps(record, sort_keys=True)),
        )


def load_embedded(path: PathLike) -> tuple[np.ndarray, BenchmarkTable, dict[str, Any]]:
    """``(embeddings, table, model record)`` from :func:`save_embedded`'s file."""
    with np.load(path, allow_pickle=False) as npz:
        record = json.loads(str(npz["record"]))
        data = record["data"]
        rows = pd.DataFrame(
            {
                "clip_id": npz["clip_id"].astype(str),
                "path": "",
                "fold": npz["fold"],
                "class_index": npz["class_index"],
            }
        )
        embeddings = npz["embeddings"]
    rows["class_name"] = [data["classes"][i] for i in rows["class_index"]]
    table = BenchmarkTable(
        name=data["dataset"],
        rows=rows,
        classes=list(data["classes"]),
        folds=list(data["folds"]),
        skipped=list(data["skipped"]),
    )
    return embeddings, table, record["model"]


def check_space(model: Mapping[str, Any], encoder: Any, where: str) -> None:
    """Refuse a text side of another image space than the embedded model's, naming both."""
    from wavbrivl.api import ImageSpaceMismatch

    ours, theirs = model.get("space_fingerprint"), getattr(encoder, "fingerprint", None)
    if ours is not None and ours != theirs:
        raise ImageSpaceMismatch(
            f"{where}: the text side {getattr(encoder, 'name', '?')} is of image space "
            f"{theirs}, the audio model {model.get('name')} of {ours}"
        )


def score(
    embedded: PathLike,
    protocol: str,
    out_dir: PathLike,
    **settings: Any,
) -> dict[str, Path]:
    """Run ``protocol`` on an ``embeddings.npz`` and write its files into ``out_dir``
    (``settings``: those of :func:`score_table`)."""
    embeddings, table, _ = load_embedded(embedded)
    return score_table(table, embeddings, protocol, out_dir, **settings)


def score_table(
    table: BenchmarkTable,
    embeddings: np.ndarray,
    protocol: str,
    out_dir: PathLike,
    *,
    encode_text: Callable[[list[str]], Any] | None = None,
    language: str = "en",
    templates: Sequence[str] | None = None,
    c_grid: Sequence[float] | None = None,
    seed: int = 0,
) -> dict[str, Path]:
    """Run ``protocol`` on ``embeddings`` of ``table``'s rows; write its files into ``out_dir``."""
    labels = table.rows["class_index"].to_numpy()
    folds = table.rows["fold"].to_numpy()
    if protocol == "zeroshot":
        if encode_text is None:
            raise ValueError("zero-shot needs a text side (encode_text)")
        result = evaluate_zeroshot(
            embeddings,
            labels,
            folds,
            table.classes,
            encode_text,
            language=language,
            templates=templates,
        )
    elif protocol == "linear_probe":
        result = evaluate_linear_probe(
            embeddings,
            labels,
            folds,
            table.classes,
            table.rows["clip_id"].tolist(),
            c_grid=c_grid or DEFAULT_C_GRID,
            seed=seed,
        )
    else:
        raise ValueError(f"unknown protocol {protocol!r}; known: {PROTOCOLS}")
    return write_result(result, table.report(), out_dir)


__all__ = [
    "DATASET_FOLDS",
    "PROTOCOLS",
    "BenchmarkConfigError",
    "check_space",
    "embed_table",
    "load_embedded",
    "metadata_file",
    "protocols_for",
    "read_dataset",
    "save_embedded",
    "score",
    "score_table",
]
