"""The media Parquet (one shard of the extraction stage): schema, reader and decoders.

One row per manifest clip. ``frame`` (JPEG, square) and ``audio`` (FLAC, mono) are set only
when ``status == "ok"``; the file metadata ``wavbrivl.*`` records the frame size, sample
rate, frame policy and JPEG quality the shard was made with.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import soundfile as sf
from PIL import Image

MEDIA_SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()),
        ("status", pa.string()),  # wavbrivl.status vocabulary
        ("reason", pa.string()),  # why not ok ("" when ok)
        ("notes", pa.string()),  # non-fatal facts, "; "-separated ("" when none)
        ("frame", pa.binary()),  # JPEG, frame_size x frame_size RGB
        ("frame_time_s", pa.float64()),  # source time of the frame
        ("audio", pa.binary()),  # FLAC, mono, 16-bit
        ("n_samples", pa.int64()),
        ("sample_rate", pa.int32()),
        ("source_width", pa.int32()),  # as displayed (pixel aspect and rotation applied)
        ("source_height", pa.int32()),
        ("source_sample_rate", pa.int32()),
        ("source_channels", pa.int32()),
    ]
)

# Integer columns hold nulls for failed clips: keep them integer (pandas' nullable types)
# instead of letting pandas turn them into floats.
_NULLABLE_INTS = {pa.int64(): pd.Int64Dtype(), pa.int32(): pd.Int32Dtype()}


def table_to_frame(table: pa.Table) -> pd.DataFrame:
    return table.to_pandas(types_mapper=_NULLABLE_INTS.get)


def read_media(path: str | os.PathLike, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Read a media Parquet (or only ``columns`` of it: skip ``audio`` to read frames fast)."""
    return table_to_frame(pq.read_table(path, columns=list(columns) if columns else None))


def read_media_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ``wavbrivl.*`` file metadata (frame size, sample rate, frame policy, ...)."""
    raw = pq.read_schema(path).metadata or {}
    return {
        key.decode(): value.decode() for key, value in raw.items() if key.startswith(b"wavbrivl.")
    }


def decode_frame(jpeg: bytes) -> Image.Image:
    """The frame as an RGB PIL image (fully loaded, detached from the bytes)."""
    with Image.open(io.BytesIO(jpeg)) as image:
        return image.convert("RGB")


def decode_frame_array(jpeg: bytes) -> np.ndarray:
    """The frame as uint8 ``(H, W, 3)``."""
    return np.asarray(decode_frame(jpeg))


def decode_audio(flac: bytes, expect_rate: int | None = None) -> np.ndarray:
    """The audio as float32 ``(n,)`` in [-1, 1]; ``expect_rate`` guards against a wrong shard."""
    samples, rate = sf.read(io.BytesIO(flac), dtype="float32", always_2d=True)  # (n, C)
    if samples.shape[1] != 1:
        raise ValueError(f"expected mono audio, got {samples.shape[1]} channels")
    if expect_rate is not None and rate != expect_rate:
        raise ValueError(f"expected {expect_rate} Hz audio, got {rate} Hz")
    return np.ascontiguousarray(samples[:, 0])
