"""Clips from local mirrors: find a clip's file in a folder or a tar shard, and read its bytes.

A folder's file is read in place (hashed, probed, and linked into the media folder, never
copied). A tar shard is indexed once (member names, offsets and sizes; the index is cached
beside the download status, keyed by the shard's path, size and mtime) and only the members
a download job needs are copied out, hashed while they are copied. Plain tars are read by
seeking to the member; a tar.gz is read in one streaming pass per job for all its members
the job needs (docs/stages.md, "download").
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePosixPath

from wavbrivl.atomic import write_text_atomic
from wavbrivl.download.sources import FolderStep, TarStep, file_names, holds_clip

CHUNK_BYTES = 1 << 20
INDEX_VERSION = 1
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class Member:
    name: str  # full name inside the archive
    offset: int  # where its data starts (plain tars; unused for tar.gz)
    size: int


@dataclass(frozen=True)
class TarIndex:
    path: Path
    compressed: bool
    members: dict[str, Member]  # full name -> member (regular files only)
    problem: str  # why indexing stopped early ("" when the archive ended cleanly)

    def lookup(self, name: str) -> Member | None:
        """A member by full name, else the first member whose base name is ``name``."""
        found = self.members.get(name)
        if found is not None:
            return found
        return self.by_base.get(name)

    @cached_property
    def by_base(self) -> dict[str, Member]:
        """Base name -> the first member of that base name (built on the first look-up)."""
        bases: dict[str, Member] = {}
        for member in self.members.values():
            bases.setdefault(PurePosixPath(member.name).name, member)
        return bases


@dataclass(frozen=True)
class Hit:
    """Where one mirror step has a clip."""

    step: str  # the step's name
    origin: str  # where the bytes are, for the status table: a path or "<tar>:<member>"
    holds_clip: bool  # the file starts at the clip's start (else: at the video's)
    path: Path | None = None  # folder hits
    tar: TarIndex | None = None  # tar hits
    member: Member | None = None

    @property
    def suffix(self) -> str:
        name = self.member.name if self.member is not None else str(self.path)
        suffix = PurePosixPath(name).suffix
        return suffix if suffix[1:].isalnum() and len(suffix) <= 8 else ".bin"


class MemberError(Exception):
    """A member that cannot be read out whole (truncated archive, bad compression)."""


# -- finding --------------------------------------------------------------------------------


def find_in_folder(step: FolderStep, ytid, start_s, clip_id) -> Hit | None:
    """The first pattern that names an existing file under the folder (a symlink counts)."""
    root = step.root.resolve()
    names = file_names(step.patterns, ytid, start_s, clip_id)  # [] for unusable ids
    for pattern, name in zip(step.patterns, names, strict=False):
        path = root / name
        if path.is_file():
            return Hit(step.name, str(path), holds_clip(pattern), path=path)
    return None


def find_in_tars(step: TarStep, indexes: Sequence[TarIndex], ytid, start_s, clip_id) -> Hit | None:
    """The first pattern that names a member of any shard (shards in the configured order)."""
    names = file_names(step.patterns, ytid, start_s, clip_id)  # [] for unusable ids
    for pattern, name in zip(step.patterns, names, strict=False):
        for index in indexes:
            member = index.lookup(name)
            if member is not None:
                origin = f"{index.path.resolve()}:{member.name}"
                return Hit(step.name, origin, holds_clip(pattern), tar=index, member=member)
    return None


# -- the tar index --------------------------------------------------------------------------


def index_tar(path: Path) -> TarIndex:
    """Every regular member of a tar or tar.gz, in one pass; a truncated or corrupt archive
    keeps the members read before the damage and says where it stopped."""
    path = Path(path)
    with open(path, "rb") as fh:
        compressed = fh.read(2) == _GZIP_MAGIC
    members: dict[str, Member] = {}
    problem = ""
    try:
        with tarfile.open(path, "r:*") as archive:
            for info in archive:
                if info.isfile():
                    members.setdefault(info.name, Member(info.name, info.offset_data, info.size))
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        problem = f"{path}: unreadable after {len(members)} member(s): {exc}"
    return TarIndex(path, compressed, members, problem)


def load_index(path: Path, cache_dir: Path | None) -> TarIndex:
    """:func:`index_tar`, remembered in ``cache_dir`` while the shard's size and mtime hold."""
    if cache_dir is None:
        return index_tar(path)
    path = Path(path)
    stat = path.stat()
    key = [INDEX_VERSION, str(path.resolve()), stat.st_size, stat.st_mtime_ns]
    cache = Path(cache_dir) / (hashlib.sha1(json.dumps(key).encode()).hexdigest() + ".json")
    try:
        data = json.loads(cache.read_text(encoding="utf-8"))
        if data["key"] == key:
            members = {m[0]: Member(m[0], int(m[1]), int(m[2])) for m in data["members"]}
            return TarIndex(path, bool(data["compressed"]), members, str(data["problem"]))
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        pass  # no cache yet, or a damaged one: index again
    index = index_tar(path)
    data = {
        "key": key,
        "compressed": index.compressed,
        "problem": index.problem,
        "members": [[m.name, m.offset, m.size] for m in index.members.values()],
    }
    cache.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(cache, json.dumps(data))
    return index


