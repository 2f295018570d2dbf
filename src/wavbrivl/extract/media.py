"""The media Parquet (one shard of the extraction stage): its schema and every reader of it.

One row per manifest clip. ``frame`` (JPEG, square) and ``audio`` (FLAC, mono,
:data:`SAMPLE_RATE`) are set only when ``status == "ok"``; the file metadata ``wavbrivl.*``
records the frame size, sample rate, frame policy and JPEG quality the shard was made with.
Consumers read shards through this module, never through the Parquet schema by hand.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import soundfile as sf
from PIL import Image

from wavbrivl.status import OK

PathLike = str | os.PathLike

# The audio of every media shard: mono at WavLM's rate. The one definition in the package.
SAMPLE_RATE = 16_000

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


def decode_frame(jpeg: bytes) -> Image.Image:
    """The frame as an RGB PIL image (fully loaded, detached from the bytes)."""
    with Image.open(io.BytesIO(jpeg)) as image:
        return image.convert("RGB")


def decode_audio(flac: bytes, expect_rate: int | None = SAMPLE_RATE) -> np.ndarray:
    """The audio as float32 ``(n,)`` in [-1, 1]; ``expect_rate`` guards against a wrong shard."""
    samples, rate = sf.read(io.BytesIO(flac), dtype="float32", always_2d=True)  # (n, C)
    if samples.shape[1] != 1:
        raise ValueError(f"expected mono audio, got {samples.shape[1]} channels")
    if expect_rate is not None and rate != expect_rate:
        raise ValueError(f"expected {expect_rate} Hz audio, got {rate} Hz")
    return np.ascontiguousarray(samples[:, 0])


def count_media_rows(path: PathLike) -> int:
    """How many clips (rows, whatever their status) a shard holds, from its footer alone."""
    return pq.ParquetFile(path).metadata.num_rows


def iter_media_rows(
    path: PathLike,
    columns: Sequence[str] = (),
    *,
    ok_only: bool = False,
    batch_rows: int = 256,
) -> Iterator[pd.DataFrame]:
    """Stream a shard's rows in batches: ``clip_id``, ``status``, ``reason`` and ``columns``.

    ``ok_only`` keeps the clips whose frame and audio are there (status ``ok``). Memory is
    bounded by ``batch_rows``, whatever the shard's size.
    """
    wanted = list(dict.fromkeys(["clip_id", "status", "reason", *columns]))
    shard = pq.ParquetFile(path)
    for batch in shard.iter_batches(batch_size=batch_rows, columns=wanted):
        frame = table_to_frame(pa.Table.from_batches([batch]))
        if ok_only:
            frame = frame[frame["status"] == OK].reset_index(drop=True)
        if not frame.empty:
            yield frame


def collect_clip_audio(
    paths: Iterable[PathLike], clip_ids: Iterable[str] | None = None
) -> tuple[dict[str, bytes], dict[str, str]]:
    """``(clip_id -> FLAC bytes, clip_id -> reason)`` for ``clip_ids`` (default: every clip).

    A clip lands in the first dict when its row is ``ok`` with audio, else in the second with
    the reason (its status and reason, or "not in the media shards"). A clip in two rows is
    an error naming the file. Decode with :func:`decode_audio` when needed: bytes are about a
    tenth of the decoded samples.
    """
    wanted = None if clip_ids is None else set(clip_ids)
    audio: dict[str, bytes] = {}
    skipped: dict[str, str] = {}
    for path in paths:
        for frame in iter_media_rows(path, ["audio"]):
            for clip_id, status, reason, flac in frame[
                ["clip_id", "status", "reason", "audio"]
            ].itertuples(index=False):
                if wanted is not None and clip_id not in wanted:
                    continue
                if clip_id in audio or clip_id in skipped:
                    raise ValueError(f"{path}: clip {clip_id!r} appears twice in the media shards")
                if status == OK and flac:
                    audio[clip_id] = flac
                else:
                    skipped[clip_id] = (
                        f"media status {status}: {reason}" if status != OK else "no audio"
                    )
    for clip_id in sorted((wanted or set()) - audio.keys() - skipped.keys()):
        skipped[clip_id] = "not in the media shards"
    return audio, skipped
