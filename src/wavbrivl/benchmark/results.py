"""The benchmark's result files, written atomically into one folder (docs/benchmarks.md).

- ``zeroshot.json``: the result of :func:`wavbrivl.benchmark.zeroshot.evaluate_zeroshot`
  (protocol with every template and prompt, per fold, mean ± std, chance and the at-chance
  verdict, per class, confusion matrix) plus ``data``: the dataset's counts and every skipped
  clip with its reason; ``zeroshot.tsv`` (per fold, then mean and std),
  ``zeroshot_per_class.tsv`` and ``confusion.png`` (the top-1 confusion matrix);
- ``linear_probe.json``, ``linear_probe.tsv``, ``linear_probe_per_class.tsv`` and
  ``linear_probe_confusion.png`` likewise for
  :func:`wavbrivl.benchmark.linear_probe.evaluate_linear_probe` (C grid, chosen C per fold).

:func:`read_result` reads a JSON back.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from wavbrivl.atomic import atomic_path, write_text_atomic

PROTOCOLS = ("zeroshot", "linear_probe")
#: confusion plot of each protocol
CONFUSION_PNG = {"zeroshot": "confusion.png", "linear_probe": "linear_probe_confusion.png"}


def fold_tsv(result: dict) -> str:
    """Per-fold rows, then ``mean`` and ``std`` rows: fold, n_clips, top1, top5 (+ C)."""
    probe = result["protocol"]["name"] == "linear_probe"
    header = ["fold", "n_clips", "top1", "top5"] + (["C"] if probe else [])
    lines = ["\t".join(header)]
    for row in result["per_fold"]:
        cells = [
            str(row["fold"]),
            str(row["n_test"] if probe else row["n_clips"]),
            f"{row['top1']:.6f}",
            f"{row['top5']:.6f}",
        ]
        lines.append("\t".join(cells + ([f"{row['C']:g}"] if probe else [])))
    for stat in ("mean", "std"):
        cells = [stat, str(result["n_clips"]), f"{result['top1'][stat]:.6f}"]
        cells.append(f"{result['top5'][stat]:.6f}")
        lines.append("\t".join(cells + ([""] if probe else [])))
    return "\n".join(lines) + "\n"


def per_class_tsv(result: dict) -> str:
    """One row per class: class_index, class_name, n_clips, top1 (empty without clips)."""
    lines = ["class_index\tclass_name\tn_clips\ttop1"]
    for row in result["per_class"]:
        accuracy = "" if row["accuracy"] is None else f"{row['accuracy']:.6f}"
        lines.append(f"{row['class_index']}\t{row['class_name']}\t{row['n_clips']}\t{accuracy}")
    return "\n".join(lines) + "\n"


def write_result(result: dict, data_report: dict, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write one protocol's JSON, TSVs and confusion plot into ``out_dir``; returns the paths.

    ``data_report`` is :meth:`wavbrivl.benchmark.datasets.BenchmarkTable.report` of the clips
    scored (it names every skipped clip with its reason).
    """
    name = result["protocol"]["name"]
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; expected one of {PROTOCOLS}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out_dir / f"{name}.json",
        "tsv": out_dir / f"{name}.tsv",
        "per_class": out_dir / f"{name}_per_class.tsv",
        "confusion": out_dir / CONFUSION_PNG[name],
    }
    document = {**result, "data": data_report}
    write_text_atomic(paths["json"], json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    write_text_atomic(paths["tsv"], fold_tsv(result))
    write_text_atomic(paths["per_class"], per_class_tsv(result))
    with atomic_path(paths["confusion"], suffix=".png") as tmp:
        plot_confusion(result, tmp)
    return paths


def read_result(path: str | os.PathLike) -> dict:
    """A result JSON written by :func:`write_result`."""
    # json decodes bytes as UTF-8 itself: the locale's encoding plays no part
    return json.loads(Path(path).read_bytes())


def tick_labels(classes: list[str]) -> list[str]:
    """The plot's class labels: the names when they are ASCII, else the class indices (the
    plot's font has no CJK glyphs; the names are in the JSON and the per-class TSV)."""
    if all(name.isascii() for name in classes):
        return list(classes)
    return [str(i) for i in range(len(classes))]


def confusion_fractions(confusion) -> np.ndarray:
    """(K, K) counts -> each row's fraction of its true class (a row without clips stays 0)."""
    counts = np.asarray(confusion, dtype=np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def confusion_title(result: dict) -> str:
    top1 = result["top1"]
    return (
        f"{result['protocol']['name']}: top-1 {top1['mean']:.1%} ± {top1['std']:.1%} "
        f"over {len(result['folds'])} folds (chance {result['chance']['top1']:.1%})"
    )


def confusion_figure(result: dict):
    """The top-1 confusion matrix as a matplotlib Figure (no pyplot state; savefig picks the
    Agg canvas for PNG)."""
    from matplotlib.figure import Figure

    n = len(result["classes"])
    side = min(4 + 0.22 * n, 16)  # inches: grows with the classes, 50 classes -> 15
    fig = Figure(figsize=(side, side), dpi=120)
    ax = fig.add_subplot()  # one axes filling the figure
    image = ax.imshow(confusion_fractions(result["confusion"]), vmin=0, vmax=1, cmap="Blues")
    labels = tick_labels(result["classes"])
    ax.set_xticks(range(n), labels, rotation=90, fontsize=6)
    ax.set_yticks(range(n), labels, fontsize=6)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(confusion_title(result), fontsize=9)
    fig.colorbar(image, label="fraction of the true class")
    fig.tight_layout()
    return fig


def plot_confusion(result: dict, path: Path) -> None:
    """Save :func:`confusion_figure` as a PNG."""
    confusion_figure(result).savefig(path, format="png")


__all__ = [
    "CONFUSION_PNG",
    "PROTOCOLS",
    "confusion_figure",
    "confusion_fractions",
    "confusion_title",
    "fold_tsv",
    "per_class_tsv",
    "plot_confusion",
    "read_result",
    "tick_labels",
    "write_result",
]
