"""Benchmark datasets in their official layouts, read into one table (docs/benchmarks.md).

Every reader returns a :class:`BenchmarkTable`: one row per clip with ``clip_id``, ``path``,
``fold``, ``class_index`` and ``class_name`` (:data:`TABLE_COLUMNS`), the class names in index
order, the folds, and the clips left out with their reasons. Readers:

- :func:`read_esc50`: ``audio/*.wav`` + ``meta/esc50.csv``, folds 1..5; ``esc10=True`` keeps
  the ten ESC-10 classes, re-indexed 0..9 in the order of their ESC-50 targets;
- :func:`read_urbansound8k`: ``audio/fold1..fold10/*.wav`` + ``metadata/UrbanSound8K.csv``;
- :func:`read_vggsound_test`: the test split of this project's manifest, audio from its media
  shards (``path`` is the shard holding the clip), one fold.

A metadata file that is not the official one (a missing column, a bad value, a class index with
two names) is an error naming the file (and line). A clip whose audio is missing or unreadable
is a skipped row with its reason, never a crash: :func:`iter_clip_audio` decodes each clip to
16 kHz mono float32 (``wavbrivl.audiofile`` for files: any rate, bit depth or channel count
ffmpeg reads) and reports the ones it cannot read.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from wavbrivl.audiofile import AudioFileError, read_audio
from wavbrivl.extract.media import decode_audio, iter_media_rows
from wavbrivl.status import OK

PathLike = str | os.PathLike

TABLE_COLUMNS = ("clip_id", "path", "fold", "class_index", "class_name")
ESC50_COLUMNS = ("filename", "fold", "target", "category", "esc10", "src_file", "take")
US8K_COLUMNS = (
    "slice_file_name",
    "fsID",
    "start",
    "end",
    "salience",
    "fold",
    "classID",
    "class",
)
ESC50_FOLDS = 5
US8K_FOLDS = 10
#: Where the audio of a table's rows comes from.
FILES = "files"
MEDIA_SHARDS = "media_shards"


class BenchmarkFormatError(ValueError):
    """Metadata that is not in the dataset's official layout; the message names the file."""


@dataclass
class BenchmarkTable:
    """One benchmark dataset: its clips, classes and folds, and the clips left out."""

    name: str
    rows: pd.DataFrame  # TABLE_COLUMNS, one row per usable clip
    classes: list[str]  # class_index -> class_name
    folds: list[int]  # sorted, the folds the dataset defines
    audio_from: str = FILES  # FILES or MEDIA_SHARDS
    skipped: list[dict[str, str]] = field(default_factory=list)  # clip_id, path, reason

    def report(self) -> dict:
        """What the results record about the data: counts and every skipped clip's reason."""
        return {
            "dataset": self.name,
            "n_clips": len(self.rows),
            "n_skipped": len(self.skipped),
            "n_classes": len(self.classes),
            "classes": list(self.classes),
            "folds": list(self.folds),
            "skipped": list(self.skipped),
        }


# -- reading the metadata ------------------------------------------------------------------


