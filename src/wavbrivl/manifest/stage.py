"""The manifest stage's entry: one dataset's config block in, its sharded Parquet manifest out.

:class:`DatasetConfig` is one entry of the workflow's ``datasets:`` block (the schema in
``workflow/schemas/config.schema.yaml`` validates it and fills its defaults; the defaults
here are the same values, for callers outside the workflow, and a test keeps them equal).
:func:`make_manifest` parses the CSV, selects, shards and writes (wavbrivl.manifest.build).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from wavbrivl.configs import check_block, default_field, from_mapping, schema_default
from wavbrivl.download.sources import mirror_steps, parse_source, url_step
from wavbrivl.manifest.audioset import (
    check_known_labels,
    default_split_name,
    read_audioset_segments,
    read_class_labels,
)
from wavbrivl.manifest.build import (
    FORMATS,
    NO_SOURCE_URL,
    build_manifest,
    read_source_mapping,
    write_manifest,
)
from wavbrivl.manifest.fetch import local_copy
from wavbrivl.manifest.parsing import ParseReport
from wavbrivl.manifest.select import select_clips
from wavbrivl.manifest.vggsound import read_vggsound_csv

YOUTUBE_URL_TEMPLATE = schema_default("dataset", "source")["url_template"]


@dataclass(frozen=True)
class DatasetConfig:
    """One dataset of the ``datasets:`` config block: where its clips come from, which to keep."""

    # Where the rows come from.
    format: str  # "vggsound" | "audioset"
    csv: str | Path  # local path or http(s) URL of the dataset CSV
    n_shards: int
    # Defaults and rules of the optional keys come from the config schema (`$defs.dataset`).
    labels_csv: str | Path | None = default_field("dataset", "labels_csv")  # AudioSet names
    # The split an AudioSet CSV stands for; None: from its name.
    split_name: str | None = default_field("dataset", "split_name")
    # VGGSound clips are [start, start + clip_seconds).
    clip_seconds: float = default_field("dataset", "clip_seconds")
    # Where clips come from: {"url_template": "...{id}..."}, {"mapping_csv": path}, a mirror
    # ({"folder": ...} or {"tar": ...}) or {"chain": [...]} (wavbrivl.download.sources).
    source: Mapping[str, str] = default_field("dataset", "source")
    # What to keep (wavbrivl.manifest.select.select_clips).
    splits: Sequence[str] | None = default_field("dataset", "splits")
    classes: Sequence[str] | None = default_field("dataset", "classes")
    ytids: Sequence[str] | None = default_field("dataset", "ytids")
    max_clips_per_class: int | None = default_field("dataset", "max_clips_per_class")
    seed: int = default_field("dataset", "seed")
    # What the workflow does with the manifest (train or generation); not read here.
    role: str = default_field("dataset", "role")

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"unknown dataset format {self.format!r}; expected one of {FORMATS}")
        parse_source(self.source)  # its shape; the files are checked by the workflow
        check_block(self, "dataset")  # after the checks above: their messages are clearer

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> DatasetConfig:
        """Build from one ``datasets:`` entry; unknown keys are an error (a typo must not pass)."""
        return from_mapping(cls, values, "dataset config")

    def selection(self) -> dict[str, Any]:
        """The selection settings, as recorded in the manifest's metadata."""
        return {
            "splits": list(self.splits) if self.splits else None,
            "classes": list(self.classes) if self.classes is not None else None,
            "max_clips_per_class": self.max_clips_per_class,
            "seed": self.seed,
            "ytids": list(self.ytids) if self.ytids is not None else None,
        }


