"""The Figure-4-style grid: one column per input clip (its label under it), one row per run.

Several runs (two frozen image encoders, VQGAN beside unCLIP, WavBriVL beside a Wav2CLIP-style
baseline) sit one above the other over the same clips, so the same sound's images can be
compared down a column: the columns are chosen among the clips every run generated, and a clip
asked for that a run lacks is an error naming both. Each row is labelled with the run's name
and, when its ``generation.json`` says, its method and image encoder; an optional first row
shows the clips' real frames (from the generation dataset's media shards). Written as PNG and
PDF with matplotlib's Agg canvas (no pyplot state). See docs/stages.md (the Figure-4 grid).
"""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from matplotlib.figure import Figure
from PIL import Image

from wavbrivl.atomic import atomic_path
from wavbrivl.extract.media import decode_frame, iter_media_rows
from wavbrivl.generate.records import GENERATION_JSON
from wavbrivl.sheets import GenerationRun
from wavbrivl.status import OK

REAL_FRAME_ROW = "real frame"


def common_clips(runs: Sequence[GenerationRun]) -> list[str]:
    """The clip ids every run generated, in the first run's order."""
    if not runs:
        raise ValueError("the grid needs at least one run")
    return [cid for cid in runs[0].clips if all(cid in run.clips for run in runs[1:])]


def check_clips_in_runs(runs: Sequence[GenerationRun], clip_ids: Iterable[str]) -> None:
    """Raise naming the first run and its clips that are not in it."""
    for run in runs:
        lacking = [cid for cid in clip_ids if cid not in run.clips]
        if lacking:
            raise KeyError(
                f"run {run.name!r} ({run.folder}) has no image for clip(s) {lacking[:10]}"
            )


def run_row_label(run: GenerationRun) -> str:
    """The run's name, and below it its method and image encoder when generation.json says.

    The method is the record's ``method`` (or ``config.method``); a record with a ``vqgan``
    entry and no method is a VQGAN run.
    """
    try:
        record = json.loads((Path(run.folder) / GENERATION_JSON).read_bytes())  # UTF-8 by RFC 8259
    except (OSError, ValueError):
        record = {}
    if not isinstance(record, dict):
        record = {}
    config = record.get("config")
    method = record.get("method") or (config.get("method") if isinstance(config, dict) else None)
    if not method and "vqgan" in record:
        method = "vqgan"
    details = [str(x) for x in (method, record.get("image_encoder")) if x]
    return run.name + (f"\n({', '.join(details)})" if details else "")


def load_real_frames(
    media_paths: Iterable[str | os.PathLike], clip_ids: Iterable[str]
) -> dict[str, Image.Image]:
    """``{clip_id: RGB frame}`` from the media shards; a clip without an ok frame is an error
    naming it and why (its media status, or absent from every shard)."""
    wanted = set(clip_ids)
    frames: dict[str, Image.Image] = {}
    reasons: dict[str, str] = {}
    for path in media_paths:
        for rows in iter_media_rows(path, ["frame"]):
            for clip_id, status, reason, jpeg in rows[
                ["clip_id", "status", "reason", "frame"]
            ].itertuples(index=False):
                if clip_id not in wanted:
                    continue
                if clip_id in frames or clip_id in reasons:
                    raise ValueError(f"{path}: clip {clip_id!r} appears twice in the media shards")
                if status == OK and jpeg:
                    frames[clip_id] = decode_frame(jpeg)
                else:
                    reasons[clip_id] = (
                        f"media status {status}: {reason}" if status != OK else "no frame"
                    )
    for clip_id in sorted(wanted - frames.keys() - reasons.keys()):
        reasons[clip_id] = "not in the media shards"
    if reasons:
        names = sorted(reasons)[:10]
        why = "; ".join(f"{cid}: {reasons[cid]}" for cid in names)
        raise KeyError(f"no real frame for clip(s) {names} ({why})")
    return frames


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


def grid_columns(runs: Sequence[GenerationRun], max_columns: int) -> list[str]:
    """The default columns: :func:`select_columns` over the clips every run has."""
    shared = common_clips(runs)
    if not shared:
        raise ValueError(
            f"the runs {[r.name for r in runs]} have no clip in common: every run must "
            "have generated the grid's clips"
        )
    return select_columns(
        replace(runs[0], clips={c: runs[0].clips[c] for c in shared}), max_columns
    )


