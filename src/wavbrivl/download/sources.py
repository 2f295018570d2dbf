"""Where a dataset's clips come from: the ``datasets.<name>.source`` block, parsed and checked.

A source is one step or a chain of steps tried in order (docs/stages.md, "download"):

- ``{url_template: ...}`` or ``{mapping_csv: ...}``: a URL per clip, fetched with yt-dlp;
- ``{folder: DIR, patterns: [...]}``: a local folder of videos, read in place;
- ``{tar: PATHS_OR_GLOB, patterns: [...]}``: tar or tar.gz shards holding such files;
- ``{chain: [step, step, ...]}``: the mirrors first, at most one URL step, and last.

A pattern names a clip's file: ``{ytid}`` (required), ``{start}`` (the start in whole
seconds, rounded down, as VGGSound's mirrors name their clips; format specs such as
``{start:06d}`` work) and ``{clip_id}``. A pattern with ``{start}`` or ``{clip_id}`` names a
file that holds the clip from its start; a pattern with only ``{ytid}`` names the whole video.

Everything here raises :class:`SourceConfigError`, one line naming the config key, so
``workflow/rules/common.smk`` can refuse a bad source before any job starts.
"""

from __future__ import annotations

import glob
import math
import string
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from wavbrivl.clip_ids import is_safe_clip_id

DEFAULT_PATTERNS = ("{ytid}_{start:06d}.mp4", "{ytid}.mp4")
PATTERN_FIELDS = frozenset({"ytid", "start", "clip_id"})
URL_KEYS = ("url_template", "mapping_csv")
MIRROR_KEYS = ("folder", "tar")
STEP_KEYS = {
    "url_template": {"url_template", "name"},
    "mapping_csv": {"mapping_csv", "name"},
    "folder": {"folder", "patterns", "name"},
    "tar": {"tar", "patterns", "name"},
}
GLOB_CHARS = frozenset("*?[")


class SourceConfigError(ValueError):
    """A source block that cannot work; the message is one line naming the key."""


@dataclass(frozen=True)
class UrlStep:
    """Fetch the manifest's URL of the clip with yt-dlp."""

    name: str
    url_template: str | None = None
    mapping_csv: str | None = None


@dataclass(frozen=True)
class FolderStep:
    """A folder of videos named by ``patterns`` (paths relative to the folder)."""

    name: str
    root: Path
    patterns: tuple[str, ...]


@dataclass(frozen=True)
class TarStep:
    """Tar or tar.gz shards whose members are named by ``patterns`` (the member's base name
    or its full name inside the archive)."""

    name: str
    paths: tuple[Path, ...]
    patterns: tuple[str, ...]


Step = UrlStep | FolderStep | TarStep


def parse_source(cfg: Mapping[str, Any], key: str = "source") -> list[Step]:
    """The ordered steps of a source block (one step unless it is a chain).

    Checks the shape only (no file is touched); :func:`check_steps` checks the files.
    """
    if not isinstance(cfg, Mapping):
        raise SourceConfigError(f"{key}: expected a mapping, got {cfg!r}")
    if "chain" in cfg:
        if set(cfg) != {"chain"}:
            raise SourceConfigError(
                f"{key}: 'chain' cannot be combined with {sorted(set(cfg) - {'chain'})}"
            )
        entries = cfg["chain"]
        if not isinstance(entries, list) or not entries:
            raise SourceConfigError(f"{key}.chain: expected a non-empty list of sources")
        steps = [_parse_step(entry, f"{key}.chain[{i}]") for i, entry in enumerate(entries)]
    else:
        steps = [_parse_step(cfg, key)]
    url_at = [i for i, step in enumerate(steps) if isinstance(step, UrlStep)]
    if url_at and url_at[0] != len(steps) - 1:  # two URL steps: the first is not last
        raise SourceConfigError(
            f"{key}.chain: at most one url_template/mapping_csv step, and it must be the last "
            "(the mirrors are tried first)"
        )
    names = [step.name for step in steps]
    for name in names:
        if names.count(name) > 1:
            raise SourceConfigError(
                f"{key}.chain: two steps are named {name!r}; give each its own 'name'"
            )
    return steps


def _parse_step(entry: Any, key: str) -> Step:
    if not isinstance(entry, Mapping):
        raise SourceConfigError(f"{key}: expected a mapping, got {entry!r}")
    kinds = [k for k in STEP_KEYS if k in entry]
    if len(kinds) != 1:
        raise SourceConfigError(
            f"{key}: give exactly one key of {', '.join(STEP_KEYS)} (or a chain of them); "
            f"got {sorted(entry)}"
        )
    kind = kinds[0]
    unknown = sorted(set(entry) - STEP_KEYS[kind])
    if unknown:
        raise SourceConfigError(f"{key}: unknown key(s) {unknown} for a {kind} source")
    name = entry.get("name", _default_name(kind, entry[kind]))
    if not isinstance(name, str) or not name.strip():
        raise SourceConfigError(f"{key}.name: expected a non-empty string, got {name!r}")
    value = entry[kind]
    if kind in URL_KEYS:
        if not isinstance(value, str) or not value:
            raise SourceConfigError(f"{key}.{kind}: expected a non-empty string, got {value!r}")
        if kind == "url_template" and "{id}" not in value:
            raise SourceConfigError(f"{key}.url_template: {value!r} lacks the '{{id}}' placeholder")
        return UrlStep(name=name, **{kind: value})
    patterns = _parse_patterns(entry.get("patterns", list(DEFAULT_PATTERNS)), f"{key}.patterns")
    if kind == "folder":
        if not isinstance(value, str) or not value:
            raise SourceConfigError(f"{key}.folder: expected a path, got {value!r}")
        return FolderStep(name=name, root=Path(value), patterns=patterns)
    return TarStep(name=name, paths=_tar_paths(value, f"{key}.tar"), patterns=patterns)