# -- reading bytes --------------------------------------------------------------------------


def sha256_and_size(path: Path) -> tuple[str, int]:
    """Hash a file in place (a folder mirror's file)."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def extract_members(
    index: TarIndex, wanted: Mapping[str, Iterable[Path]]
) -> dict[str, tuple[str, int] | MemberError]:
    """Copy each wanted member (full name -> destination files) out of the shard.

    Returns per member ``(sha256, size)`` or the :class:`MemberError` that stopped it; a
    member the archive does not reach (truncated before it) is an error too.
    """
    wanted = {name: list(dests) for name, dests in wanted.items()}
    results: dict[str, tuple[str, int] | MemberError] = {}
    if index.compressed:
        _extract_streaming(index, wanted, results)
    else:
        _extract_seeking(index, wanted, results)
    for name in wanted:
        if name not in results:
            why = index.problem or "member not found in the archive"
            results[name] = MemberError(f"{index.path}:{name}: not read ({why})")
    return results


def _extract_seeking(index, wanted, results) -> None:
    with open(index.path, "rb") as fh:
        for name, dests in wanted.items():
            member = index.members.get(name)
            if member is None:
                continue
            fh.seek(member.offset)
            results[name] = _copy(fh, member, dests, index.path)


def _extract_streaming(index, wanted, results) -> None:
    try:
        with tarfile.open(index.path, "r|*") as archive:
            for info in archive:
                if info.name in wanted and info.isfile() and info.name not in results:
                    member = Member(info.name, info.offset_data, info.size)
                    results[info.name] = _copy(
                        archive.extractfile(info), member, wanted[info.name], index.path
                    )
                    if len(results) == len(wanted):
                        break
    except (tarfile.TarError, EOFError, OSError, zlib.error):
        pass  # members not reached are reported by the caller


def _copy(
    src, member: Member, dests: Sequence[Path], tar_path: Path
) -> tuple[str, int] | MemberError:
    """Copy ``member.size`` bytes from ``src`` into every destination, hashing them."""
    digest, copied = hashlib.sha256(), 0
    handles = [open(dest, "wb") for dest in dests]  # noqa: SIM115 - closed below
    try:
        while copied < member.size:
            try:
                chunk = src.read(min(CHUNK_BYTES, member.size - copied))
            except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
                return MemberError(f"{tar_path}:{member.name}: unreadable ({exc})")
            if not chunk:
                break
            digest.update(chunk)
            for handle in handles:
                handle.write(chunk)
            copied += len(chunk)
    finally:
        for handle in handles:
            handle.close()
    if copied != member.size:
        return MemberError(
            f"{tar_path}:{member.name}: truncated member, {copied} of {member.size} bytes"
        )
    return digest.hexdigest(), copied


def link_into_place(target: Path, link: Path) -> None:
    """Make ``link`` a symlink to ``target`` atomically (replacing whatever was there)."""
    tmp = link.with_name(f".tmp-link-{link.name}")
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, link)
