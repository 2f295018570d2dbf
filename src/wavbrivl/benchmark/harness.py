"""The benchmark run as one call: decode and embed a dataset's clips, score them with each
protocol, write the results (docs/benchmarks.md).

The audio model and the text side come in as callables, so this module loads nothing:
``encode_audio(list of (T,) float32 arrays at 16 kHz) -> (B, D)`` and
``encode_text(list[str]) -> (M, D)``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from wavbrivl.benchmark.datasets import BenchmarkTable, iter_clip_audio, without_skipped
from wavbrivl.benchmark.linear_probe import DEFAULT_C_GRID, MIN_FOLDS
from wavbrivl.benchmark.stage import score_table
from wavbrivl.benchmark.zeroshot import EncodeText

EncodeAudio = Callable[[list[np.ndarray]], np.ndarray]


def embed_table(
    table: BenchmarkTable,
    encode_audio: EncodeAudio,
    *,
    batch_size: int = 16,
    progress: bool = True,
) -> tuple[np.ndarray, BenchmarkTable]:
    """``(embeddings (N, D) float32, table of the N clips embedded)``: clips whose audio
    cannot be read move to the table's skipped list with their reason."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    reasons: dict[int, str] = {}
    batch: list[np.ndarray] = []
    parts: list[np.ndarray] = []

    def flush() -> None:
        out = np.asarray(encode_audio(batch), dtype=np.float32)
        if out.ndim != 2 or len(out) != len(batch):
            raise ValueError(f"encode_audio returned shape {out.shape} for {len(batch)} clips")
        parts.append(out)
        batch.clear()

    bar = tqdm(
        iter_clip_audio(table),
        total=len(table.rows),
        desc=f"benchmark {table.name}",
        unit="clip",
        disable=not progress,
    )
    for position, samples, reason in bar:
        if samples is None:
            reasons[position] = reason
            continue
        batch.append(samples)
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    kept = without_skipped(table, reasons)
    if not parts:
        raise ValueError(f"{table.name}: no clip could be read ({len(kept.skipped)} skipped)")
    return np.concatenate(parts), kept


def run_protocols(
    table: BenchmarkTable,
    embeddings: np.ndarray,
    out_dir: str | os.PathLike,
    *,
    encode_text: EncodeText | None = None,
    language: str = "en",
    templates: Sequence[str] | None = None,
    c_grid: Sequence[float] = DEFAULT_C_GRID,
    seed: int = 0,
) -> dict[str, dict[str, Path]]:
    """Zero-shot (when there is a text side) and the linear probe (when the clips cover at
    least three folds) on ``embeddings`` of ``table``'s rows; returns the written paths."""
    written = {}
    if encode_text is not None:
        written["zeroshot"] = score_table(
            table,
            embeddings,
            "zeroshot",
            out_dir,
            encode_text=encode_text,
            language=language,
            templates=templates,
        )
    if table.rows["fold"].nunique() >= MIN_FOLDS:  # folds with clips left after the skips
        written["linear_probe"] = score_table(
            table, embeddings, "linear_probe", out_dir, c_grid=c_grid, seed=seed
        )
    return written


__all__ = ["EncodeAudio", "embed_table", "run_protocols"]
