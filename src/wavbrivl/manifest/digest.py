"""Content digests of a manifest, per shard, for the workflow's rerun decisions.

Adding clips rewrites the whole manifest file, but only the shards the new clips land in
should be fetched and extracted again. The workflow reads the manifest with ``ancient()``
(its modification time alone triggers nothing) and passes each shard's digest as a rule
parameter, so a shard's jobs rerun exactly when its rows change.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq

# What the download and extraction of a clip depend on.
SHARD_COLUMNS = ["clip_id", "url", "start_s", "end_s", "shard"]
# What training reads from the manifest besides the media: splits and labels.
TRAINING_COLUMNS = ["clip_id", "labels", "label_names", "split", "shard"]


def _digest(rows: list[dict]) -> str:
    text = json.dumps(sorted(rows, key=lambda r: r["clip_id"]), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def shard_digests(path: str | Path) -> dict[str, str]:
    """Shard name -> digest of its rows' (clip_id, url, start_s, end_s)."""
    rows = pq.read_table(path, columns=SHARD_COLUMNS).to_pylist()
    by_shard: dict[str, list[dict]] = {}
    for row in rows:
        by_shard.setdefault(row.pop("shard"), []).append(row)
    return {shard: _digest(shard_rows) for shard, shard_rows in by_shard.items()}


def training_digest(path: str | Path) -> str:
    """Digest of everything training reads from the manifest (clips, labels, splits)."""
    return _digest(pq.read_table(path, columns=TRAINING_COLUMNS).to_pylist())