def read_metadata_csv(path: PathLike, columns: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    """``(line number, row)`` of a metadata CSV whose header holds every one of ``columns``."""
    path = Path(path)
    if not path.is_file():
        raise BenchmarkFormatError(f"{path}: metadata file not found")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = [name.strip() for name in reader.fieldnames or []]
        missing = [c for c in columns if c not in header]
        if missing:
            raise BenchmarkFormatError(
                f"{path}: missing column(s) {', '.join(missing)} (header: {','.join(header)})"
            )
        reader.fieldnames = header
        rows = []
        for row in reader:
            if None in row or any(row[c] is None for c in columns):
                raise BenchmarkFormatError(
                    f"{path} line {reader.line_num}: expected {len(header)} fields"
                )
            rows.append((reader.line_num, {c: row[c].strip() for c in columns}))
    return rows


def parse_int(value: str, what: str, where: str, low: int, high: int) -> int:
    """``value`` as an integer in ``[low, high]``, else an error naming ``where``."""
    try:
        number = int(value)
    except ValueError:
        raise BenchmarkFormatError(f"{where}: {what} {value!r} is not an integer") from None
    if not low <= number <= high:
        raise BenchmarkFormatError(f"{where}: {what} {number} is not in {low}..{high}")
    return number


def plain_file_name(value: str, where: str) -> str:
    """A file name with no folder part: nothing from a CSV may point outside its folder."""
    if not value or value in (".", "..") or "/" in value or "\\" in value:
        raise BenchmarkFormatError(f"{where}: {value!r} is not a plain file name")
    return value


def class_list(pairs: Sequence[tuple[int, str]], source: PathLike) -> list[str]:
    """Class names in index order from ``(index, name)`` pairs; one name per index, indices
    0..K-1 with none missing."""
    names: dict[int, str] = {}
    for index, name in pairs:
        if names.setdefault(index, name) != name:
            raise BenchmarkFormatError(
                f"{source}: class index {index} has two names, {names[index]!r} and {name!r}"
            )
    absent = sorted(set(range(len(names))) - names.keys())
    if absent:
        raise BenchmarkFormatError(
            f"{source}: class indices are not 0..{len(names) - 1}: missing {absent}"
        )
    return [names[i] for i in range(len(names))]


def build_table(
    name: str,
    entries: Sequence[tuple[str, Path, int, int, str]],
    folds: Sequence[int],
    source: PathLike,
) -> BenchmarkTable:
    """The table of ``(clip_id, path, fold, class_index, class_name)`` entries; a listed file
    that does not exist is a skipped clip, a clip id listed twice an error."""
    seen: set[str] = set()
    rows, skipped = [], []
    for clip_id, path, fold, index, class_name in entries:
        if clip_id in seen:
            raise BenchmarkFormatError(f"{source}: {clip_id} is listed twice")
        seen.add(clip_id)
        if not path.is_file():
            skipped.append(
                {
                    "clip_id": clip_id,
                    "path": str(path),
                    "reason": f"listed in {source}, no such file",
                }
            )
            continue
        rows.append((clip_id, str(path), fold, index, class_name))
    classes = class_list([(e[3], e[4]) for e in entries], source)
    frame = pd.DataFrame(rows, columns=list(TABLE_COLUMNS)).astype(
        {"fold": "int64", "class_index": "int64"}
    )
    return BenchmarkTable(name, frame, classes, sorted(folds), FILES, skipped)


# -- the readers ---------------------------------------------------------------------------


def read_esc50(root: PathLike, *, esc10: bool = False) -> BenchmarkTable:
    """ESC-50 (or its ESC-10 subset) from ``root/meta/esc50.csv`` and ``root/audio/``."""
    root = Path(root)
    meta = root / "meta" / "esc50.csv"
    entries = []
    for line, row in read_metadata_csv(meta, ESC50_COLUMNS):
        where = f"{meta} line {line}"
        flag = row["esc10"].lower()
        if flag not in ("true", "false"):
            raise BenchmarkFormatError(f"{where}: esc10 {row['esc10']!r} is not True or False")
        if esc10 and flag == "false":
            continue
        filename = plain_file_name(row["filename"], where)
        fold = parse_int(row["fold"], "fold", where, 1, ESC50_FOLDS)
        target = parse_int(row["target"], "target", where, 0, 49)
        entries.append((filename, root / "audio" / filename, fold, target, row["category"]))
    if esc10:  # re-index the subset 0..9 in the order of the ESC-50 targets
        order = {t: i for i, t in enumerate(sorted({e[3] for e in entries}))}
        entries = [(c, p, f, order[t], n) for c, p, f, t, n in entries]
    name = "esc10" if esc10 else "esc50"
    return build_table(name, entries, range(1, ESC50_FOLDS + 1), meta)


def read_urbansound8k(root: PathLike) -> BenchmarkTable:
    """UrbanSound8K from ``root/metadata/UrbanSound8K.csv`` and ``root/audio/fold<k>/``."""
    root = Path(root)
    meta = root / "metadata" / "UrbanSound8K.csv"
    entries = []
    for line, row in read_metadata_csv(meta, US8K_COLUMNS):
        where = f"{meta} line {line}"
        filename = plain_file_name(row["slice_file_name"], where)
        fold = parse_int(row["fold"], "fold", where, 1, US8K_FOLDS)
        class_id = parse_int(row["classID"], "classID", where, 0, 9)
        path = root / "audio" / f"fold{fold}" / filename
        entries.append((filename, path, fold, class_id, row["class"]))
    return build_table("urbansound8k", entries, range(1, US8K_FOLDS + 1), meta)


def read_vggsound_test(
    manifest: PathLike, media_shards: Sequence[PathLike], *, split: str = "test"
) -> BenchmarkTable:
    """The ``split`` clips of a VGGSound manifest whose audio is in ``media_shards``.

    Rows come in shard order (the order of ``media_shards``, then of each shard), so that
    :func:`iter_clip_audio` reads each shard once and holds one batch at a time. Classes are
    the split's label names, sorted; all clips are fold 1. A clip with other
    than one label, or not ``ok`` in its media shard, or in no shard, is skipped.
    """
    frame = pd.read_parquet(manifest, columns=["clip_id", "labels", "label_names", "split"])
    frame = frame[frame["split"] == split]
    if frame.empty:
        raise BenchmarkFormatError(f"{manifest}: no clips in split {split!r}")
    labels: dict[str, str] = {}
    skipped = []
    for clip_id, codes, names in frame[["clip_id", "labels", "label_names"]].itertuples(
        index=False
    ):
        chosen = list(names) if names is not None and len(names) else list(codes)
        if len(chosen) != 1:
            skipped.append(
                {
                    "clip_id": clip_id,
                    "path": str(manifest),
                    "reason": f"{len(chosen)} labels, not one",
                }
            )
        else:
            labels[clip_id] = chosen[0]
    where: dict[str, tuple[str, str]] = {}  # clip_id -> (shard path, status reason or "")
    for shard in media_shards:
        for part in iter_media_rows(shard):
            for clip_id, status, reason in part[["clip_id", "status", "reason"]].itertuples(
                index=False
            ):
                if clip_id in labels:
                    if clip_id in where:
                        raise BenchmarkFormatError(f"{shard}: clip {clip_id!r} is in two shards")
                    why = "" if status == OK else f"media status {status}: {reason}"
                    where[clip_id] = (str(shard), why)
    classes = sorted(set(labels.values()))
    index = {name: i for i, name in enumerate(classes)}
    rows = []  # in shard order, so that decoding streams through each shard once
    for clip_id, (shard, why) in where.items():
        if why:
            skipped.append({"clip_id": clip_id, "path": shard, "reason": why})
        else:
            rows.append((clip_id, shard, 1, index[labels[clip_id]], labels[clip_id]))
    for clip_id in sorted(labels.keys() - where.keys()):
        skipped.append(
            {"clip_id": clip_id, "path": str(manifest), "reason": "not in the media shards"}
        )
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS)).astype(
        {"fold": "int64", "class_index": "int64"}
    )
    return BenchmarkTable(f"vggsound_{split}", table, classes, [1], MEDIA_SHARDS, skipped)


