"""Content digests of a manifest, per shard, for the workflow's rerun decisions.

Adding clips rewrites the whole manifest file, but only the shards the new clips land in
should be fetched and extracted again. The workflow reads the manifest with ``ancient()``
(its modification time alone triggers nothing) and passes each shard's digest as a rule
parameter, so a shard's jobs rerun exactly when its rows change.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

# What the download and extraction of a clip depend on.
SHARD_COLUMNS = ["clip_id", "url", "start_s", "end_s", "shard"]
# What training reads from the manifest besides the media: splits and labels.
TRAINING_COLUMNS = ["clip_id", "labels", "label_names", "split", "shard"]


def _row_hash_digest(frame: pd.DataFrame) -> str:
    """SHA-256 over pandas' fixed-key 64-bit row hashes, in the frame's order."""
    row_hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return hashlib.sha256(row_hashes.tobytes()).hexdigest()[:16]


def shard_digests(path: str | Path) -> dict[str, str]:
    """Shard name -> digest of its rows' (clip_id, url, start_s, end_s).

    Vectorised (planning reads this for every dataset): one 64-bit hash per row with pandas'
    fixed-key row hash, then SHA-256 over the shard's row hashes in clip-id order.
    """
    frame = pq.read_table(path, columns=SHARD_COLUMNS).to_pandas()
    frame = frame.sort_values("clip_id", kind="stable")
    return {
        shard: _row_hash_digest(rows.drop(columns="shard"))
        for shard, rows in frame.groupby("shard", sort=True)
    }


def training_digest(path: str | Path) -> str:
    """Digest of everything training reads from the manifest (clips, labels, splits)."""
    frame = pq.read_table(path, columns=TRAINING_COLUMNS).to_pandas()
    for column in ("labels", "label_names"):  # lists -> one string each (unit separator)
        frame[column] = ["\x1f".join(values) for values in frame[column]]
    return _row_hash_digest(frame.sort_values("clip_id", kind="stable"))