def make_manifest(
    cfg: DatasetConfig,
    *,
    out_path: str | Path,
    dataset: str | None = None,
    cache_dir: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> ParseReport:
    """Parse, select, shard and write one dataset's manifest; log what happened.

    ``cfg.csv``, ``cfg.labels_csv`` and a ``mapping_csv`` source may be paths or http(s)
    URLs (cached in ``cache_dir``, default ``<out dir>/_downloads``). ``dataset`` defaults to
    the file stem of ``out_path``. Raises when the selection leaves no clip.
    """
    out_path = Path(out_path)
    cache_dir = Path(cache_dir) if cache_dir is not None else out_path.parent / "_downloads"
    dataset = dataset or out_path.stem

    log(f"{dataset}: reading {cfg.format} CSV {cfg.csv}")
    df, report, label_names, csv_path = _read_dataset(cfg, cache_dir)
    for line in report.summary_lines():
        log(line)
    if df.empty:
        raise _no_clips_left(dataset, out_path, f"{cfg.csv} has no usable rows", report, csv_path)
    if label_names is not None:
        for line in check_known_labels(
            df, label_names, source=str(cfg.csv), labels_source=str(cfg.labels_csv)
        ):
            log(line)

    selection = cfg.selection()
    selected = select_clips(
        df,
        splits=cfg.splits,
        classes=cfg.classes,
        max_clips_per_class=cfg.max_clips_per_class,
        seed=cfg.seed,
        ytids=cfg.ytids,
        label_names=label_names,
    )
    log(f"selected {len(selected)} of {len(df)} clips ({_describe(selection)})")

    steps = parse_source(cfg.source)
    url = url_step(steps)
    mapping_csv = url.mapping_csv if url else None
    mapping = read_source_mapping(local_copy(mapping_csv, cache_dir)) if mapping_csv else None
    table, full_report = build_manifest(
        selected,
        n_shards=cfg.n_shards,
        url_template=url.url_template if url else None,
        mapping=mapping,
        label_names=label_names,
        report=report,
        keep_without_url=bool(mirror_steps(steps)),
    )
    n_no_url = full_report.n_malformed - report.n_malformed
    if n_no_url:
        log(f"{mapping_csv}: {n_no_url} selected clips have {NO_SOURCE_URL}, dropped")
        for example in full_report.no_url_examples:
            log(f"  {example}")
        if n_no_url > len(full_report.no_url_examples):
            log(f"  ... and {n_no_url - len(full_report.no_url_examples)} more")
    if table.num_rows == 0:
        raise _no_clips_left(
            dataset, out_path, f"{cfg.csv}, selection {_describe(selection)}", full_report
        )

    selection["n_selected"] = table.num_rows
    write_manifest(
        table,
        out_path,
        dataset=dataset,
        fmt=cfg.format,
        n_shards=cfg.n_shards,
        report=full_report,
        selection=selection,
    )
    per_shard = pd.Series(table.column("shard").to_pylist()).value_counts()
    log(
        f"wrote {out_path}: {table.num_rows} clips in {cfg.n_shards} shards "
        f"({cfg.n_shards - len(per_shard)} empty; {per_shard.min()}..{per_shard.max()} clips "
        f"per non-empty shard)"
    )
    return full_report


def _read_dataset(
    cfg: DatasetConfig, cache_dir: Path
) -> tuple[pd.DataFrame, ParseReport, dict[str, str] | None, Path]:
    """The parsed rows, their parse report, the display names (AudioSet labels CSV) and the
    local path of the CSV."""
    csv_path = local_copy(cfg.csv, cache_dir)
    labels_csv = cfg.labels_csv
    label_names = read_class_labels(local_copy(labels_csv, cache_dir)) if labels_csv else None
    if cfg.format == "vggsound":
        df, report = read_vggsound_csv(csv_path, clip_seconds=cfg.clip_seconds)
    else:
        split = cfg.split_name or default_split_name(cfg.csv)
        df, report = read_audioset_segments(csv_path, split=split)
    report.source = Path(str(cfg.csv)).name
    return df, report, label_names, Path(csv_path)


MAX_FIRST_LINES = 3  # lines of a file without usable rows shown in the error
FIRST_LINE_CHARS = 120


def _no_clips_left(
    dataset: str,
    out_path: Path,
    where: str,
    report: ParseReport,
    csv_path: Path | None = None,
) -> ValueError:
    """The "no clips left" error: the file, its parse summary and, when it had no usable
    rows at all, its first lines (an HTML page saved as .csv shows itself)."""
    lines = [f"{dataset}: no clips left to write to {out_path} ({where})"]
    lines += report.summary_lines()
    if csv_path is not None:
        first = _first_lines(csv_path)
        lines.append("  first lines of the file:" if first else "  the file is empty")
        lines += [f"    {text}" for text in first]
    return ValueError("\n".join(lines))


def _first_lines(path: Path) -> list[str]:
    """The first non-blank lines of ``path``, shortened, as ``repr``s (bytes made visible)."""
    first: list[str] = []
    with open(path, "rb") as fh:
        for raw in fh:
            text = raw.decode("utf-8", errors="replace").strip()
            if text:
                if len(text) > FIRST_LINE_CHARS:
                    text = text[: FIRST_LINE_CHARS - 1] + "…"
                first.append(repr(text))
            if len(first) == MAX_FIRST_LINES:
                break
    return first


def _describe(selection: Mapping[str, Any]) -> str:
    parts = []
    for key, value in selection.items():
        if isinstance(value, list) and len(value) > 5:
            value = f"[{len(value)} items]"
        parts.append(f"{key}={value}")
    return ", ".join(parts)
