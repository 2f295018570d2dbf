"""A dataset's availability report: how many clips of each class ended in each status.

Gathers every shard's status table (``results/download/<dataset>/<shard>.status.parquet``)
with the manifest's labels and writes ``results/reports/availability/<dataset>.tsv`` and a
bar plot of the same counts for the Snakemake report (docs/stages.md, "The data stages").
A clip's class is its first label (:func:`wavbrivl.manifest.labels.class_label`); a manifest
clip without a status row is counted as ``no_row``, so the table always adds up to the
manifest.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TextIO

import numpy as np
import pandas as pd

from wavbrivl import status as st
from wavbrivl.atomic import atomic_path, write_text_atomic
from wavbrivl.download.status_table import read_status
from wavbrivl.manifest.labels import read_clip_labels

ALL_CLASSES = "(all)"
NO_LABEL = "(no label)"
NO_ROW = "no_row"  # a manifest clip that no status table mentions
MAX_PLOTTED_CLASSES = 40
LEGEND_INCHES = 0.4

# Fixed colours, so two reports read alike; statuses not listed get grey.
STATUS_COLOURS = {
    st.OK: "#2ca02c",
    st.UNAVAILABLE: "#d62728",
    st.PRIVATE: "#9467bd",
    st.RATE_LIMITED: "#ff7f0e",
    st.TIMEOUT: "#e377c2",
    st.BAD_MEDIA: "#8c564b",
    st.ERROR: "#000000",
    st.DEFERRED: "#1f77b4",
}
OTHER_COLOUR = "#7f7f7f"


def availability_counts(
    clip_classes: Mapping[str, str], clip_statuses: Mapping[str, str]
) -> pd.DataFrame:
    """Clips per status per class: one row per class (sorted by name), one int column per status.

    The columns are every status of the vocabulary, in its order, then any other status
    present (sorted; ``no_row`` among them when a clip has no status row).
    """
    counts: dict[str, Counter[str]] = {}
    for clip_id, cls in clip_classes.items():
        status = clip_statuses.get(clip_id, NO_ROW)
        counts.setdefault(_clean(cls) or NO_LABEL, Counter())[status] += 1
    present = {status for counter in counts.values() for status in counter}
    columns = list(st.ALL_STATUSES) + sorted(present - set(st.ALL_STATUSES))
    classes = sorted(counts)
    return pd.DataFrame(
        [[counts[c][s] for s in columns] for c in classes],
        index=pd.Index(classes, name="class"),
        columns=columns,
        dtype="int64",
    )


def stray_clips(clip_classes: Mapping[str, str], clip_statuses: Mapping[str, str]) -> list[str]:
    """Clip ids with a status row but not in the manifest (sorted): left out of the counts."""
    return sorted(set(clip_statuses) - set(clip_classes))


def availability_tsv(counts: pd.DataFrame) -> str:
    """The table as TSV: ``class, clips, <one column per status>, ok_share``; ``(all)`` first."""
    header = ["class", "clips", *counts.columns, "ok_share"]
    lines = ["\t".join(header)]
    rows = [(ALL_CLASSES, counts.sum(axis=0))] + list(counts.iterrows())
    for cls, row in rows:
        total = int(row.sum())
        share = row[st.OK] / total if total else 0.0
        cells = [str(cls), str(total), *(str(int(v)) for v in row), f"{share:.4f}"]
        lines.append("\t".join(cells))
    return "\n".join(lines) + "\n"


def plotted_classes(counts: pd.DataFrame, limit: int = MAX_PLOTTED_CLASSES) -> list[str]:
    """The classes the plot shows: all of them, or the ``limit`` with the lowest ok share.

    Ordered by ok share, lowest first, then by name.
    """
    share = counts[st.OK] / counts.sum(axis=1)  # every class has at least one clip
    order = sorted(counts.index, key=lambda cls: (share[cls], cls))
    return order[:limit]


def plot_availability(
    counts: pd.DataFrame, path: str | os.PathLike, title: str, limit: int = MAX_PLOTTED_CLASSES
) -> None:
    """Horizontal bars, one per class plus ``(all)`` on top: each split into its status shares."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shown = plotted_classes(counts, limit)
    table = pd.concat([counts.sum(axis=0).to_frame(ALL_CLASSES).T, counts.loc[shown]])
    totals = table.sum(axis=1)
    shares = table.div(totals, axis=0)  # a drawn status has clips, so (all) is never 0
    labels = [f"{cls} (n={int(totals[cls])})" for cls in table.index]
    statuses = [s for s in counts.columns if counts[s].sum() > 0]

    height = 1.6 + 0.3 * len(table)
    fig = Figure(figsize=(9, height), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(len(table))
    left = np.zeros(len(table))
    for status in statuses:
        widths = shares[status].to_numpy()
        ax.barh(y, widths, left=left, color=STATUS_COLOURS.get(status, OTHER_COLOUR), label=status)
        left = left + widths
    ax.set_yticks(y, labels)
    ax.set_ylim(len(table) - 0.5, -0.5)  # (all) on top, then the worst classes; no margins
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of the class's clips")
    if len(shown) < len(counts):
        title += f" ({len(shown)} of {len(counts)} classes, lowest ok share first)"
    ax.set_title(title, fontsize=9)
    # The legend in a strip of LEGEND_INCHES under the axes.
    if statuses:
        fig.legend(loc="lower center", ncol=len(statuses), fontsize=8)
    fig.tight_layout(rect=(0, LEGEND_INCHES / height, 1, 1))
    fig.savefig(path, format="png")


def write_availability_report(
    manifest: str | os.PathLike,
    status_paths: Sequence[str | os.PathLike],
    tsv_path: str | os.PathLike,
    png_path: str | os.PathLike,
    dataset: str,
    *,
    log: TextIO | None = None,
) -> pd.DataFrame:
    """Read the manifest and every shard's status table; write the TSV and the plot atomically."""
    clip_classes = {cid: labels.first for cid, labels in read_clip_labels(manifest).items()}
    clip_statuses = _statuses(status_paths)
    counts = availability_counts(clip_classes, clip_statuses)
    stray = stray_clips(clip_classes, clip_statuses)
    if stray and log is not None:
        print(
            f"availability: {len(stray)} status row(s) name clips not in {manifest} "
            f"(left out): {stray[:5]}",
            file=log,
        )
    tsv_path, png_path = Path(tsv_path), Path(png_path)
    tsv_path.parent.mkdir(parents=True, exist_ok=True)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(tsv_path, availability_tsv(counts))
    n = int(counts.to_numpy().sum())
    with atomic_path(png_path) as tmp:
        plot_availability(counts, tmp, f"{dataset}: {n} clips, {len(counts)} classes")
    if log is not None:
        totals = counts.sum(axis=0)
        summary = " ".join(f"{s}={int(totals[s])}" for s in counts.columns if totals[s])
        print(f"availability: {dataset}: {summary or 'no clips'}", file=log)
    return counts


def _statuses(paths: Iterable[str | os.PathLike]) -> dict[str, str]:
    statuses: dict[str, str] = {}
    for path in paths:
        statuses.update(read_status(path).set_index("clip_id")["status"].to_dict())
    return statuses


def _clean(text: str) -> str:
    """One TSV cell: no tabs or line breaks."""
    return " ".join(str(text).split())
