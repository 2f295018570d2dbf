"""Config-driven selection of clips from a parsed dataset table (pure, seeded, deterministic).

Every filter that names something (a split, a class, a YouTube id) fails loudly when that
thing is in no row: a typo in the config must not silently select nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence

import numpy as np
import pandas as pd

MAX_NAMED = 10  # missing names listed in an error message


class SelectionError(ValueError):
    """A selection that names splits, classes or ids the dataset does not have."""


def select_clips(
    df: pd.DataFrame,
    *,
    splits: Sequence[str] | None = None,
    classes: Sequence[str] | None = None,
    max_clips_per_class: int | None = None,
    seed: int = 0,
    ytids: Sequence[str] | None = None,
    label_names: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """The selected rows of ``df`` (columns ``source_id, labels, split, clip_id``), by clip id.

    - ``splits``: keep these splits (None or empty = all).
    - ``ytids``: keep only these source ids (AudioSet generation inputs).
    - ``classes``: keep rows with at least one of these labels; a class may be a label
      (VGGSound label, AudioSet MID) or a display name from ``label_names`` (MID -> name).
    - ``max_clips_per_class``: at most N clips per selected class, drawn with ``seed``; a
      multi-label clip counts toward each of its selected labels (see :func:`cap_per_class`).

    The result does not depend on the input row order, only on its content and ``seed``.
    """
    out = df.sort_values("clip_id", kind="stable")
    if splits:
        out = _keep_splits(out, splits)
    if ytids is not None:
        out = _keep_ytids(out, ytids, where=_where(splits))
    selected = None
    if classes is not None:
        selected = resolve_classes(out, classes, label_names, where=_where(splits))
        has_class = out["labels"].map(lambda labels: not selected.isdisjoint(labels))
        out = out[has_class.astype(bool)]
    if max_clips_per_class is not None:
        out = cap_per_class(out, max_clips_per_class, seed=seed, classes=selected)
    return out.reset_index(drop=True)


def resolve_classes(
    df: pd.DataFrame,
    classes: Sequence[str],
    label_names: Mapping[str, str] | None = None,
    *,
    where: str = "",
) -> set[str]:
    """The label values meant by ``classes``: each is a label itself or a display name."""
    if len(classes) == 0:
        raise SelectionError("classes is an empty list; use null to select all classes")
    present = {label for labels in df["labels"] for label in labels}
    by_name: dict[str, list[str]] = {}
    for mid, name in (label_names or {}).items():
        by_name.setdefault(name, []).append(mid)
    selected: set[str] = set()
    missing: list[str] = []
    for cls in classes:
        matches = {cls} & present or set(by_name.get(cls, [])) & present
        if matches:
            selected |= matches
        else:
            missing.append(cls)
    if missing:
        matched_against = "labels and display names" if label_names else "labels"
        raise SelectionError(
            f"{len(missing)} class(es) appear in no row{where} ({matched_against} compared): "
            f"{_named(missing)}"
        )
    return selected


def cap_per_class(
    df: pd.DataFrame,
    max_clips_per_class: int,
    *,
    seed: int = 0,
    classes: Collection[str] | None = None,
) -> pd.DataFrame:
    """Keep up to N clips per class (classes = ``classes``, or every label when None).

    Rows are visited in a seeded random order; a row is kept when any of its classes still
    has fewer than N clips, and then counts toward all of them. So every class ends with
    min(N, its clips) or more (a multi-label clip may push a co-occurring class past N),
    and for single-label data this is exactly N random clips per class.
    """
    if max_clips_per_class < 1:
        raise SelectionError(f"max_clips_per_class must be >= 1, got {max_clips_per_class}")
    order = np.random.default_rng(seed).permutation(len(df))
    all_labels = df["labels"].to_list()
    counts: Counter[str] = Counter()
    keep: list[int] = []
    for i in order:
        labels = [lab for lab in dict.fromkeys(all_labels[i]) if classes is None or lab in classes]
        if any(counts[lab] < max_clips_per_class for lab in labels):
            keep.append(i)
            counts.update(labels)
    return df.iloc[sorted(keep)]


def _keep_splits(df: pd.DataFrame, splits: Sequence[str]) -> pd.DataFrame:
    present = set(df["split"].unique())
    missing = [s for s in splits if s not in present]
    if missing:
        raise SelectionError(
            f"split(s) {_named(missing)} appear in no row; splits present: {sorted(present)}"
        )
    return df[df["split"].isin(list(splits))]


def _keep_ytids(df: pd.DataFrame, ytids: Sequence[str], *, where: str) -> pd.DataFrame:
    if len(ytids) == 0:
        raise SelectionError("ytids is an empty list; use null to keep all ids")
    present = set(df["source_id"])
    missing = [y for y in dict.fromkeys(ytids) if y not in present]
    if missing:
        raise SelectionError(f"{len(missing)} ytid(s) appear in no row{where}: {_named(missing)}")
    return df[df["source_id"].isin(list(ytids))]


def _where(splits: Sequence[str] | None) -> str:
    return f" of split(s) {list(splits)}" if splits else ""


def _named(items: Sequence[str]) -> str:
    shown = ", ".join(repr(x) for x in items[:MAX_NAMED])
    return shown + (f" and {len(items) - MAX_NAMED} more" if len(items) > MAX_NAMED else "")
