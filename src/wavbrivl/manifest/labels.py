"""A clip's labels as people and plots see them: the one place that turns manifest label
columns (``labels``: class ids, ``label_names``: their display names) into text."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow.parquet as pq

LABEL_SEPARATOR = "; "


def display_label(labels: Sequence[str] | None, label_names: Sequence[str] | None) -> str:
    """Every label of the clip: the names joined by "; ", else the ids ("" when none)."""
    values = [str(v) for v in (label_names or labels or []) if v]
    return LABEL_SEPARATOR.join(values)


def class_label(labels: Sequence[str] | None, label_names: Sequence[str] | None) -> str:
    """One label per clip (for class-level retrieval): the first name, else the first id.

    VGGSound clips have exactly one label; for multi-label sets this is the first listed.
    """
    for values in (label_names, labels):
        if values is not None and len(values) > 0 and values[0]:
            return str(values[0])
    return ""


@dataclass(frozen=True)
class ClipLabels:
    ids: tuple[str, ...]
    names: tuple[str, ...]

    @property
    def display(self) -> str:
        return display_label(self.ids, self.names)

    @property
    def first(self) -> str:
        return class_label(self.ids, self.names)


def read_clip_labels(manifest: str | os.PathLike) -> dict[str, ClipLabels]:
    """``{clip_id: ClipLabels}`` for every clip of a manifest Parquet."""
    table = pq.read_table(manifest, columns=["clip_id", "labels", "label_names"])
    columns = (table[c].to_pylist() for c in ("clip_id", "labels", "label_names"))
    return {
        clip_id: ClipLabels(tuple(ids or ()), tuple(names or ()))
        for clip_id, ids, names in zip(*columns, strict=True)
    }
