"""Which clips a training run uses: the manifest's splits, intersected with the clips whose
media row is ``ok`` and that have an embedding, and the shards holding each split.

``train_split`` clips are trained on, except a held-out ``val_fraction`` chosen by a seeded
hash of the clip id (stable when the manifest grows, disjoint from train by construction);
``test_split`` clips are the test split. The catalogue is read (ids only, no audio) when the
training data is built, so an empty split, an embedding of the wrong size or from another
encoder fails before any training step.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow.parquet as pq

from wavbrivl.embed.reader import check_fingerprint
from wavbrivl.embed.store import read_common_header
from wavbrivl.extract.media import iter_media_rows
from wavbrivl.hashing import seeded_int
from wavbrivl.manifest.labels import class_label

if TYPE_CHECKING:
    from wavbrivl.train.data import DataConfig

PathLike = str | os.PathLike
SPLITS = ("train", "val", "test")
MANIFEST_COLUMNS = ("clip_id", "split", "labels", "label_names")


class EmptySplit(ValueError):
    """A split has no usable clip (or too few for one batch)."""


class EmbeddingDimMismatch(ValueError):
    """An embedding shard's size differs from the model's image space."""


def held_out_for_val(clip_id: str, *, seed: int, fraction: float) -> bool:
    """Whether a train-split clip is held out for validation (seeded, order-free)."""
    return seeded_int("val", seed, clip_id) < fraction * 2**64


def assign_split(clip_id: str, manifest_split: str, cfg: DataConfig) -> str | None:
    """``train`` / ``val`` / ``test``, or None for a manifest split training does not use."""
    if manifest_split == cfg.train_split:
        return (
            "val"
            if held_out_for_val(clip_id, seed=cfg.seed, fraction=cfg.val_fraction)
            else "train"
        )
    if manifest_split == cfg.test_split:
        return "test"
    return None


@dataclass(frozen=True)
class ShardPair:
    """One shard: its embedding Parquet and its media Parquet."""

    embedding: Path
    media: Path

    @property
    def name(self) -> str:
        return self.media.stem


@dataclass
class Catalogue:
    """Per split: usable clip -> label, and the shards (sorted) holding them. Plain data, so
    DataLoader workers can receive it."""

    labels: dict[str, dict[str, str]]
    shards: dict[str, list[ShardPair]]
    shard_of: dict[str, ShardPair]  # usable clip -> the shard it is read from
    dim: int  # of the image embeddings
    fingerprint: str | None  # of the image encoder that made them (None: no shard)
    n_manifest: int
    n_unusable: int


def _read_manifest(path: Path) -> list[tuple[str, str, str]]:
    """``(clip_id, split, label)`` rows of the manifest."""
    schema = pq.read_schema(path)
    missing = [c for c in MANIFEST_COLUMNS if c not in schema.names]
    if missing:
        raise ValueError(f"{path}: manifest lacks column(s) {missing}")
    table = pq.read_table(path, columns=list(MANIFEST_COLUMNS))
    return [
        (clip_id, split, class_label(labels, names))
        for clip_id, split, labels, names in zip(
            table.column("clip_id").to_pylist(),
            table.column("split").to_pylist(),
            table.column("labels").to_pylist(),
            table.column("label_names").to_pylist(),
            strict=True,
        )
    ]


def _usable_ids(pair: ShardPair) -> set[str]:
    """Clips of a shard with ``ok`` media and an embedding (ids only: no audio is read)."""
    ok = {c for frame in iter_media_rows(pair.media, ok_only=True) for c in frame["clip_id"]}
    embedded = set(pq.read_table(pair.embedding, columns=["clip_id"]).column("clip_id").to_pylist())
    return ok & embedded


def build_catalogue(
    manifest: PathLike,
    shards: Sequence[ShardPair],
    cfg: DataConfig,
    *,
    fingerprint: str | None,
    image_dim: int | None,
) -> Catalogue:
    """Check the shards' headers, then sort the usable clips into splits.

    The shards must agree with each other (embeddings of two encoders are never mixed), with
    ``fingerprint`` unless it is None, and with ``image_dim`` (the model's image space) unless
    it is None.
    """
    for pair in shards:
        for path in (pair.embedding, pair.media):
            if not path.exists():
                raise FileNotFoundError(f"{path}: shard file missing")
    header = read_common_header([pair.embedding for pair in shards]) if shards else None
    if header is not None:
        check_fingerprint(header.path, fingerprint)
        if image_dim is not None and header.dim != image_dim:
            raise EmbeddingDimMismatch(
                f"{header.path}: embeddings have {header.dim} dimensions but the model's image "
                f"space has {image_dim} (image_dim); embed with the matching image encoder"
            )
    rows = _read_manifest(Path(manifest))
    usable_by_shard = {pair: _usable_ids(pair) for pair in shards}
    shard_of_clip = {c: pair for pair, ids in usable_by_shard.items() for c in ids}
    labels: dict[str, dict[str, str]] = {s: {} for s in SPLITS}
    holding: dict[str, set[ShardPair]] = {s: set() for s in SPLITS}
    used: dict[str, ShardPair] = {}
    for clip_id, manifest_split, label in rows:
        split = assign_split(clip_id, manifest_split, cfg)
        pair = shard_of_clip.get(clip_id)
        if split is None or pair is None:
            continue
        labels[split][clip_id] = label
        holding[split].add(pair)
        used[clip_id] = pair
    n_usable = sum(len(v) for v in labels.values())
    return Catalogue(
        labels=labels,
        shards={s: sorted(holding[s], key=lambda p: (p.name, str(p.media))) for s in SPLITS},
        shard_of=used,
        dim=header.dim if header is not None else (image_dim or 0),
        fingerprint=header.fingerprint if header is not None else fingerprint,
        n_manifest=len(rows),
        n_unusable=len(rows) - n_usable,
    )
