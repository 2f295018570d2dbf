"""One table of benchmark results: every model rerun here, beside the peers' published figures.

**Input.** The result JSONs the harness writes (``zeroshot.json``, ``linear_probe.json``, one
per model per dataset, under ``results/benchmarks/<run>/<dataset>/``): of each, the table reads
``protocol.name`` (``zeroshot`` or ``linear_probe``), ``top1`` and ``top5`` (each
``{"mean": m, "std": s}``, fractions in [0, 1], over folds) and ``folds`` (the folds scored).
The model is the ``<run>`` folder and the dataset the ``<dataset>`` folder, unless the caller
names them (:func:`read_rows`).

**Rows** (the table's schema, :class:`Row`): ``model``, ``dataset``, ``protocol``, ``metric``
(``top1``, ``top5``), ``mean`` and ``std`` in percent, ``n_folds``, ``source`` (``rerun here``,
or ``published, not rerun here`` for a figure copied from a paper) and ``reference`` (the paper).

**Output.** :func:`to_tsv`: one line per row, every field (for scripts). :func:`to_markdown`:
one line per model, protocol and metric, one column per dataset (``mean ± std (n=folds)``;
a published figure has neither), and the source in its own column.

**Published figures** (:data:`PUBLISHED`), top-1 zero-shot accuracy in percent, as each paper
reports it under its own protocol (its prompts, and all clips rather than a mean over folds):

- Wav2CLIP (Wu, Seetharaman, Kumar, Bello; ICASSP 2022; arXiv:2110.11499): ESC-50 41.4,
  UrbanSound8K 40.4;
- AudioCLIP (Guzhov, Raue, Hees, Dengel; ICASSP 2022; arXiv:2106.13043): ESC-50 69.40,
  UrbanSound8K 68.78 (its 97.15 / 90.07 are after fine-tuning the audio model, not a
  linear probe, so they are not listed);
- ImageBind-H (Girdhar et al.; CVPR 2023; arXiv:2305.05665): ESC-50 66.9.

Wav2CLIP's paper also scores its frozen embeddings with a trained classifier, but we could not
check those figures against the paper's text, so no published linear-probe row is listed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from wavbrivl.atomic import write_text_atomic

PROTOCOLS = ("zeroshot", "linear_probe")
METRICS = ("top1", "top5")
RERUN = "rerun here"
PUBLISHED_FLAG = "published, not rerun here"
#: Column order of the datasets this project reads; others follow, sorted.
DATASET_ORDER = ("esc50", "esc10", "urbansound8k", "vggsound")
DATASET_TITLES = {
    "esc50": "ESC-50",
    "esc10": "ESC-10",
    "urbansound8k": "UrbanSound8K",
    "vggsound": "VGGSound test",
}
PROTOCOL_TITLES = {"zeroshot": "zero-shot", "linear_probe": "linear probe"}
METRIC_TITLES = {"top1": "top-1", "top5": "top-5"}
TSV_FIELDS = (
    "model",
    "dataset",
    "protocol",
    "metric",
    "mean",
    "std",
    "n_folds",
    "source",
    "reference",
)


class ResultError(ValueError):
    """A result file the table cannot use; the message names the file and the key."""


@dataclass(frozen=True)
class Row:
    """One figure of the table (see the module docstring)."""

    model: str
    dataset: str
    protocol: str
    metric: str
    mean: float  # percent
    std: float | None  # percent; None for a published figure
    n_folds: int | None  # None for a published figure
    source: str = RERUN
    reference: str = ""


WAV2CLIP_PAPER = "Wu et al. 2022, ICASSP (arXiv:2110.11499)"
AUDIOCLIP_PAPER = "Guzhov et al. 2022, ICASSP (arXiv:2106.13043)"
IMAGEBIND_PAPER = "Girdhar et al. 2023, CVPR (arXiv:2305.05665)"


#: The peers' figures as published (module docstring); never recomputed here.
PUBLISHED: tuple[Row, ...] = tuple(
    Row(model, dataset, "zeroshot", "top1", mean, None, None, PUBLISHED_FLAG, reference)
    for model, dataset, mean, reference in (
        ("Wav2CLIP", "esc50", 41.4, WAV2CLIP_PAPER),
        ("Wav2CLIP", "urbansound8k", 40.4, WAV2CLIP_PAPER),
        ("AudioCLIP", "esc50", 69.40, AUDIOCLIP_PAPER),
        ("AudioCLIP", "urbansound8k", 68.78, AUDIOCLIP_PAPER),
        ("ImageBind-H", "esc50", 66.9, IMAGEBIND_PAPER),
    )
)


def _fraction(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ResultError(f"{where}: expected a fraction in [0, 1], got {value!r}")
    return float(value)


def rows_from_result(result: dict, *, model: str, dataset: str, where: str) -> list[Row]:
    """The table rows of one result JSON (``where`` names it in errors)."""
    protocol = (result.get("protocol") or {}).get("name")
    if protocol not in PROTOCOLS:
        raise ResultError(f"{where}: protocol.name is {protocol!r}, expected one of {PROTOCOLS}")
    folds = result.get("folds")
    if not isinstance(folds, list) or not folds:
        raise ResultError(f"{where}: folds must be a non-empty list, got {folds!r}")
    rows = []
    for metric in METRICS:
        figure = result.get(metric)
        if not isinstance(figure, dict):
            raise ResultError(f"{where}: no {metric} figure ({{'mean': ..., 'std': ...}})")
        mean = _fraction(figure.get("mean"), f"{where}: {metric}.mean")
        std = _fraction(figure.get("std"), f"{where}: {metric}.std")
        rows.append(Row(model, dataset, protocol, metric, 100 * mean, 100 * std, len(folds)))
    return rows


def read_rows(
    path: str | os.PathLike, *, model: str | None = None, dataset: str | None = None
) -> list[Row]:
    """The rows of ``results/benchmarks/<run>/<dataset>/<protocol>.json``; ``model`` and
    ``dataset`` default to the ``<run>`` and ``<dataset>`` folders."""
    path = Path(path)
    try:
        result = json.loads(path.read_bytes())  # bytes: UTF-8 (or -16/-32) by JSON's rules
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ResultError(f"{path}: not a readable result JSON ({err})") from None
    if not isinstance(result, dict):
        raise ResultError(f"{path}: expected a JSON object, got {type(result).__name__}")
    return rows_from_result(
        result,
        model=model or path.parent.parent.name,
        dataset=dataset or path.parent.name,
        where=str(path),
    )


def collect(root: str | os.PathLike) -> list[Row]:
    """Every ``<run>/<dataset>/{zeroshot,linear_probe}.json`` under ``root``
    (``results/benchmarks``), in path order."""
    root = Path(root)
    paths = sorted(p for name in PROTOCOLS for p in root.glob(f"*/*/{name}.json"))
    return [row for path in paths for row in read_rows(path)]


def combine(rows: Iterable[Row], published: Sequence[Row] = PUBLISHED) -> list[Row]:
    """Our rows sorted by model, protocol, metric and dataset, then the published ones."""
    ours = sorted(rows, key=_order)
    return ours + list(published)


def _order(row: Row) -> tuple:
    return (
        row.model,
        PROTOCOLS.index(row.protocol),
        METRICS.index(row.metric),
        _dataset_key(row.dataset),
    )


def _dataset_key(dataset: str) -> tuple[int, str]:
    rank = DATASET_ORDER.index(dataset) if dataset in DATASET_ORDER else len(DATASET_ORDER)
    return (rank, dataset)


def _number(value: float | int | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def to_tsv(rows: Iterable[Row]) -> str:
    """Every field of every row, tab-separated, with a header line."""
    lines = ["\t".join(TSV_FIELDS)]
    for row in rows:
        n_folds = "" if row.n_folds is None else str(row.n_folds)
        cells = [row.model, row.dataset, row.protocol, row.metric, _number(row.mean)]
        cells += [_number(row.std), n_folds, row.source, row.reference]
        lines.append("\t".join(_cell(c) for c in cells))
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    """A TSV or Markdown cell: no tab, newline or pipe can break the table."""
    return " ".join(text.replace("|", "/").split())


def _figure(row: Row) -> str:
    if row.std is None:
        return f"{row.mean:.1f}"
    return f"{row.mean:.1f} ± {row.std:.1f} (n={row.n_folds})"


def to_markdown(rows: Sequence[Row]) -> str:
    """One line per model, protocol, metric and source; one column per dataset."""
    datasets = sorted({row.dataset for row in rows}, key=_dataset_key)
    lines_of: dict[tuple, dict[str, str]] = {}
    for row in rows:
        source = row.source + (f": {row.reference}" if row.reference else "")
        key = (row.model, row.protocol, row.metric, source)
        cells = lines_of.setdefault(key, {})
        if row.dataset in cells:
            raise ResultError(
                f"two {row.protocol} {row.metric} figures of {row.model} on {row.dataset}"
            )
        cells[row.dataset] = _figure(row)
    header = ["model", "protocol", "metric"]
    header += [DATASET_TITLES.get(d, d) for d in datasets] + ["source"]
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    for (model, protocol, metric, source), cells in lines_of.items():
        line = [model, PROTOCOL_TITLES[protocol], METRIC_TITLES[metric]]
        line += [cells.get(d, "–") for d in datasets] + [source]
        lines.append("| " + " | ".join(_cell(c) for c in line) + " |")
    lines.append("")
    lines.append(
        "Accuracy in percent: mean ± standard deviation over the official folds (n folds) for "
        f"rows {RERUN}; rows {PUBLISHED_FLAG} are copied from the paper named, under its own "
        "protocol."
    )
    return "\n".join(lines) + "\n"


def write_table(
    rows: Sequence[Row], markdown: str | os.PathLike, tsv: str | os.PathLike
) -> tuple[Path, Path]:
    """Write both forms atomically; returns their paths."""
    write_text_atomic(Path(markdown), to_markdown(rows))
    write_text_atomic(Path(tsv), to_tsv(rows))
    return Path(markdown), Path(tsv)


def build_table(
    root: str | os.PathLike, markdown: str | os.PathLike, tsv: str | os.PathLike
) -> tuple[Path, Path]:
    """What a workflow rule calls: every result under ``root`` beside :data:`PUBLISHED`."""
    return write_table(combine(collect(root)), markdown, tsv)


__all__ = [
    "PUBLISHED",
    "PUBLISHED_FLAG",
    "RERUN",
    "ResultError",
    "Row",
    "build_table",
    "collect",
    "combine",
    "read_rows",
    "rows_from_result",
    "to_markdown",
    "to_tsv",
    "write_table",
]
