"""The Figure-4-style grid: one column per input clip (its label under it), one row per run.

Two runs (say two frozen image encoders) sit one above the other, so the same sound's images
can be compared down a column. A clip one run lacks is drawn as a grey "missing" cell, never
left out silently. Written as PNG and PDF with matplotlib's Agg canvas (no pyplot state).
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure
from PIL import Image

from wavbrivl.atomic import atomic_path
from wavbrivl.sheets import GenerationRun

MISSING_FACE = "#dddddd"


def select_columns(run: GenerationRun, max_columns: int) -> list[str]:
    """Up to ``max_columns`` clip ids of ``run``, one per label in turn (labels sorted).

    Round-robin over labels shows as many classes as fit before a class repeats; inside a
    label the run's own order is kept, so the choice is deterministic.
    """
    if max_columns < 1:
        raise ValueError(f"max_columns must be >= 1, got {max_columns}")
    by_label: dict[str, list[str]] = {}
    for clip in run.clips.values():
        by_label.setdefault(clip.label, []).append(clip.clip_id)
    queues = [by_label[label] for label in sorted(by_label)]
    chosen: list[str] = []
    depth = 0
    while len(chosen) < max_columns and any(depth < len(q) for q in queues):
        chosen.extend(q[depth] for q in queues if depth < len(q))
        depth += 1
    return chosen[:max_columns]


def plot_grid(
    runs: Sequence[GenerationRun],
    clip_ids: Sequence[str] | None = None,
    *,
    max_columns: int = 12,
    cell_inches: float = 1.6,
    wrap_chars: int = 18,
) -> tuple[Figure, list[str]]:
    """Draw the grid; returns the figure and the clip ids of its columns.

    ``clip_ids`` fixes the columns (each must exist in at least one run); by default
    :func:`select_columns` picks them from the first run.
    """
    if not runs:
        raise ValueError("the grid needs at least one run")
    columns = list(clip_ids) if clip_ids is not None else select_columns(runs[0], max_columns)
    if not columns:
        raise ValueError("the grid needs at least one clip")
    unknown = [cid for cid in columns if not any(cid in run.clips for run in runs)]
    if unknown:
        raise KeyError(f"clip(s) {unknown[:10]} are in none of the runs {[r.name for r in runs]}")

    n_rows, n_cols = len(runs), len(columns)
    fig = Figure(figsize=(cell_inches * n_cols + 1.2, cell_inches * n_rows + 0.9))
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for r, run in enumerate(runs):
        for c, clip_id in enumerate(columns):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            clip = run.clips.get(clip_id)
            if clip is None:
                ax.set_facecolor(MISSING_FACE)
                ax.text(0.5, 0.5, "missing", ha="center", va="center", transform=ax.transAxes)
            else:
                with Image.open(clip.image_path) as image:
                    ax.imshow(image.convert("RGB"))
            if c == 0:
                # parse_math=False: a "$" in a run name or label is text, not mathtext.
                ax.set_ylabel(run.name, fontsize=10, parse_math=False)
            if r == n_rows - 1:
                ax.set_xlabel(
                    _column_label(runs, clip_id, wrap_chars), fontsize=8, parse_math=False
                )
    fig.subplots_adjust(
        left=0.6 / fig.get_figwidth(), right=0.99, top=0.98, wspace=0.05, hspace=0.05
    )
    fig.subplots_adjust(bottom=0.8 / fig.get_figheight())
    return fig, columns


def _column_label(runs: Sequence[GenerationRun], clip_id: str, wrap_chars: int) -> str:
    label = next(run.clips[clip_id].label for run in runs if clip_id in run.clips)
    return "\n".join(textwrap.wrap(label, wrap_chars, max_lines=3, placeholder="…")) or label


def write_grid(
    runs: Sequence[GenerationRun],
    png_path: str | os.PathLike,
    pdf_path: str | os.PathLike | None = None,
    clip_ids: Sequence[str] | None = None,
    *,
    max_columns: int = 12,
    dpi: int = 150,
) -> list[str]:
    """Write the grid as PNG (and PDF when ``pdf_path`` is given); returns the column clip ids."""
    fig, columns = plot_grid(runs, clip_ids, max_columns=max_columns)
    # The temporary name ends in ".tmp", so the format is given explicitly; fixed metadata keeps
    # the files byte-identical between reruns.
    with atomic_path(Path(png_path)) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, metadata={"Software": None})
    if pdf_path is not None:
        with atomic_path(Path(pdf_path)) as tmp:
            fig.savefig(tmp, format="pdf", metadata={"CreationDate": None, "Creator": None})
    return columns
