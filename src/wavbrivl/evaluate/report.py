"""The evaluation's report: the retrieval metrics as ``metrics.json``, ``metrics.tsv`` and the
bar plot ``retrieval.png`` (both directions, both levels, with chance levels).

The metrics themselves are computed by :mod:`wavbrivl.evaluate.retrieval`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from wavbrivl.atomic import atomic_path, write_text_atomic
from wavbrivl.evaluate.retrieval import DIRECTIONS, KS, LEVELS


def metric_rows(metrics: dict[str, Any]) -> list[tuple[str, str, str, float, float]]:
    """(direction, level, metric, value, chance) for every scored metric."""
    rows = []
    for direction in DIRECTIONS:
        for level in LEVELS:
            for name, cell in metrics[direction][level].items():
                rows.append((direction, level, name, cell["value"], cell["chance"]))
    return rows


def write_retrieval_report(metrics: dict[str, Any], out_dir: str | os.PathLike) -> None:
    """Write ``metrics.json``, ``metrics.tsv`` and the bar plot ``retrieval.png``, atomically."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = metric_rows(metrics)
    write_text_atomic(out_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    lines = ["direction\tlevel\tmetric\tvalue\tchance"]
    lines += [f"{d}\t{lvl}\t{m}\t{v:.6g}\t{c:.6g}" for d, lvl, m, v, c in rows]
    write_text_atomic(out_dir / "metrics.tsv", "\n".join(lines) + "\n")
    with atomic_path(out_dir / "retrieval.png", suffix=".png") as tmp:
        _plot(metrics, tmp)


def _plot(metrics: dict[str, Any], path: Path) -> None:
    # Figure + Agg canvas directly: no pyplot global state, no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    bars = [f"R@{k}" for k in KS] + ["mAP"]
    fig = Figure(figsize=(10, 4.4), dpi=120)
    FigureCanvasAgg(fig)
    width = 0.38
    x = np.arange(len(bars))
    for i, level in enumerate(LEVELS):
        ax = fig.add_subplot(1, len(LEVELS), i + 1)
        medians = []
        for j, direction in enumerate(DIRECTIONS):
            cells = metrics[direction][level]
            offset = (j - 0.5) * width
            ax.bar(x + offset, [cells[b]["value"] for b in bars], width, label=_pretty(direction))
            ax.scatter(
                x + offset,
                [cells[b]["chance"] for b in bars],
                marker="_",
                s=300,
                color="black",
                zorder=3,
                label="chance" if j == 0 else None,
            )
            median = cells["median_rank"]
            medians.append(
                f"{_pretty(direction)} {median['value']:g} (chance {median['chance']:.3g})"
            )
        ax.set_xticks(x, bars)
        ax.set_ylim(0, 1)
        ax.set_title(f"{level} level: median rank\n" + "; ".join(medians), fontsize=9)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.suptitle(f"retrieval, N = {metrics['n_clips']} clips, {metrics['n_classes']} classes")
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, format="png")


def _pretty(direction: str) -> str:
    return direction.replace("_to_", " \u2192 ")


__all__ = ["metric_rows", "write_retrieval_report"]
