"""AudioSet segment CSVs and the class index.

Segments files (``eval_segments.csv``, ``balanced_train_segments.csv``, ...) start with three
``#`` comment lines, then rows ``YTID, start_seconds, end_seconds, "mid1,mid2,..."`` with a
space after each comma. ``class_labels_indices.csv`` maps MIDs to display names.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from wavbrivl.manifest.parsing import (
    MalformedRow,
    ParseReport,
    RowCollector,
    iter_csv_records,
    parse_seconds,
    require_content,
)

CLASS_LABEL_COLUMNS = ("index", "mid", "display_name")


def parse_audioset_fields(fields: list[str]) -> tuple[str, float, float, list[str]]:
    """``(ytid, start_s, end_s, mids)`` of one record, or :class:`MalformedRow`.

    More than four fields means an unquoted label list: fields 4.. are all MIDs.
    """
    require_content(fields)
    if len(fields) < 4:
        raise MalformedRow(
            f"expected 4 fields (YTID, start_seconds, end_seconds, positive_labels), got {len(fields)}"
        )
    source_id = fields[0].strip()
    start_s = parse_seconds(fields[1], "start")
    end_s = parse_seconds(fields[2], "end")
    if end_s <= start_s:
        raise MalformedRow(f"end {fields[2].strip()!r} is not after start {fields[1].strip()!r}")
    # Stray quotes a spreadsheet left around a MID ('"/m/068hy', '/m/0jbk"') are removed.
    mids = [clean_mid(mid) for field in fields[3:] for mid in field.split(",")]
    mids = [mid for mid in mids if mid]
    if not mids:
        raise MalformedRow("empty label")
    return source_id, start_s, end_s, mids


def clean_mid(text: str) -> str:
    """A label id without surrounding whitespace and stray quotes (no MID contains a quote)."""
    return text.strip().strip("\"'").strip()


MANGLED_FRACTION = 0.5  # more unknown labels than this: the file is refused
MAX_UNKNOWN_SHOWN = 5


def check_known_labels(
    df: pd.DataFrame, label_names: Mapping[str, str], *, source: str, labels_source: str
) -> list[str]:
    """Log lines about the labels of ``df`` that ``label_names`` does not know (none: ``[]``).

    Raises ``ValueError`` ("<source> looks mangled: N of M labels unknown to <labels file>;
    first: ...") when more than half of all labels are unknown: such a file parses, yet its
    labels would match nothing.
    """
    n_labels = n_unknown = 0
    first: list[str] = []
    for line, labels in zip(df["line"], df["labels"], strict=True):
        for label in labels:
            n_labels += 1
            if label not in label_names:
                n_unknown += 1
                if len(first) < MAX_UNKNOWN_SHOWN:
                    first.append(f"line {int(line)}: {label!r}")
    if not n_unknown:
        return []
    counted = f"{n_unknown} of {n_labels} labels unknown to {labels_source}"
    if n_unknown > MANGLED_FRACTION * n_labels:
        raise ValueError(f"{source} looks mangled: {counted}; first: {', '.join(first)}")
    lines = [f"{source}: {counted} (kept as they are); first:"]
    return lines + [f"  {example}" for example in first]


def read_audioset_segments(path: str | Path, *, split: str) -> tuple[pd.DataFrame, ParseReport]:
    """Parse a segments CSV into ``clip_id, source_id, start_s, end_s, labels, split, line``.

    ``labels`` holds MIDs; every row gets ``split`` (the file does not say which split it is).
    """
    if not split:
        raise ValueError(f"{path}: an AudioSet segments file needs a split name")
    report = ParseReport(source=Path(path).name)
    rows = RowCollector(report)
    for line, fields in iter_csv_records(path, skipinitialspace=True):
        try:
            source_id, start_s, end_s, mids = parse_audioset_fields(fields)
        except MalformedRow as err:
            rows.reject(line, str(err))
            continue
        rows.add(line, source_id, start_s, end_s, mids, split)
    return rows.frame(), report


def read_class_labels(path: str | Path) -> dict[str, str]:
    """``{mid: display_name}`` from ``class_labels_indices.csv`` (header ``index,mid,display_name``)."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh, skipinitialspace=True)
        header = [name.strip() for name in reader.fieldnames or []]
        missing = [col for col in CLASS_LABEL_COLUMNS[1:] if col not in header]
        if missing:
            raise ValueError(
                f"{path}: expected a header with columns {list(CLASS_LABEL_COLUMNS)}, "
                f"got {header}; missing {missing}"
            )
        reader.fieldnames = header
        names: dict[str, str] = {}
        for record in reader:
            mid = (record["mid"] or "").strip()
            name = (record["display_name"] or "").strip()
            if not mid or not name:
                raise ValueError(f"{path} line {reader.line_num}: empty mid or display_name")
            names.setdefault(mid, name)
    return names


def default_split_name(path: str | Path) -> str:
    """``eval_segments.csv`` -> ``eval``; ``balanced_train_segments.csv`` -> ``balanced_train``."""
    stem = Path(path).name.split(".")[0]
    return stem.removesuffix("_segments") or stem
