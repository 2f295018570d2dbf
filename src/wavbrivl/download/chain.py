"""One clip through a source chain: the mirrors in order, then the URL step for what they lack.

Per clip the first mirror that has a file wins (within a step, the first pattern that names
one). A mirror's copy is checked like a download (``classify_media``); a copy that is not
usable media (truncated, not a video) is journalled as ``bad_media`` and the chain falls
through to the next step, so YouTube can still supply a clip whose mirror copy is broken.
When no step gives a usable file the row is the last step's answer (the URL step's status
with the mirror's complaint appended, or the mirror's ``bad_media``), or ``missing`` when no
step has the clip at all (docs/stages.md, "download").
"""

from __future__ import annotations

import os
import shutil
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from wavbrivl import status as st
from wavbrivl.download.classify import clean_message
from wavbrivl.download.journal import Journal, JournalEntry
from wavbrivl.download.mirror import (
    Hit,
    MemberError,
    TarIndex,
    extract_members,
    find_in_folder,
    find_in_tars,
    link_into_place,
    load_index,
    sha256_and_size,
)
from wavbrivl.download.sources import FolderStep, Step, TarStep, UrlStep, describe
from wavbrivl.download.status_table import Clip, row_from_entry, status_row
from wavbrivl.download.worker import TMP_PREFIX, check_media_file


