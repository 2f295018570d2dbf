"""Download one shard's clips with yt-dlp: a thread pool, resumable through the journal.

Per clip: decide from the journal whether any request is needed at all (finished clips and
permanent failures are skipped), then try up to ``max_attempts`` times with exponential
backoff. yt-dlp writes into the clip's own ``.tmp-<clip_id>/`` folder; a file is checked
with ffmpeg, journalled, and only then renamed to ``<clip_id>.<ext>``, so a killed job never
leaves a half file under a finished name (and a journal line without its file is re-done).
"""

from __future__ import annotations

import math
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yt_dlp
from tqdm import tqdm

from wavbrivl import status as st
from wavbrivl.atomic import write_table_atomic
from wavbrivl.clip_ids import UnsafeClipId, check_clip_id
from wavbrivl.download.classify import (
    Classification,
    classify_exception,
    classify_media,
    clean_message,
    is_partial_download_refusal,
    media_probe_argv,
)
from wavbrivl.download.journal import (
    JOURNAL_NAME,
    Journal,
    JournalEntry,
    group_by_clip,
)
from wavbrivl.download.options import (
    DownloadConfig,
    build_ydl_options,
    plan_section,
    span_problem,
    url_problem,
)
from wavbrivl.ffmpeg_bin import ffmpeg_exe

REQUIRED_COLUMNS = ("clip_id", "url", "start_s", "end_s")
TMP_PREFIX = ".tmp-"
PROBE_TIMEOUT_S = 120.0

STATUS_SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("attempts", pa.int32()),
        ("bytes", pa.int64()),
        ("seconds", pa.float64()),
        ("file", pa.string()),
        ("section_start_s", pa.float64()),
        ("section_end_s", pa.float64()),  # NaN with a file: the whole source, to its end
        ("url", pa.string()),
    ]
)


@dataclass(frozen=True)
class _Clip:
    """One manifest row, as the downloader sees it."""

    clip_id: Any  # str when safe; anything the CSV held otherwise
    url: Any
    start_s: Any
    end_s: Any


@dataclass(frozen=True)
class _Fetched:
    """A file yt-dlp left in the clip's temporary folder and the span of the source it holds."""

    path: Path
    section_start_s: float
    section_end_s: float  # NaN: to the end of the source


# -- public API ------------------------------------------------------------------------------


def download_shard(
    rows: pd.DataFrame,
    out_dir: Path,
    status_path: Path,
    cfg: DownloadConfig,
    *,
    threads: int = 4,
    log: TextIO | None = None,
) -> pd.DataFrame:
    """Download every clip of ``rows`` into ``out_dir``; write and return the status table.

    ``rows`` needs ``clip_id``, ``url``, ``start_s``, ``end_s``. The table has one row per
    input row, in input order (columns: :data:`STATUS_SCHEMA`). A rerun skips clips already
    ok and permanent failures, and retries the rest. Progress and the per-status summary go
    to ``log`` (default: ``sys.stderr`` at call time).
    """
    log = sys.stderr if log is None else log
    clips = _clips_from_rows(rows)
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

        results: list[dict[str, Any] | None] = [
            _decide_offline(clip, history, out_dir, cfg) for clip in clips
        ]
        todo = [i for i, row in enumerate(results) if row is None]
        worker = _ClipWorker(out_dir, cfg, journal, history, _Pacer(cfg.pace_s))
        with tqdm(
            total=len(clips),
            initial=len(clips) - len(todo),
            desc=f"download {out_dir.name}",
            unit="clip",
            file=log,
            mininterval=10.0,
            ascii=True,
        ) as bar:
            _run_pool(worker.download, clips, todo, results, max(1, int(threads)), bar)

    table = pa.Table.from_pylist(results, schema=STATUS_SCHEMA)
    write_table_atomic(status_path, table)
    print(f"download: {out_dir}: {st.count_summary(table['status'].to_pylist())}", file=log)
    return table.to_pandas()


def read_status(path: str | os.PathLike) -> pd.DataFrame:
    """Read a status table, checking it has the columns of :data:`STATUS_SCHEMA`."""
    table = pq.read_table(path)
    missing = [name for name in STATUS_SCHEMA.names if name not in table.column_names]
    if missing:
        raise ValueError(f"{path}: not a download status table, missing columns {missing}")
    return table.select(STATUS_SCHEMA.names).cast(STATUS_SCHEMA).to_pandas()


