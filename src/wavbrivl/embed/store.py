"""The embedding Parquet format: writing it in bounded memory, and reading its header.

Schema: ``clip_id`` string, ``view`` int16 (0 = the clean frame, 1.. = augmented views),
``embedding`` ``fixed_size_list<float32>[D]``. The file's key-value metadata says which
encoder made it (``wavbrivl.encoder``, ``wavbrivl.fingerprint``, ``wavbrivl.dim``,
``wavbrivl.image_size``, ``wavbrivl.box_mode``, ``wavbrivl.preprocessing``, ``wavbrivl.n_views``) and which clips
were skipped and why (``wavbrivl.skipped``, JSON), so a reader can refuse to mix files made by
different encoders.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

META_PREFIX = "wavbrivl."


def embedding_schema(dim: int, metadata: dict[str, str] | None = None) -> pa.Schema:
    fields = [
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("view", pa.int16(), nullable=False),
        pa.field("embedding", pa.list_(pa.float32(), dim), nullable=False),
    ]
    encoded = {f"{META_PREFIX}{k}".encode(): str(v).encode() for k, v in (metadata or {}).items()}
    return pa.schema(fields, metadata=encoded)


@dataclass
class EmbeddingHeader:
    """What an embedding file says about itself."""

    path: Path
    num_rows: int
    dim: int
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        return self.meta.get("fingerprint", "")

    @property
    def skipped(self) -> dict[str, str]:
        return json.loads(self.meta.get("skipped", "{}"))


def read_header(path: str | os.PathLike) -> EmbeddingHeader:
    pf = pq.ParquetFile(path)
    schema = pf.schema_arrow
    emb_type = schema.field("embedding").type
    # Encoder facts sit in the Arrow schema; `skipped` is added to the footer at close.
    raw = {**(schema.metadata or {}), **(pf.metadata.metadata or {})}
    meta = {
        k.decode()[len(META_PREFIX) :]: v.decode()
        for k, v in raw.items()
        if k.decode().startswith(META_PREFIX)
    }
    return EmbeddingHeader(Path(path), pf.metadata.num_rows, emb_type.list_size, meta)


class FingerprintMismatch(ValueError):
    """Embedding files made by another encoder than the one expected, or by two encoders."""


def read_common_header(paths: Sequence[str | os.PathLike]) -> EmbeddingHeader:
    """The header the embedding files share: the first file's, once every other file is
    checked to come from the same encoder (fingerprint) with the same size.

    This is how later stages learn the image encoder's fingerprint and dimension: from the
    files, not by rebuilding the encoder. Files of two encoders are refused, naming both.
    """
    if not paths:
        raise ValueError("no embedding files to read a header from")
    first = read_header(paths[0])
    for path in paths[1:]:
        header = read_header(path)
        if header.fingerprint != first.fingerprint or header.dim != first.dim:
            raise FingerprintMismatch(
                f"{path} and {first.path} were made by different image encoders "
                f"(fingerprints {header.fingerprint[:16] or '(none)'}... and "
                f"{first.fingerprint[:16] or '(none)'}..., {header.dim} and {first.dim} "
                "dimensions); rerun the embedding stage so that every shard has the same encoder"
            )
    return first


def read_embeddings(
    paths: Sequence[str | os.PathLike], *, view: int = 0
) -> tuple[list[str], np.ndarray]:
    """``(clip_ids, (N, D) float32)``: the rows of one ``view`` (0 = the clean frame) of
    embedding files that share a header (check it with :func:`read_common_header`)."""
    ids: list[str] = []
    blocks: list[np.ndarray] = []
    dim = 0
    for path in paths:
        table = pq.read_table(path, columns=["clip_id", "view", "embedding"])
        dim = table.schema.field("embedding").type.list_size
        keep = np.asarray(table.column("view").to_numpy()) == view
        flat = table.column("embedding").combine_chunks().flatten().to_numpy()
        blocks.append(flat.reshape(-1, dim)[keep].astype(np.float32))
        ids += [c for c, k in zip(table.column("clip_id").to_pylist(), keep, strict=True) if k]
    if not blocks:
        return [], np.zeros((0, 0), np.float32)
    return ids, np.concatenate(blocks)


class EmbeddingWriter:
    """Append batches of embeddings; the file appears under its name only on ``close()``.

    Rows go out in row groups as they come, so memory stays bounded by one batch however
    large the shard. The ``skipped`` map and final metadata are written at close: Parquet
    keeps key-value metadata in the footer, which is written last.
    """

    def __init__(self, target: str | os.PathLike, dim: int, metadata: dict[str, str]):
        self.target = Path(target)
        self.dim = dim
        self.metadata = dict(metadata, dim=str(dim))
        self.skipped: dict[str, str] = {}
        self.target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{self.target.name}.", suffix=".tmp", dir=self.target.parent
        )
        os.close(fd)
        self._tmp = Path(tmp)
        self._writer: pq.ParquetWriter | None = None
        self.rows = 0

    def _schema(self) -> pa.Schema:
        return embedding_schema(self.dim, self.metadata)

    def write(self, clip_ids: list[str], views: list[int], embeddings: np.ndarray) -> None:
        """Write one batch: ``embeddings`` (N, D) float32 rows for (clip_id, view) pairs."""
        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2 or embeddings.shape[1] != self.dim:
            raise ValueError(
                f"expected embeddings of shape (N, {self.dim}), got {embeddings.shape}"
            )
        if not (len(clip_ids) == len(views) == len(embeddings)):
            raise ValueError("clip_ids, views and embeddings differ in length")
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._tmp, self._schema())
        flat = pa.array(embeddings.reshape(-1), type=pa.float32())
        table = pa.table(
            {
                "clip_id": pa.array(clip_ids, pa.string()),
                "view": pa.array(views, pa.int16()),
                "embedding": pa.FixedSizeListArray.from_arrays(flat, self.dim),
            },
            schema=self._schema().remove_metadata(),
        )
        self._writer.write_table(table.cast(self._writer.schema.remove_metadata()))
        self.rows += len(clip_ids)

    def skip(self, clip_id: str, reason: str) -> None:
        self.skipped[clip_id] = reason

    def close(self) -> None:
        """Finish the file (an empty shard gives a valid empty file) and move it into place."""
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._tmp, self._schema())
        # Which clips were skipped is known only now; the footer is written last.
        self._writer.add_key_value_metadata(
            {f"{META_PREFIX}skipped": json.dumps(self.skipped, sort_keys=True)}
        )
        self._writer.close()
        with open(self._tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(self._tmp, self.target)

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> EmbeddingWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