def _default_name(kind: str, value: Any) -> str:
    """``youtube`` for a YouTube template, else the kind (``url``, ``folder``, ``tar``)."""
    if kind == "url_template" and isinstance(value, str):
        return "youtube" if ("youtube.com/" in value or "youtu.be/" in value) else "url"
    return "url" if kind == "mapping_csv" else kind


def _parse_patterns(patterns: Any, key: str) -> tuple[str, ...]:
    if isinstance(patterns, str):
        patterns = [patterns]
    if not isinstance(patterns, list) or not patterns:
        raise SourceConfigError(f"{key}: expected a non-empty list of file-name patterns")
    return tuple(check_pattern(p, f"{key}[{i}]") for i, p in enumerate(patterns))


def check_pattern(pattern: Any, key: str = "pattern") -> str:
    """Return ``pattern`` if it names a relative file from ``{ytid}`` (and ``{start}``,
    ``{clip_id}``); raise :class:`SourceConfigError` naming ``key`` otherwise."""
    if not isinstance(pattern, str) or not pattern:
        raise SourceConfigError(f"{key}: expected a file-name pattern, got {pattern!r}")
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(pattern) if f is not None}
        sample = pattern.format(ytid="abc", start=30, clip_id="abc_30000")
    except (ValueError, KeyError, IndexError, AttributeError, TypeError) as exc:
        raise SourceConfigError(f"{key}: {pattern!r} is not a usable pattern ({exc})") from None
    unknown = sorted(fields - PATTERN_FIELDS)  # also `{ytid[0]}`, which format() accepts
    if unknown:
        raise SourceConfigError(f"{key}: {pattern!r} uses unknown field(s) {unknown}")
    if "ytid" not in fields:
        raise SourceConfigError(f"{key}: {pattern!r} lacks '{{ytid}}'")
    parts = PurePosixPath(sample).parts
    if sample.startswith("/") or ".." in parts or "\\" in sample:
        raise SourceConfigError(f"{key}: {pattern!r} must name a file inside the source")
    return pattern


def _tar_paths(value: Any, key: str) -> tuple[Path, ...]:
    """The shards a ``tar:`` value names: a path, a glob, or a list of them (in that order)."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(v, str) and v for v in items):
        raise SourceConfigError(f"{key}: expected a path, a glob or a list of them, got {value!r}")
    paths: list[Path] = []
    for item in items:
        if GLOB_CHARS & set(item):
            matched = sorted(glob.glob(item))
            if not matched:
                raise SourceConfigError(f"{key}: glob {item!r} matches no file")
            paths.extend(Path(m) for m in matched)
        else:
            paths.append(Path(item))
    return tuple(dict.fromkeys(paths))  # a shard named twice is read once


def check_steps(steps: Sequence[Step], key: str = "source") -> None:
    """The mirrors exist and are what they claim: a folder, tar files (headers only)."""
    for step in steps:
        if isinstance(step, FolderStep) and not step.root.is_dir():
            what = "does not exist" if not step.root.exists() else "is not a folder"
            raise SourceConfigError(f"{key}: mirror folder {str(step.root)!r} {what}")
        if isinstance(step, TarStep):
            for path in step.paths:
                if not path.is_file():
                    raise SourceConfigError(f"{key}: tar shard {str(path)!r} does not exist")
                if not _is_tar(path):
                    raise SourceConfigError(f"{key}: {str(path)!r} is not a tar or tar.gz archive")


def _is_tar(path: Path) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except (OSError, EOFError):  # a .gz cut inside its first block
        return False


def load_source(cfg: Mapping[str, Any], key: str = "source") -> list[Step]:
    """:func:`parse_source` then :func:`check_steps`: what the workflow calls per dataset."""
    steps = parse_source(cfg, key)
    check_steps(steps, key)
    return steps


def url_step(steps: Sequence[Step]) -> UrlStep | None:
    """The chain's URL step, if it has one (always the last)."""
    last = steps[-1] if steps else None
    return last if isinstance(last, UrlStep) else None


def mirror_steps(steps: Sequence[Step]) -> list[FolderStep | TarStep]:
    return [step for step in steps if not isinstance(step, UrlStep)]


def pattern_start(start_s: float) -> int:
    """A clip's start as mirrors name it: whole seconds, rounded down."""
    return int(math.floor(float(start_s) + 1e-6))


def file_names(patterns: Sequence[str], ytid: Any, start_s: Any, clip_id: Any) -> list[str]:
    """The names ``patterns`` give a clip, in pattern order; [] when the ids cannot be used
    in a path (an unsafe id is never looked up) or the start is not a finite number."""
    if not (is_safe_clip_id(ytid) and is_safe_clip_id(clip_id)):
        return []
    try:
        start = pattern_start(start_s)
    except (TypeError, ValueError, OverflowError):
        return []
    return [p.format(ytid=ytid, start=start, clip_id=clip_id) for p in patterns]


def holds_clip(pattern: str) -> bool:
    """Does a file named by ``pattern`` start at the clip's start (not at the video's)?"""
    fields = {f for _, f, _, _ in string.Formatter().parse(pattern) if f is not None}
    return bool(fields & {"start", "clip_id"})


def describe(step: Step) -> str:
    """Short words for a step in a status reason: ``folder 'vgg' (/data/vgg)``."""
    if isinstance(step, FolderStep):
        return f"folder {step.name!r} ({step.root})"
    if isinstance(step, TarStep):
        return f"tar {step.name!r} ({len(step.paths)} shard(s))"
    return f"url {step.name!r}"