def plot_grid(
    runs: Sequence[GenerationRun],
    clip_ids: Sequence[str] | None = None,
    *,
    real_frames: Mapping[str, Image.Image] | None = None,
    row_labels: Mapping[str, str] | None = None,
    max_columns: int = 12,
    cell_inches: float = 1.6,
    wrap_chars: int = 18,
) -> tuple[Figure, list[str]]:
    """Draw the grid; returns the figure and the clip ids of its columns.

    ``clip_ids`` fixes the columns (each must be in every run); by default
    :func:`select_columns` picks them among the clips every run has (:func:`common_clips`).
    ``real_frames`` (``{clip_id: image}``), when given, fills a first row labelled
    :data:`REAL_FRAME_ROW`; ``row_labels`` (``{run name: text}``) replaces run names.
    """
    if not runs:
        raise ValueError("the grid needs at least one run")
    columns = list(clip_ids) if clip_ids is not None else grid_columns(runs, max_columns)
    if not columns:
        raise ValueError("the grid needs at least one clip")
    check_clips_in_runs(runs, columns)
    if real_frames is not None:
        lacking = [cid for cid in columns if cid not in real_frames]
        if lacking:
            raise KeyError(f"no real frame for clip(s) {lacking[:10]}")

    rows: list[tuple[str, Mapping[str, Image.Image] | GenerationRun]] = []
    if real_frames is not None:
        rows.append((REAL_FRAME_ROW, real_frames))
    labels = row_labels or {}
    rows += [(labels.get(run.name, run.name), run) for run in runs]
    n_rows, n_cols = len(rows), len(columns)
    fig = Figure(figsize=(cell_inches * n_cols + 1.2, cell_inches * n_rows + 0.9))
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for r, (row_label, source) in enumerate(rows):
        for c, clip_id in enumerate(columns):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if isinstance(source, GenerationRun):
                with Image.open(source.clips[clip_id].image_path) as image:
                    ax.imshow(image.convert("RGB"))
            else:
                ax.imshow(source[clip_id].convert("RGB"))
            if c == 0:
                # parse_math=False: a "$" in a run name or label is text, not mathtext.
                ax.set_ylabel(row_label, fontsize=9, parse_math=False)
            if r == n_rows - 1:
                ax.set_xlabel(
                    _column_label(runs[0], clip_id, wrap_chars), fontsize=8, parse_math=False
                )
    fig.subplots_adjust(
        left=0.6 / fig.get_figwidth(), right=0.99, top=0.98, wspace=0.05, hspace=0.05
    )
    fig.subplots_adjust(bottom=0.8 / fig.get_figheight())
    return fig, columns


def _column_label(run: GenerationRun, clip_id: str, wrap_chars: int) -> str:
    label = run.clips[clip_id].label
    return "\n".join(textwrap.wrap(label, wrap_chars, max_lines=3, placeholder="…")) or label


def write_grid(
    runs: Sequence[GenerationRun],
    png_path: str | os.PathLike,
    pdf_path: str | os.PathLike | None = None,
    clip_ids: Sequence[str] | None = None,
    *,
    real_frames: Mapping[str, Image.Image] | None = None,
    row_labels: Mapping[str, str] | None = None,
    max_columns: int = 12,
    dpi: int = 150,
) -> list[str]:
    """Write the grid as PNG (and PDF when ``pdf_path`` is given); returns the column clip ids."""
    fig, columns = plot_grid(
        runs, clip_ids, real_frames=real_frames, row_labels=row_labels, max_columns=max_columns
    )
    # The temporary name ends in ".tmp", so the format is given explicitly; fixed metadata keeps
    # the files byte-identical between reruns.
    with atomic_path(Path(png_path)) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, metadata={"Software": None})
    if pdf_path is not None:
        with atomic_path(Path(pdf_path)) as tmp:
            fig.savefig(tmp, format="pdf", metadata={"CreationDate": None, "Creator": None})
    return columns