def backoff_delay(attempt: int, base_s: float, rng: random.Random) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based): doubling, plus up to 50 % jitter.

    Jitter keeps the threads of many shards from retrying in lock-step.
    """
    return base_s * 2 ** (attempt - 1) * (1.0 + 0.5 * rng.random())


# -- the shard -------------------------------------------------------------------------------


def _clips_from_rows(rows: pd.DataFrame) -> list[_Clip]:
    missing = [c for c in REQUIRED_COLUMNS if c not in rows.columns]
    if missing:
        raise ValueError(f"download rows lack column(s) {missing}; have {list(rows.columns)}")
    ids = rows["clip_id"]
    duplicated = sorted({str(x) for x in ids[ids.duplicated() & ids.notna()]})
    if duplicated:
        raise ValueError(f"duplicate clip_id(s) in the shard's rows: {duplicated[:10]}")
    return [
        _Clip(_none_if_na(r.clip_id), _none_if_na(r.url), r.start_s, r.end_s)
        for r in rows[list(REQUIRED_COLUMNS)].itertuples(index=False)
    ]


def _run_pool(
    download: Callable[[_Clip], dict[str, Any]],
    clips: list[_Clip],
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
    clip: _Clip, history: dict[str, list[JournalEntry]], out_dir: Path, cfg: DownloadConfig
) -> dict[str, Any] | None:
    """The clip's status row when no request is needed, or ``None`` when it must be downloaded."""
    try:
        check_clip_id(clip.clip_id)
    except UnsafeClipId as exc:
        # Never used in a path, never journalled: nothing was attempted.
        return _row(clip, st.ERROR, str(exc), attempts=0)
    past = [e for e in history.get(clip.clip_id, []) if e.url == clip.url]
    problem = url_problem(clip.url, cfg) or span_problem(clip.start_s, clip.end_s)
    if problem:
        return _row(clip, st.ERROR, problem, attempts=len(past))
    if not past:
        return None
    last = past[-1]
    if last.status == st.OK and _file_intact(out_dir, last) and _covers(last, clip):
        return _row_from_entry(clip, last, attempts=len(past), seconds=0.0)
    if last.status not in st.RETRIABLE and last.status != st.OK and not cfg.retry_permanent:
        return _row_from_entry(clip, last, attempts=len(past), seconds=0.0)
    return None


def _file_intact(out_dir: Path, entry: JournalEntry) -> bool:
    """The journalled file is still there with the size it had (a kill may fall in between)."""
    if not entry.file:
        return False
    try:
        return (out_dir / entry.file).stat().st_size == entry.bytes
    except OSError:
        return False


def _covers(entry: JournalEntry, clip: _Clip, tolerance_s: float = 1e-3) -> bool:
    """Does the file's span still contain the clip (the manifest may have changed end_s)?"""
    start = entry.section_start_s or 0.0
    end = math.inf if entry.section_end_s is None else entry.section_end_s
    return start <= float(clip.start_s) + tolerance_s and end >= float(clip.end_s) - tolerance_s


def _remove_stale_temp_dirs(out_dir: Path) -> None:
    """A killed run's per-clip temporary folders (we hold the shard lock, so none is live)."""
    for path in out_dir.iterdir():
        if path.name.startswith(TMP_PREFIX) and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)


# -- one clip --------------------------------------------------------------------------------


