"""Download one shard's clips with yt-dlp: a thread pool, resumable through the journal.

Per clip: decide from the journal whether any request is needed at all (finished clips and
permanent failures are skipped), then try up to ``max_attempts`` times with exponential
backoff. yt-dlp writes into the clip's own ``.tmp-<clip_id>/`` folder; a file is checked
with ffmpeg, journalled, and only then renamed to ``<clip_id>.<ext>``, so a killed job never
leaves a half file under a finished name (and a journal line without its file is re-done).
The shard's circuit breaker (:mod:`wavbrivl.download.breaker`) stops all requests once the
source keeps refusing; the clips not yet asked are ``deferred`` and the log says what to do.
"""

from __future__ import annotations

import math
import shutil
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, TextIO

import pandas as pd
import pyarrow as pa
from tqdm import tqdm

from wavbrivl import status as st
from wavbrivl.atomic import write_table_atomic
from wavbrivl.clip_ids import UnsafeClipId, check_clip_id
from wavbrivl.download.breaker import (
    CircuitBreaker,
    blocked_advice,
    mark_for_retry,
    settle_retry_marker,
)
from wavbrivl.download.chain import ChainRunner
from wavbrivl.download.journal import JOURNAL_NAME, Journal, JournalEntry, group_by_clip
from wavbrivl.download.options import DownloadConfig, span_problem, url_problem
from wavbrivl.download.sources import Step, UrlStep, mirror_steps, url_step
from wavbrivl.download.status_table import (
    STATUS_SCHEMA,
    Clip,
    clips_from_rows,
    row_from_entry,
    status_row,
)
from wavbrivl.download.worker import TMP_PREFIX, ClipWorker, Pacer


def download_shard(
    rows: pd.DataFrame,
    out_dir: Path,
    status_path: Path,
    cfg: DownloadConfig,
    *,
    threads: int = 4,
    log: TextIO | None = None,
    sources: Sequence[Step] | None = None,
    index_dir: Path | None = None,
) -> pd.DataFrame:
    """Download every clip of ``rows`` into ``out_dir``; write and return the status table.

    ``rows`` needs ``clip_id``, ``url``, ``start_s``, ``end_s``. The table has one row per
    input row, in input order (columns: :data:`STATUS_SCHEMA`). A rerun skips clips already
    ok and permanent failures, and retries the rest. Progress and the per-status summary go
    to ``log`` (default: ``sys.stderr`` at call time).

    ``sources`` are the dataset's source steps (:func:`wavbrivl.download.sources.parse_source`;
    default: the rows' URLs only). With mirror steps, ``rows`` also need ``source_id`` (the
    YouTube id mirror files are named by); tar shard indexes are cached in ``index_dir``.
    """
    log = sys.stderr if log is None else log
    clips = clips_from_rows(rows)
    out_dir = Path(out_dir).resolve()  # yt-dlp must see the same folder whatever its cwd
    out_dir.mkdir(parents=True, exist_ok=True)
    with Journal(out_dir / JOURNAL_NAME) as journal:
        contents = journal.open()  # takes the shard's lock before anything is removed
        if contents.bad_lines or contents.torn_tail_bytes:
            print(
                f"download: {journal.path}: skipped corrupt line(s) {contents.bad_lines[:10]}, "
                f"cut a torn tail of {contents.torn_tail_bytes} bytes",
                file=log,
            )
        _remove_stale_temp_dirs(out_dir)
        history = group_by_clip(contents.entries)

        steps = list(sources) if sources else [UrlStep(name="url")]
        url = url_step(steps)
        mirrors = mirror_steps(steps)
        if mirrors:
            results: list[dict[str, Any] | None] = [
                _decide_reuse(clip, history, out_dir, {s.name for s in mirrors}) for clip in clips
            ]
        else:
            results = [_decide_offline(clip, history, out_dir, cfg) for clip in clips]
        todo = [i for i, row in enumerate(results) if row is None]
        breaker = CircuitBreaker(cfg.breaker_after)
        worker = ClipWorker(
            out_dir,
            cfg,
            journal,
            history,
            Pacer(cfg.pace_s),
            breaker,
            source_name=url.name if url else "url",
        )

        def fetch_url(clip: Clip) -> dict[str, Any]:
            return _decide_offline(clip, history, out_dir, cfg) or worker.download(clip)

        runner = ChainRunner(
            steps,
            out_dir,
            journal,
            history,
            ffmpeg=worker.ffmpeg,
            require_video=cfg.require_video,
            url_fetch=fetch_url if url else None,
            index_dir=index_dir,
        )
        for problem in runner.index_problems():
            print(f"download: {problem}", file=log)
        runner.prepare([clips[i] for i in todo])
        with tqdm(
            total=len(clips),
            initial=len(clips) - len(todo),
            desc=f"download {out_dir.name}",
            unit="clip",
            file=log,
            mininterval=10.0,
            ascii=True,
        ) as bar:
            _run_pool(runner.run, clips, todo, results, max(1, int(threads)), bar)

    table = pa.Table.from_pylist(results, schema=STATUS_SCHEMA)
    write_table_atomic(status_path, table)
    statuses = table["status"].to_pylist()
    if breaker.tripped:
        # The job still succeeds: the table is complete, and the retry marker makes the next
        # Snakemake run redo this shard, which asks only for the clips not yet ok.
        n_deferred = statuses.count(st.DEFERRED)
        advice = blocked_advice(str(out_dir), n_deferred, breaker, str(status_path))
        mark_for_retry(status_path, advice)
        print(advice, file=log)
    else:
        settle_retry_marker(status_path)
    print(f"download: {out_dir}: {st.count_summary(statuses)}", file=log)
    return table.to_pandas()