class ChainRunner:
    """Gets clips from the mirror steps of a chain; ``url_fetch`` is the URL step (or None)."""

    def __init__(
        self,
        steps: Sequence[Step],
        out_dir: Path,
        journal: Journal,
        history: dict[str, list[JournalEntry]],
        *,
        ffmpeg: str,
        require_video: bool,
        url_fetch: Callable[[Clip], dict[str, Any]] | None,
        index_dir: Path | None = None,
    ) -> None:
        self.mirrors = [s for s in steps if isinstance(s, FolderStep | TarStep)]
        self.url_step = next((s for s in steps if isinstance(s, UrlStep)), None)
        self.out_dir = out_dir
        self.journal = journal
        self.history = history
        self.ffmpeg = ffmpeg
        self.require_video = require_video
        self.url_fetch = url_fetch
        self.indexes: dict[str, list[TarIndex]] = {
            s.name: [load_index(p, index_dir) for p in s.paths]
            for s in self.mirrors
            if isinstance(s, TarStep)
        }
        self.hits: dict[str, list[Hit]] = {}
        self.prepared: dict[str, tuple[Hit, Path, tuple[str, int] | MemberError]] = {}

    def index_problems(self) -> list[str]:
        """Shards whose indexing stopped early (truncated or corrupt), for the job log."""
        return [i.problem for idx in self.indexes.values() for i in idx if i.problem]

    def find(self, clip: Clip) -> list[Hit]:
        """Every mirror step's copy of the clip, in chain order."""
        hits = []
        for step in self.mirrors:
            if isinstance(step, FolderStep):
                hit = find_in_folder(step, clip.source_id, clip.start_s, clip.clip_id)
            else:
                hit = find_in_tars(
                    step, self.indexes[step.name], clip.source_id, clip.start_s, clip.clip_id
                )
            if hit is not None:
                hits.append(hit)
        return hits

    def prepare(self, clips: Sequence[Clip]) -> None:
        """Look every clip up, then read the tar.gz members that are first choices in one
        streaming pass per shard (seeking is impossible inside a gzip stream)."""
        wanted: dict[Path, dict[str, list[Path]]] = defaultdict(lambda: defaultdict(list))
        owners: dict[Path, list[tuple[str, Hit, Path]]] = defaultdict(list)
        tars: dict[Path, TarIndex] = {}
        for clip in clips:
            try:
                hits = self.find(clip)
                first = hits[0] if hits else None
                if first is not None and first.tar is not None and first.tar.compressed:
                    dest = self._tmp_dir(clip) / f"{clip.clip_id}{first.suffix}"
                    _fresh_dir(dest.parent)
                    wanted[first.tar.path][first.member.name].append(dest)
                    owners[first.tar.path].append((clip.clip_id, first, dest))
                    tars[first.tar.path] = first.tar
            except Exception:  # noqa: S112 - run() looks again and records the clip's error
                continue
            self.hits[clip.clip_id] = hits
        for path, members in wanted.items():
            try:
                results = extract_members(tars[path], members)
            except Exception:  # noqa: S112 - run() reads these members one by one instead
                continue
            for clip_id, hit, dest in owners[path]:
                self.prepared[clip_id] = (hit, dest, results[hit.member.name])

    def run(self, clip: Clip) -> dict[str, Any]:
        """The clip's status row. Never raises Exception (a bug costs one clip, not the shard)."""
        started = time.monotonic()
        try:
            return self._run(clip)
        except Exception as exc:
            reason = clean_message(f"internal error: {type(exc).__name__}: {exc}")
            return status_row(clip, st.ERROR, reason, 0) | {"seconds": time.monotonic() - started}
        finally:
            shutil.rmtree(self._tmp_dir(clip), ignore_errors=True)

    def _run(self, clip: Clip) -> dict[str, Any]:
        hits = self.hits[clip.clip_id] if clip.clip_id in self.hits else self.find(clip)
        complaints: list[str] = []
        last_row = None
        for hit in hits:
            started = time.monotonic()
            entry = self._take(clip, hit)
            last_row = row_from_entry(clip, entry, entry.attempt, time.monotonic() - started)
            if entry.status == st.OK:
                return last_row
            complaints.append(f"{hit.step}: {entry.reason}")
        if self.url_fetch is not None and clip.url is not None:
            row = self.url_fetch(clip)
            if complaints and row["status"] != st.OK:
                row["reason"] = clean_message(
                    f"{row['reason']}; mirror copy unusable: {'; '.join(complaints)}"
                )
            return row
        if last_row is not None:
            last_row["reason"] = clean_message("; ".join(complaints))
            return last_row
        return status_row(clip, st.MISSING, self._missing_reason(), 0)

    def _missing_reason(self) -> str:
        looked = [describe(step) for step in self.mirrors]
        if self.url_step is not None:
            looked.append(f"{describe(self.url_step)} (no URL for this clip)")
        return "in no source: looked in " + ", ".join(looked)

    def _take(self, clip: Clip, hit: Hit) -> JournalEntry:
        """Hash and check the mirror's copy, journal it, and put it under the clip's name."""
        started = time.monotonic()
        attempt = 1 + sum(e.url == hit.origin for e in self.history.get(clip.clip_id, []))
        try:
            copy = self._verify(clip, hit)
        except OSError as exc:  # unreadable (permissions, a vanished file): worth a retry
            copy = Verified(st.ERROR, clean_message(f"{hit.origin}: {exc}"))
        ok = copy.status == st.OK
        entry = JournalEntry(
            clip_id=clip.clip_id,
            url=hit.origin,
            status=copy.status,
            reason=copy.reason,
            attempt=attempt,
            bytes=copy.size,
            seconds=round(time.monotonic() - started, 3),
            file=f"{clip.clip_id}{hit.suffix}" if ok else None,
            section_start_s=_section_start(clip, hit) if ok else None,
            section_end_s=None,
            finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
            source=hit.step if ok else None,
            sha256=copy.sha256,
        )
        self.journal.append(entry)
        if not ok:
            return entry
        target = self.out_dir / entry.file
        try:
            if hit.path is not None:
                link_into_place(hit.path, target)  # read in place: the media folder links to it
            else:
                _fsync_path(copy.src)
                os.replace(copy.src, target)
        except OSError as exc:
            failed = JournalEntry(
                **{
                    **entry.__dict__,
                    "status": st.ERROR,
                    "reason": clean_message(f"could not put {hit.origin} in place: {exc}"),
                    "bytes": 0,
                    "file": None,
                    "section_start_s": None,
                    "source": None,
                    "sha256": None,
                }
            )
            self.journal.append(failed)
            return failed
        return entry

    def _verify(self, clip: Clip, hit: Hit) -> Verified:
        """Hash the mirror's copy (a tar member is first read out) and check it is media."""
        if hit.path is not None:
            src = hit.path
            sha256, size = sha256_and_size(src)
        else:
            src, got = self._read_member(clip, hit)
            if isinstance(got, MemberError):
                return Verified(st.BAD_MEDIA, clean_message(str(got)))
            sha256, size = got
        verdict = check_media_file(self.ffmpeg, src, require_video=self.require_video)
        if verdict.status != st.OK:
            return Verified(verdict.status, clean_message(f"{hit.origin}: {verdict.reason}"))
        return Verified(st.OK, "", sha256, size, src)

    def _read_member(self, clip: Clip, hit: Hit) -> tuple[Path, tuple[str, int] | MemberError]:
        prepared = self.prepared.pop(clip.clip_id, None)
        if prepared is not None and prepared[0] is hit:
            return prepared[1], prepared[2]
        dest = self._tmp_dir(clip) / f"{clip.clip_id}{hit.suffix}"
        _fresh_dir(dest.parent)
        return dest, extract_members(hit.tar, {hit.member.name: [dest]})[hit.member.name]

    def _tmp_dir(self, clip: Clip) -> Path:
        return self.out_dir / f"{TMP_PREFIX}{clip.clip_id}"


class Verified(NamedTuple):
    """What checking a mirror's copy found. Only a good copy has a hash, a size (its journal
    line's bytes) and a file to put in place: a bad one's are None, 0 and None."""

    status: str
    reason: str
    sha256: str | None = None
    size: int = 0
    src: Path | None = None  # the file to put in place


def _section_start(clip: Clip, hit: Hit) -> float:
    """Source time where the mirror's file starts: the clip's start for a file named by its
    start (a cut clip), 0 for a file named by the video id alone (the whole video)."""
    return float(clip.start_s) if hit.holds_clip else 0.0


def _fresh_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)


def _fsync_path(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())