class _ClipWorker:
    """Downloads single clips; shared by the pool's threads (state is the journal and pacer)."""

    def __init__(
        self,
        out_dir: Path,
        cfg: DownloadConfig,
        journal: Journal,
        history: dict[str, list[JournalEntry]],
        pacer: _Pacer,
    ) -> None:
        self.out_dir = out_dir
        self.cfg = cfg
        self.journal = journal
        self.history = history
        self.pacer = pacer
        self.ffmpeg = ffmpeg_exe()

    def download(self, clip: _Clip) -> dict[str, Any]:
        """All of this run's attempts at ``clip``; returns its status row. Never raises Exception."""
        started = time.monotonic()
        past = [e for e in self.history.get(clip.clip_id, []) if e.url == clip.url]
        previous_file = past[-1].file if past else None
        attempts = len(past)
        try:
            for n in range(1, self.cfg.max_attempts + 1):
                attempts += 1
                entry = self._attempt(clip, attempt=attempts, previous_file=previous_file)
                if entry.status == st.OK or entry.status not in st.RETRIABLE:
                    break
                if n < self.cfg.max_attempts:
                    rng = random.Random(f"{clip.clip_id}/{attempts}")  # seeded: reproducible waits
                    time.sleep(backoff_delay(n, self.cfg.backoff_s, rng))
        except Exception as exc:  # a bug here must cost one clip, not the shard
            reason = clean_message(f"internal error: {type(exc).__name__}: {exc}")
            return _row(clip, st.ERROR, reason, attempts) | {"seconds": time.monotonic() - started}
        return _row_from_entry(clip, entry, attempts, time.monotonic() - started)

    def _attempt(self, clip: _Clip, attempt: int, previous_file: str | None) -> JournalEntry:
        """One try: fetch into a fresh temporary folder, check, journal, move into place."""
        started = time.monotonic()
        tmp_dir = self.out_dir / f"{TMP_PREFIX}{clip.clip_id}"
        try:
            try:
                _fresh_dir(tmp_dir)
                fetched = self._fetch_with_fallback(clip, tmp_dir)
                verdict = self._check_media(fetched.path)
            except Exception as exc:  # every failure becomes this clip's status, not the shard's
                fetched, verdict = None, classify_exception(exc)
            entry = self._entry(clip, attempt, verdict, fetched, time.monotonic() - started)
            self.journal.append(entry)
            if entry.status == st.OK:
                entry = self._move_into_place(clip, entry, fetched, previous_file)
            return entry
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)

    def _fetch_with_fallback(self, clip: _Clip, tmp_dir: Path) -> _Fetched:
        section = plan_section(clip.url, float(clip.start_s), float(clip.end_s), self.cfg)
        try:
            return self._fetch(clip.url, tmp_dir, section)
        except yt_dlp.utils.DownloadError as exc:
            if section is None or self.cfg.sections != "auto":
                raise
            if not is_partial_download_refusal(str(exc)):
                raise
        # This source can only be fetched whole; the recorded span says so.
        _fresh_dir(tmp_dir)
        return self._fetch(clip.url, tmp_dir, None)

    def _fetch(self, url: str, tmp_dir: Path, section: tuple[float, float] | None) -> _Fetched:
        options = build_ydl_options(
            self.cfg, tmp_dir=tmp_dir, section=section, ffmpeg_location=self.ffmpeg
        )
        options["logger"] = _SilentLogger()
        _use_ffmpeg_in_this_thread(self.ffmpeg)
        with yt_dlp.YoutubeDL(options) as ydl:
            # Pace after the (slow, CPU-bound) set-up so the gaps land between the requests.
            self.pacer.wait_turn()
            info = ydl.extract_info(url, download=True)
        downloads = (info or {}).get("requested_downloads") or []
        if not downloads:
            raise RuntimeError("yt-dlp finished without a file (a playlist or a live stream?)")
        done = downloads[-1]
        path = Path(done.get("filepath") or "")
        if path.parent.resolve() != tmp_dir.resolve() or not path.is_file():
            raise RuntimeError(f"yt-dlp reported file {path} that is not in {tmp_dir}")
        start, end = done.get("section_start"), done.get("section_end")
        return _Fetched(
            path=path,
            section_start_s=float(start or 0.0),
            section_end_s=math.nan if end is None else float(end),
        )

    def _check_media(self, path: Path) -> Classification:
        """Does the file hold the streams we need? (yt-dlp happily saves an HTML error page.)"""
        size = path.stat().st_size
        if size == 0:
            return classify_media(0, "", require_video=self.cfg.require_video)
        probe = subprocess.run(  # noqa: S603 - argv list from a pure builder, no shell
            media_probe_argv(self.ffmpeg, path),
            capture_output=True,
            text=True,
            errors="replace",
            timeout=PROBE_TIMEOUT_S,
            check=False,  # `ffmpeg -i` without an output always exits 1; stderr is the answer
        )
        return classify_media(size, probe.stderr, require_video=self.cfg.require_video)

    def _entry(
        self,
        clip: _Clip,
        attempt: int,
        verdict: Classification,
        fetched: _Fetched | None,
        seconds: float,
    ) -> JournalEntry:
        ok = verdict.status == st.OK and fetched is not None
        return JournalEntry(
            clip_id=clip.clip_id,
            url=clip.url,
            status=verdict.status,
            reason=verdict.reason,
            attempt=attempt,
            bytes=fetched.path.stat().st_size if ok else 0,
            seconds=round(seconds, 3),
            file=f"{clip.clip_id}{fetched.path.suffix}" if ok else None,
            section_start_s=fetched.section_start_s if ok else None,
            section_end_s=(
                None if not ok or math.isnan(fetched.section_end_s) else fetched.section_end_s
            ),
            finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )

    def _move_into_place(
        self, clip: _Clip, entry: JournalEntry, fetched: _Fetched, previous_file: str | None
    ) -> JournalEntry:
        """Rename the checked file to its final name; the journal line is already durable."""
        target = self.out_dir / entry.file
        try:
            _fsync_path(fetched.path)
            os.replace(fetched.path, target)
        except OSError as exc:
            failed = _replace(
                entry, status=st.ERROR, reason=f"could not move file into place: {exc}"
            )
            self.journal.append(failed)
            return failed
        if previous_file and previous_file != entry.file:
            (self.out_dir / previous_file).unlink(missing_ok=True)  # e.g. an old .webm
        return entry


