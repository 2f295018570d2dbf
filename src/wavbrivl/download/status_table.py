"""The download stage's artefact: one status row per manifest row (its writer's rows and reader).

The shard's table is ``results/download/<dataset>/<shard>.status.parquet`` with the columns of
:data:`STATUS_SCHEMA`; its ``status`` values are :mod:`wavbrivl.status`'s vocabulary.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from wavbrivl import status as st
from wavbrivl.download.journal import JournalEntry

REQUIRED_COLUMNS = ("clip_id", "url", "start_s", "end_s")

STATUS_SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("attempts", pa.int32()),
        ("bytes", pa.int64()),
        ("seconds", pa.float64()),
        ("file", pa.string()),
        ("section_start_s", pa.float64()),
        ("section_end_s", pa.float64()),  # NaN with a file: the whole source, to its end
        ("url", pa.string()),
        # Which source step gave the file, where its bytes are, and their SHA-256 (ok rows;
        # docs/stages.md, "download"). Tables written before these columns read as null.
        ("source", pa.string()),
        ("origin", pa.string()),
        ("sha256", pa.string()),
    ]
)
PROVENANCE_COLUMNS = ("source", "origin", "sha256")


@dataclass(frozen=True)
class Clip:
    """One manifest row, as the downloader sees it."""

    clip_id: Any  # str when safe; anything the CSV held otherwise
    url: Any
    start_s: Any
    end_s: Any
    source_id: Any = None  # the YouTube id mirrors name files by (manifest ``source_id``)


def read_status(path: str | os.PathLike) -> pd.DataFrame:
    """Read a status table, checking it has the columns of :data:`STATUS_SCHEMA`."""
    table = pq.read_table(path)
    for name in PROVENANCE_COLUMNS:
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(table.num_rows, pa.string()))
    missing = [name for name in STATUS_SCHEMA.names if name not in table.column_names]
    if missing:
        raise ValueError(f"{path}: not a download status table, missing columns {missing}")
    return table.select(STATUS_SCHEMA.names).cast(STATUS_SCHEMA).to_pandas()


def clips_from_rows(rows: pd.DataFrame) -> list[Clip]:
    """The shard's clips, in row order; a missing column or a duplicate id fails the shard."""
    missing = [c for c in REQUIRED_COLUMNS if c not in rows.columns]
    if missing:
        raise ValueError(f"download rows lack column(s) {missing}; have {list(rows.columns)}")
    ids = rows["clip_id"]
    duplicated = sorted({str(x) for x in ids[ids.duplicated() & ids.notna()]})
    if duplicated:
        raise ValueError(f"duplicate clip_id(s) in the shard's rows: {duplicated[:10]}")
    source_ids = rows["source_id"] if "source_id" in rows.columns else [None] * len(rows)
    return [
        Clip(_none_if_na(r.clip_id), _none_if_na(r.url), r.start_s, r.end_s, _none_if_na(sid))
        for r, sid in zip(
            rows[list(REQUIRED_COLUMNS)].itertuples(index=False), source_ids, strict=True
        )
    ]


def status_row(clip: Clip, status: str, reason: str, attempts: int) -> dict[str, Any]:
    """The clip's row without a file (a failure, or nothing attempted)."""
    return {
        "clip_id": clip.clip_id if isinstance(clip.clip_id, str) else _str_or_none(clip.clip_id),
        "status": status,
        "reason": reason,
        "attempts": attempts,
        "bytes": 0,
        "seconds": 0.0,
        "file": None,
        "section_start_s": None,
        "section_end_s": None,
        "url": _str_or_none(clip.url),
        "source": None,
        "origin": None,
        "sha256": None,
    }


def row_from_entry(
    clip: Clip, entry: JournalEntry, attempts: int, seconds: float
) -> dict[str, Any]:
    """The clip's row as its last journal entry left it."""
    row = status_row(clip, entry.status, entry.reason, attempts)
    row["seconds"] = float(seconds)
    if entry.status == st.OK:
        row.update(
            bytes=entry.bytes,
            file=entry.file,
            section_start_s=entry.section_start_s or 0.0,
            section_end_s=math.nan if entry.section_end_s is None else entry.section_end_s,
            source=entry.source,
            origin=entry.url,
            sha256=entry.sha256,
        )
    return row


def _none_if_na(value: Any) -> Any:
    try:
        return None if pd.isna(value) else value
    except (TypeError, ValueError):  # lists and other non-scalars
        return value


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)
