"""Reading an embedding shard back: its vectors by clip, after checking who made them.

Training joins them to the media rows by clip_id (wavbrivl.train.streams). One shard's
embeddings are small (clips x views x D float32: ~800 x 4 x 2048 x 4 B = 26 MB at paper
scale) and are held while the media shard streams past in row batches.

Every embedding file must carry the fingerprint of the configured encoder: a file made by
another encoder, other weights or other preprocessing is refused, never mixed in.
"""

from __future__ import annotations

import os

import numpy as np
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
