"""Reading embeddings joined to their media rows, shard by shard, in bounded memory.

Training needs, per clip, the audio (from the media shard) and the frozen image embedding
of its frame views (from the embedding shard). Both are keyed by clip_id. One shard's
embeddings are small (clips x views x D float32: ~800 x 4 x 2048 x 4 B = 26 MB at paper
scale) and are held while the media shard streams past in row batches.

Every embedding file must carry the fingerprint of the configured encoder: a file made by
another encoder, other weights or other preprocessing is refused, never mixed in.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from wavbrivl.embed.store import FingerprintMismatch, read_header

PathLike = str | os.PathLike


def check_fingerprint(path: PathLike, expected: str | None) -> None:
    """Raise :class:`FingerprintMismatch` naming ``path`` unless it carries ``expected``."""
    if expected is None:
        return
    header = read_header(path)
    if header.fingerprint != expected:
        raise FingerprintMismatch(
            f"{path}: made by encoder {header.meta.get('encoder', '?')!r} with fingerprint "
            f"{header.fingerprint[:16] or '(none)'}..., expected {expected[:16]}...; "
            "rerun the embedding stage for this encoder"
        )


def load_embeddings(path: PathLike) -> dict[str, np.ndarray]:
    """clip_id -> (V, D) float32 array of its views, in view order."""
    table = pq.read_table(path, columns=["clip_id", "view", "embedding"])
    dim = table.schema.field("embedding").type.list_size
    flat = table.column("embedding").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    matrix = flat.reshape(-1, dim).astype(np.float32, copy=False)  # (N, D)
    clip_ids = table.column("clip_id").to_pylist()
    views = table.column("view").to_numpy()
    order = np.lexsort((views, np.asarray(clip_ids, dtype=object).astype(str)))
    out: dict[str, list[np.ndarray]] = {}
    for i in order:
        out.setdefault(clip_ids[i], []).append(matrix[i])
    return {clip_id: np.stack(rows) for clip_id, rows in out.items()}


def iter_pairs(
    shards: Sequence[tuple[PathLike, PathLike]],
    *,
    fingerprint: str | None,
    media_columns: Sequence[str] = ("clip_id", "audio", "n_samples"),
    batch_rows: int = 256,
) -> Iterator[pd.DataFrame]:
    """Stream (embedding shard, media shard) pairs as DataFrames of joined rows.

    Each yielded frame has ``media_columns`` plus ``embeddings`` (one (V, D) float32 array
    per row). Only media rows with status ``ok`` that have an embedding are yielded.
    """
    columns = list(dict.fromkeys(["clip_id", "status", *media_columns]))
    for embedding_path, media_path in shards:
        check_fingerprint(embedding_path, fingerprint)
        embeddings = load_embeddings(embedding_path)
        media = pq.ParquetFile(media_path)
        for batch in media.iter_batches(batch_size=batch_rows, columns=columns):
            frame = batch.to_pandas()
            frame = frame[(frame["status"] == "ok") & frame["clip_id"].isin(embeddings.keys())]
            if frame.empty:
                continue
            frame = frame[list(media_columns)].reset_index(drop=True)
            frame["embeddings"] = [embeddings[c] for c in frame["clip_id"]]
            yield frame
