"""VGGSound CSV: headerless rows ``youtube_id,start_seconds,label,split``.

A clip is ``[start, start + clip_seconds)``. Labels may contain commas; they are quoted in
the published file, but unquoted rows are accepted too: with more than four fields, the
first two are id and start, the last is the split and the middle ones form the label.
"""

from __future__ import annotations

from collections.abc import Collection
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

VGGSOUND_SPLITS = ("train", "test")


def parse_vggsound_fields(
    fields: list[str], known_splits: Collection[str] | None
) -> tuple[str, float, str, str]:
    """``(source_id, start_s, label, split)`` of one record, or :class:`MalformedRow`."""
    require_content(fields)
    if len(fields) < 4:
        raise MalformedRow(f"expected 4 fields (id, start, label, split), got {len(fields)}")
    source_id = fields[0].strip()
    start_s = parse_seconds(fields[1], "start")
    label = ",".join(fields[2:-1]).strip()
    split = fields[-1].strip()
    if not label:
        raise MalformedRow("empty label")
    if not split:
        raise MalformedRow("empty split")
    if known_splits is not None and split not in known_splits:
        raise MalformedRow(f"split {split!r} is not one of {sorted(known_splits)}")
    return source_id, start_s, label, split


def read_vggsound_csv(
    path: str | Path,
    *,
    clip_seconds: float = 10.0,
    known_splits: Collection[str] | None = VGGSOUND_SPLITS,
) -> tuple[pd.DataFrame, ParseReport]:
    """Parse a VGGSound CSV into columns ``clip_id, source_id, start_s, end_s, labels, split,
    line`` (``labels`` a one-element list); malformed and duplicate rows are counted, skipped.

    ``known_splits=None`` accepts any non-empty split name.
    """
    if not clip_seconds > 0:
        raise ValueError(f"clip_seconds must be > 0, got {clip_seconds}")
    report = ParseReport(source=Path(path).name)
    rows = RowCollector(report)
    # No skipinitialspace: an unquoted "people marching, sound" must keep its space.
    for line, fields in iter_csv_records(path, skipinitialspace=False):
        try:
            source_id, start_s, label, split = parse_vggsound_fields(fields, known_splits)
        except MalformedRow as err:
            rows.reject(line, str(err))
            continue
        if len(fields) > 4:  # unquoted commas in the label: counted and shown
            report.add_rescued(line, label)
        rows.add(line, source_id, start_s, start_s + clip_seconds, [label], split)
    return rows.frame(), report
