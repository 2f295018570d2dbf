"""One clip's download: attempts with backoff, each fetched into a private folder, checked,
journalled and only then moved into place; plus the pacer that spaces request starts.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yt_dlp

from wavbrivl import status as st
from wavbrivl.download.breaker import CircuitBreaker
from wavbrivl.download.classify import (
    Classification,
    classify_exception,
    classify_media,
    clean_message,
    is_partial_download_refusal,
    media_probe_argv,
)
from wavbrivl.download.journal import Journal, JournalEntry
from wavbrivl.download.options import DownloadConfig, build_ydl_options, plan_section
from wavbrivl.download.status_table import Clip, row_from_entry, status_row
from wavbrivl.ffmpeg_bin import ffmpeg_exe
from wavbrivl.hashing import sha256_of

TMP_PREFIX = ".tmp-"
PROBE_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class _Fetched:
    """A file yt-dlp left in the clip's temporary folder and the span of the source it holds."""

    path: Path
    section_start_s: float
    section_end_s: float  # NaN: to the end of the source


class _Deferred(Exception):
    """The breaker tripped while this clip waited for its turn: no request was made."""


def backoff_delay(attempt: int, base_s: float, rng: random.Random) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based): doubling, plus up to 50 % jitter.

    Jitter keeps the threads of many shards from retrying in lock-step.
    """
    return base_s * 2 ** (attempt - 1) * (1.0 + 0.5 * rng.random())


class ClipWorker:
    """Downloads single clips; shared by the pool's threads (state: journal, pacer, breaker)."""

    def __init__(
        self,
        out_dir: Path,
        cfg: DownloadConfig,
        journal: Journal,
        history: dict[str, list[JournalEntry]],
        pacer: Pacer,
        breaker: CircuitBreaker | None = None,
        source_name: str = "url",
    ) -> None:
        self.source_name = source_name  # the source step's name in status rows
        self.out_dir = out_dir
        self.cfg = cfg
        self.journal = journal
        self.history = history
        self.pacer = pacer
        self.breaker = CircuitBreaker(cfg.breaker_after) if breaker is None else breaker
        self.ffmpeg = ffmpeg_exe()

    def download(self, clip: Clip) -> dict[str, Any]:
        """All of this run's attempts at ``clip``; returns its status row. Never raises Exception."""
        started = time.monotonic()
        past = [e for e in self.history.get(clip.clip_id, []) if e.url == clip.url]
        previous_file = past[-1].file if past else None
        attempts = len(past)
        entry = None
        try:
            for n in range(1, self.cfg.max_attempts + 1):
                if self.breaker.tripped:  # blocked: ask no more; keep the last real answer
                    break
                attempts += 1
                try:
                    entry = self._attempt(clip, attempt=attempts, previous_file=previous_file)
                except _Deferred:
                    attempts -= 1  # no request was made
                    break
                self.breaker.record(entry.status, entry.reason)
                if entry.status == st.OK or entry.status not in st.RETRIABLE:
                    break
                if n < self.cfg.max_attempts:
                    rng = random.Random(f"{clip.clip_id}/{attempts}")  # seeded: reproducible waits
                    time.sleep(backoff_delay(n, self.cfg.backoff_s, rng))
            if entry is None:  # this run made no request for the clip
                return status_row(clip, st.DEFERRED, self.breaker.deferred_reason(), attempts)
        except Exception as exc:  # a bug here must cost one clip, not the shard
            reason = clean_message(f"internal error: {type(exc).__name__}: {exc}")
            return status_row(clip, st.ERROR, reason, attempts) | {
                "seconds": time.monotonic() - started
            }
        return row_from_entry(clip, entry, attempts, time.monotonic() - started)

    def _attempt(self, clip: Clip, attempt: int, previous_file: str | None) -> JournalEntry:
        """One try: fetch into a fresh temporary folder, check, journal, move into place."""
        started = time.monotonic()
        tmp_dir = self.out_dir / f"{TMP_PREFIX}{clip.clip_id}"
        try:
            try:
                _fresh_dir(tmp_dir)
                fetched = self._fetch_with_fallback(clip, tmp_dir)
                verdict = self._check_media(fetched.path)
            except _Deferred:
                raise
            except Exception as exc:  # every failure becomes this clip's status, not the shard's
                fetched, verdict = None, classify_exception(exc)
            entry = self._entry(clip, attempt, verdict, fetched, time.monotonic() - started)
            self.journal.append(entry)
            if entry.status == st.OK:
                entry = self._move_into_place(clip, entry, fetched, previous_file)
            return entry
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)

    def _fetch_with_fallback(self, clip: Clip, tmp_dir: Path) -> _Fetched:
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
            if self.breaker.tripped:  # it tripped while this thread waited for its turn
                raise _Deferred
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
        return check_media_file(self.ffmpeg, path, require_video=self.cfg.require_video)

    def _entry(
        self,
        clip: Clip,
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
            source=self.source_name if ok else None,
            sha256=sha256_of(fetched.path) if ok else None,  # hashed before the move
        )

    def _move_into_place(
        self, clip: Clip, entry: JournalEntry, fetched: _Fetched, previous_file: str | None
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


def check_media_file(ffmpeg: str, path: Path, *, require_video: bool) -> Classification:
    """Probe ``path`` with ffmpeg and classify it: ok, or bad_media with the reason."""
    size = path.stat().st_size
    if size == 0:
        return classify_media(0, "", require_video=require_video)
    probe = subprocess.run(  # noqa: S603 - argv list from a pure builder, no shell
        media_probe_argv(ffmpeg, path),
        capture_output=True,
        text=True,
        errors="replace",
        timeout=PROBE_TIMEOUT_S,
        check=False,  # `ffmpeg -i` without an output always exits 1; stderr is the answer
    )
    return classify_media(size, probe.stderr, require_video=require_video)


class Pacer:
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


def _replace(entry: JournalEntry, **changes: Any) -> JournalEntry:
    fields = {**entry.__dict__, **changes}
    if changes.get("status", st.OK) != st.OK:
        fields.update(
            bytes=0, file=None, section_start_s=None, section_end_s=None, source=None, sha256=None
        )
    return JournalEntry(**fields)


def _fresh_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)


def _fsync_path(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())
