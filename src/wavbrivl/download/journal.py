"""The per-shard download journal: one JSON line per finished clip attempt, append-only.

Snakemake deletes a job's declared outputs before it reruns the job, so the status table
cannot carry what a shard already did; this journal, kept in the media folder, does. Every
line is flushed and fsynced before the runner moves on, so after a kill at most the last
line is torn; :meth:`Journal.open` cuts such a tail off before appending again. The journal
also holds an exclusive ``flock`` while open, so two jobs cannot work on one shard at once.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:  # POSIX only; elsewhere the lock is skipped
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

JOURNAL_NAME = "_journal.jsonl"
OPTIONAL = frozenset({"source", "sha256"})  # keys an older journal line may lack


@dataclass(frozen=True)
class JournalEntry:
    """The outcome of one attempt at one clip."""

    clip_id: str
    url: str
    status: str
    reason: str
    attempt: int  # this clip's attempt number for this url, counting every run (1-based)
    bytes: int  # size of the file moved into place (0 unless ok)
    seconds: float  # wall time of this attempt
    file: str | None  # name inside the media folder (None unless ok)
    section_start_s: float | None  # span of the source the file holds (None unless ok)
    section_end_s: float | None  # None with an ok file: "to the end of the source"
    finished_at: str  # ISO 8601, UTC
    # Added with mirror sources (older journals lack them): the source step that gave the
    # file, and the SHA-256 of its bytes (both None unless ok).
    source: str | None = None
    sha256: str | None = None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False, allow_nan=False)

    @classmethod
    def from_json(cls, line: str) -> JournalEntry:
        """Parse one line; raises ``ValueError`` (or ``KeyError``/``TypeError``) if it is not an entry."""
        data: dict[str, Any] = json.loads(line)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        names = [
            f.name for f in dataclasses.fields(cls) if f.name in data or f.name not in OPTIONAL
        ]
        missing = [n for n in names if n not in data]
        if missing:
            raise ValueError(f"missing keys {missing}")
        return cls(**{n: data[n] for n in names})


@dataclass(frozen=True)
class JournalContents:
    entries: list[JournalEntry]
    bad_lines: list[int]  # 1-based numbers of lines that were not valid entries (skipped)
    torn_tail_bytes: int  # bytes of an unfinished last line that were cut off


def read_journal(path: Path) -> JournalContents:
    """All valid entries of a journal, in order; a torn or corrupt line is skipped, not fatal."""
    path = Path(path)
    if not path.exists():
        return JournalContents([], [], 0)
    data = path.read_bytes()
    complete, torn = _split_torn_tail(data)
    entries, bad = [], []
    for number, raw in enumerate(complete.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            entries.append(JournalEntry.from_json(raw.decode("utf-8")))
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            bad.append(number)
    return JournalContents(entries, bad, len(torn))


def group_by_clip(entries: list[JournalEntry]) -> dict[str, list[JournalEntry]]:
    """Each clip's entries in the order they were written (the last one is its latest state)."""
    grouped: dict[str, list[JournalEntry]] = defaultdict(list)
    for entry in entries:
        grouped[entry.clip_id].append(entry)
    return dict(grouped)


class Journal:
    """An open journal: read it once, then append entries from any thread."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._fh = None

    def open(self) -> JournalContents:
        """Lock the journal, cut off a torn tail, and return what it holds."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "ab")  # noqa: SIM115 - closed in close()
        try:
            _lock_exclusively(fh, self.path)
            contents = read_journal(self.path)
            if contents.torn_tail_bytes:
                # Appending after a half line would glue two entries into one bad line.
                fh.truncate(os.path.getsize(self.path) - contents.torn_tail_bytes)
                _fsync(fh)
        except BaseException:
            fh.close()
            raise
        self._fh = fh
        return contents

    def append(self, entry: JournalEntry) -> None:
        """Write one entry and make it durable before returning."""
        line = (entry.to_json() + "\n").encode("utf-8")
        with self._lock:
            if self._fh is None:
                raise RuntimeError(f"journal {self.path} is not open")
            self._fh.write(line)
            _fsync(self._fh)

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()  # also releases the flock
                self._fh = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _split_torn_tail(data: bytes) -> tuple[bytes, bytes]:
    """(complete lines, unfinished last line): every entry we write ends with a newline."""
    cut = data.rfind(b"\n") + 1
    return data[:cut], data[cut:]


def _fsync(fh) -> None:
    fh.flush()
    os.fsync(fh.fileno())


def _lock_exclusively(fh, path: Path) -> None:
    if fcntl is None:  # pragma: no cover
        return
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        raise RuntimeError(
            f"{path} is locked: another download job is working on this shard"
        ) from exc
    except OSError:
        # Some cluster filesystems (Lustre without flock, old NFS) cannot lock; Snakemake
        # already runs one job per shard, so the lock is a safety net we can do without.
        return


__all__ = [
    "JOURNAL_NAME",
    "Journal",
    "JournalContents",
    "JournalEntry",
    "group_by_clip",
    "read_journal",
]
