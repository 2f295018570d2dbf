"""``used_clips.csv``: the exact clips a dataset's download produced, with the SHA-256 of
each file's bytes and the source that gave it, so a paper can publish the set it trained on.

Gathered from the shards' status tables (hashes are taken once, when a file is placed, and
carried in the ``sha256`` column); an ok row from a journal older than that column is hashed
here from the shard's media folder (docs/stages.md, "download").
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from wavbrivl import status as st
from wavbrivl.atomic import write_text_atomic
from wavbrivl.download.status_table import read_status
from wavbrivl.hashing import sha256_of

USED_COLUMNS = ("clip_id", "source", "sha256")
STATUS_SUFFIX = ".status.parquet"


def media_dir_of(status_path: str | os.PathLike) -> Path:
    """``results/download/<ds>/<shard>.status.parquet`` -> ``results/download/<ds>/<shard>``."""
    path = Path(status_path)
    if not path.name.endswith(STATUS_SUFFIX):
        raise ValueError(f"{path}: not a download status table name (*{STATUS_SUFFIX})")
    return path.with_name(path.name[: -len(STATUS_SUFFIX)])


def used_clips(status_paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """One row per ok clip of all shards, sorted by clip id: clip_id, source, sha256."""
    rows = []
    for path in status_paths:
        table = read_status(path)
        for row in table[table["status"] == st.OK].itertuples(index=False):
            digest = row.sha256
            if not isinstance(digest, str) or not digest:
                digest = sha256_of(media_dir_of(path) / row.file)
            source = row.source if isinstance(row.source, str) and row.source else "url"
            rows.append((row.clip_id, source, digest))
    df = pd.DataFrame(rows, columns=list(USED_COLUMNS))
    return df.sort_values("clip_id").reset_index(drop=True)  # clip ids are unique


def write_used_clips(status_paths: Sequence[str | os.PathLike], out_path: str | os.PathLike) -> int:
    """Write ``used_clips.csv`` atomically; returns the number of clips listed."""
    df = used_clips(status_paths)
    buffer = io.StringIO()
    df.to_csv(buffer, index=False, lineterminator="\n")
    write_text_atomic(Path(out_path), buffer.getvalue())
    return len(df)