def _run_pool(
    download: Callable[[Clip], dict[str, Any]],
    clips: list[Clip],
    todo: list[int],
    results: list[dict[str, Any] | None],
    threads: int,
    bar: tqdm,
) -> None:
    if not todo:
        return
    pool = ThreadPoolExecutor(max_workers=min(threads, len(todo)), thread_name_prefix="download")
    try:
        futures = {pool.submit(download, clips[i]): i for i in todo}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            bar.update(1)
    finally:
        # On an interrupt, do not start queued clips; running ones end by their own timeouts.
        pool.shutdown(wait=True, cancel_futures=True)


def _decide_offline(
    clip: Clip, history: dict[str, list[JournalEntry]], out_dir: Path, cfg: DownloadConfig
) -> dict[str, Any] | None:
    """The clip's status row when no request is needed, or ``None`` when it must be downloaded."""
    try:
        check_clip_id(clip.clip_id)
    except UnsafeClipId as exc:
        # Never used in a path, never journalled: nothing was attempted.
        return status_row(clip, st.ERROR, str(exc), attempts=0)
    past = [e for e in history.get(clip.clip_id, []) if e.url == clip.url]
    problem = url_problem(clip.url, cfg) or span_problem(clip.start_s, clip.end_s)
    if problem:
        return status_row(clip, st.ERROR, problem, attempts=len(past))
    if not past:
        return None
    last = past[-1]
    if last.status == st.OK and _file_intact(out_dir, last) and _covers(last, clip):
        return row_from_entry(clip, last, attempts=len(past), seconds=0.0)
    if last.status not in st.RETRIABLE and last.status != st.OK and not cfg.retry_permanent:
        return row_from_entry(clip, last, attempts=len(past), seconds=0.0)
    return None


def _decide_reuse(
    clip: Clip, history: dict[str, list[JournalEntry]], out_dir: Path, mirror_names: set[str]
) -> dict[str, Any] | None:
    """With mirrors: the clip's row when its last file (from a mirror of this chain or from
    its URL) is still intact, so nothing is read or hashed again; else ``None``."""
    try:
        check_clip_id(clip.clip_id)
    except UnsafeClipId as exc:
        return status_row(clip, st.ERROR, str(exc), attempts=0)
    entries = history.get(clip.clip_id) or []
    if not entries:
        return None
    last = entries[-1]
    ours = last.source in mirror_names or (clip.url is not None and last.url == clip.url)
    if last.status == st.OK and ours and _file_intact(out_dir, last) and _covers(last, clip):
        same = sum(e.url == last.url for e in entries)
        return row_from_entry(clip, last, attempts=same, seconds=0.0)
    return None


def _file_intact(out_dir: Path, entry: JournalEntry) -> bool:
    """The journalled file is still there with the size it had (a kill may fall in between)."""
    if not entry.file:
        return False
    try:
        return (out_dir / entry.file).stat().st_size == entry.bytes
    except OSError:
        return False


def _covers(entry: JournalEntry, clip: Clip, tolerance_s: float = 1e-3) -> bool:
    """Does the file's span still contain the clip (the manifest may have changed end_s)?"""
    start = entry.section_start_s or 0.0
    end = math.inf if entry.section_end_s is None else entry.section_end_s
    return start <= float(clip.start_s) + tolerance_s and end >= float(clip.end_s) - tolerance_s


def _remove_stale_temp_dirs(out_dir: Path) -> None:
    """A killed run's per-clip temporary folders (we hold the shard lock, so none is live)."""
    for path in out_dir.iterdir():
        if path.name.startswith(TMP_PREFIX) and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