#: Dataset name -> reader of its root folder.
READERS = {
    "esc50": read_esc50,
    "esc10": partial(read_esc50, esc10=True),
    "urbansound8k": read_urbansound8k,
}


# -- the audio -----------------------------------------------------------------------------


def iter_clip_audio(table: BenchmarkTable) -> Iterator[tuple[int, np.ndarray | None, str]]:
    """``(row position, samples, reason)`` for every row of ``table``, in row order.

    ``samples`` is the clip as (T,) float32 at 16 kHz mono, or None when the clip cannot be
    read, with ``reason`` saying why ("" when read). Media shards are read one batch at a time.
    """
    if table.audio_from == FILES:
        for position, path in enumerate(table.rows["path"]):
            try:
                yield position, read_audio(path), ""
            except AudioFileError as error:
                yield position, None, str(error)
        return
    positions = {clip_id: i for i, clip_id in enumerate(table.rows["clip_id"])}
    found: dict[int, tuple[np.ndarray | None, str]] = {}
    next_position = 0
    for shard in dict.fromkeys(table.rows["path"]):
        for part in iter_media_rows(shard, ["audio"], ok_only=True):
            for clip_id, flac in part[["clip_id", "audio"]].itertuples(index=False):
                if clip_id not in positions:
                    continue
                try:
                    found[positions[clip_id]] = (decode_audio(flac), "")
                except Exception as error:  # noqa: BLE001 - any bad FLAC becomes a reason
                    found[positions[clip_id]] = (None, f"{shard}: {clip_id}: {error}")
                while next_position in found:
                    samples, reason = found.pop(next_position)
                    yield next_position, samples, reason
                    next_position += 1
    for position in range(next_position, len(table.rows)):
        samples, reason = found.pop(position, (None, "not found in its media shard"))
        yield position, samples, reason


def without_skipped(table: BenchmarkTable, reasons: dict[int, str]) -> BenchmarkTable:
    """``table`` without the rows at the positions of ``reasons``, which join its skipped list."""
    drop = sorted(reasons)
    skipped = list(table.skipped) + [
        {
            "clip_id": table.rows["clip_id"].iloc[i],
            "path": table.rows["path"].iloc[i],
            "reason": reasons[i],
        }
        for i in drop
    ]
    rows = table.rows.drop(index=table.rows.index[drop]).reset_index(drop=True)
    return BenchmarkTable(table.name, rows, table.classes, table.folds, table.audio_from, skipped)


__all__ = [
    "ESC50_COLUMNS",
    "FILES",
    "MEDIA_SHARDS",
    "READERS",
    "TABLE_COLUMNS",
    "US8K_COLUMNS",
    "BenchmarkFormatError",
    "BenchmarkTable",
    "build_table",
    "class_list",
    "iter_clip_audio",
    "parse_int",
    "plain_file_name",
    "read_esc50",
    "read_metadata_csv",
    "read_urbansound8k",
    "read_vggsound_test",
    "without_skipped",
]
