"""The extraction stage's entry, one shard: a square frame + 16 kHz mono audio per clip.

For each manifest clip (wavbrivl.extract.clip): carry a failed download through, else run
ffmpeg (wavbrivl.extract.argv) into a temp dir, which also describes the file; classify
what is wrong with it (no stream, too short), encode the frame as JPEG, and record one row
of the media Parquet (docs/architecture.md, "Artefacts"). Up to ``extract.batch_size``
consecutive clips share one ffmpeg process (wavbrivl.extract.batch), with the single-clip
path for every clip the batch does not settle; what a clip costs is in docs/ffmpeg.md. A
clip's failure becomes its row's status; it never stops the shard. The shard's batches are
extracted in a thread pool and its rows written at once.
"""

from __future__ import annotations

import functools
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, TextIO

import pandas as pd
import pyarrow as pa
from tqdm import tqdm

from wavbrivl import status as st
from wavbrivl.atomic import write_table_atomic
from wavbrivl.extract.batch import extract_batch
from wavbrivl.extract.clip import ClipJob, media_row, shown_id
from wavbrivl.extract.config import ExtractConfig
from wavbrivl.extract.media import MEDIA_SCHEMA, table_to_frame
from wavbrivl.ffmpeg_bin import ffmpeg_exe

# ~100 KB a clip (JPEG + FLAC): 128 rows make row groups of ~10-20 MB.
ROW_GROUP_SIZE = 128

# JPEG and FLAC are compressed already; the small columns get zstd.
COMPRESSION = {
    name: "none" if name in ("frame", "audio") else "zstd" for name in MEDIA_SCHEMA.names
}

MANIFEST_COLUMNS = ("clip_id", "start_s", "end_s")
DOWNLOAD_COLUMNS = ("clip_id", "status", "reason", "file", "section_start_s", "section_end_s")


@functools.cache
def ffmpeg_has_soxr(ffmpeg: str) -> bool:
    """Whether this ffmpeg build links libsoxr (better resampling than swr's default)."""
    result = subprocess.run(  # noqa: S603 - fixed argv, no shell
        [ffmpeg, "-hide_banner", "-version"], capture_output=True, stdin=subprocess.DEVNULL
    )
    return b"--enable-libsoxr" in result.stdout


def extract_shard(
    manifest_rows: pd.DataFrame,
    download_status: pd.DataFrame,
    download_dir: str | Path,
    out_path: str | Path,
    cfg: ExtractConfig,
    *,
    threads: int = 2,
    log: TextIO = sys.stderr,
) -> pd.DataFrame:
    """Extract every clip of the shard and write the media Parquet atomically to ``out_path``.

    Returns the written table as a DataFrame, one row per manifest row, in manifest order.
    Raises ``ValueError`` only for inputs that are wrong as a whole (missing columns,
    duplicate download rows); anything about one clip becomes that clip's row.
    """
    _require_columns(manifest_rows, MANIFEST_COLUMNS, "manifest rows")
    _require_columns(download_status, DOWNLOAD_COLUMNS, "download status")
    duplicated = download_status["clip_id"][download_status["clip_id"].duplicated()]
    if len(duplicated):
        raise ValueError(f"download status has duplicate clip ids: {sorted(set(duplicated))[:5]}")
    downloads = {row["clip_id"]: row for row in download_status.to_dict("records")}
    jobs = [
        ClipJob(row["clip_id"], row["start_s"], row["end_s"], downloads.get(row["clip_id"]))
        for row in manifest_rows.to_dict("records")
    ]

    ffmpeg = ffmpeg_exe()
    resampler = "soxr" if ffmpeg_has_soxr(ffmpeg) else "swr"
    extract = functools.partial(
        extract_batch,
        download_dir=Path(download_dir),
        cfg=cfg,
        ffmpeg=ffmpeg,
        resampler=resampler,
    )

    # Every clip's JPEG + FLAC bytes (~100 KB) stay in memory until the single write:
    # ~100 MB for a 1000-clip shard, which keeps the Parquet write simple and atomic.
    rows: list[dict[str, Any] | None] = [None] * len(jobs)
    seen: set[str] = set()
    todo: list[int] = []  # the jobs to extract, in manifest order
    for i, job in enumerate(jobs):
        if shown_id(job.clip_id) in seen:
            reason = "duplicate clip id in the manifest shard"
            rows[i] = media_row(shown_id(job.clip_id), st.ERROR, reason)
            continue
        seen.add(shown_id(job.clip_id))
        todo.append(i)
    # Consecutive clips share a process (wavbrivl.extract.batch): one decode each, one
    # process start-up per batch; the pool runs `threads` batches at once.
    size = cfg.batch_size  # at least 1 (the config's schema)
    batches = [todo[at : at + size] for at in range(0, len(todo), size)]
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        futures = {pool.submit(extract, [jobs[i] for i in batch]): batch for batch in batches}
        progress = tqdm(total=len(jobs), file=log, desc="extract", unit="clip", mininterval=2.0)
        progress.update(len(jobs) - len(todo))
        for future in as_completed(futures):
            batch = futures[future]
            for i, row in zip(batch, future.result(), strict=True):
                rows[i] = row
            progress.update(len(batch))
        progress.close()

    metadata = cfg.parquet_metadata(resampler)
    table = pa.Table.from_pylist(rows, schema=MEDIA_SCHEMA.with_metadata(metadata))
    write_table_atomic(
        out_path,
        table,
        row_group_size=ROW_GROUP_SIZE,
        compression=COMPRESSION,
        use_dictionary=["status", "reason", "notes"],
    )
    print(f"extract: {st.count_summary(table.column('status').to_pylist())}", file=log)
    return table_to_frame(table)


def _require_columns(frame: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lack columns {missing} (have {list(frame.columns)})")