class _Pacer:
    """Spaces request starts at least ``interval_s`` apart across all threads of a shard.

    Each caller reserves the next free slot under the lock and sleeps outside it, so N
    threads start requests one slot apart instead of in a burst.
    """

    def __init__(
        self,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval_s = float(interval_s)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next = -math.inf

    def wait_turn(self) -> float:
        """Block until this caller may start a request; returns the seconds waited."""
        if self.interval_s <= 0:
            return 0.0
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self.interval_s
        delay = slot - now
        if delay > 0:
            self._sleep(delay)
        return delay


class _SilentLogger:
    """yt-dlp's logger hook: its errors reach us as exceptions, so its chatter is dropped."""

    def debug(self, msg: str) -> None:
        pass

    def info(self, msg: str) -> None:
        pass

    def warning(self, msg: str) -> None:
        pass

    def error(self, msg: str) -> None:
        pass


def _use_ffmpeg_in_this_thread(ffmpeg: str) -> None:
    """Tell yt-dlp's cut-download check where ffmpeg is.

    ``FFmpegFD.available()`` ignores the ``ffmpeg_location`` param and reads a context
    variable that only yt-dlp's CLI sets; without it a cut fails with "ffmpeg is not
    installed" unless ffmpeg happens to be on PATH. Context variables are per thread.
    """
    from yt_dlp.postprocessor.ffmpeg import FFmpegPostProcessor

    location = getattr(FFmpegPostProcessor, "_ffmpeg_location", None)
    if location is not None:
        location.set(ffmpeg)


# -- small helpers ---------------------------------------------------------------------------


def _row(clip: _Clip, status: str, reason: str, attempts: int) -> dict[str, Any]:
    return {
        "clip_id": clip.clip_id if isinstance(clip.clip_id, str) else _str_or_none(clip.clip_id),
        "status": status,
        "reason": reason,
        "attempts": attempts,
        "bytes": 0,
        "seconds": 0.0,
        "file": None,
        "section_start_s": None,
        "section_end_s": None,
        "url": _str_or_none(clip.url),
    }


def _row_from_entry(
    clip: _Clip, entry: JournalEntry, attempts: int, seconds: float
) -> dict[str, Any]:
    row = _row(clip, entry.status, entry.reason, attempts)
    row["seconds"] = float(seconds)
    if entry.status == st.OK:
        row.update(
            bytes=entry.bytes,
            file=entry.file,
            section_start_s=entry.section_start_s or 0.0,
            section_end_s=math.nan if entry.section_end_s is None else entry.section_end_s,
        )
    return row


def _replace(entry: JournalEntry, **changes: Any) -> JournalEntry:
    fields = {**entry.__dict__, **changes}
    if changes.get("status", st.OK) != st.OK:
        fields.update(bytes=0, file=None, section_start_s=None, section_end_s=None)
    return JournalEntry(**fields)


def _fresh_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)


def _fsync_path(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _none_if_na(value: Any) -> Any:
    try:
        return None if pd.isna(value) else value
    except (TypeError, ValueError):  # lists and other non-scalars
        return value


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)
