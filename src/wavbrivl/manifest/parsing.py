"""What the VGGSound and AudioSet parsers share: the parse report, the row collector that
validates ids and drops duplicates, and the CSV record reader."""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import pandas as pd

from wavbrivl.clip_ids import is_safe_clip_id, make_clip_id

MAX_EXAMPLES = 5  # malformed / duplicate rows kept verbatim for the log

# A cell a spreadsheet replaced with an error value (an id starting with "-" or "=" becomes
# "#NAME?"). Such a line is data, never a comment, even at the top of the file.
SPREADSHEET_ERROR = re.compile(r"#(?:NAME\?|VALUE!|REF!|N/A|DIV/0!|NUM!|NULL!|ERROR!)")

# Columns of a parsed dataset table (before URLs, display names and shards are added).
# ``line`` is the CSV line a row came from, so later checks can still name it.
PARSED_COLUMNS = ["clip_id", "source_id", "start_s", "end_s", "labels", "split", "line"]


@dataclass
class ParseReport:
    """What happened to the rows of one dataset CSV.

    Every non-blank, non-comment record counts in ``n_rows`` and is exactly one of ok,
    malformed or duplicate. ``examples`` keeps the first malformed rows as
    ``"line 17: start '-4' is negative"``; ``duplicate_examples`` the first duplicates.
    After :func:`~wavbrivl.manifest.build.build_manifest`, selected rows without a source
    URL have moved from ok to malformed; rows not selected stay ok.
    """

    n_rows: int = 0
    n_ok: int = 0
    n_malformed: int = 0
    n_duplicates: int = 0
    examples: list[str] = field(default_factory=list)
    duplicate_examples: list[str] = field(default_factory=list)
    source: str = ""  # file name, for log lines
    # Labels read across unquoted commas (VGGSound's rescue rule), counted and shown.
    n_rescued_labels: int = 0
    rescued_examples: list[str] = field(default_factory=list)
    # Selected rows dropped for want of a source URL (also counted in n_malformed).
    no_url_examples: list[str] = field(default_factory=list)

    def add_malformed(self, line: int, reason: str) -> None:
        self.n_malformed += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"line {line}: {reason}")

    def add_duplicate(self, line: int, clip_id: str, first_line: int) -> None:
        self.n_duplicates += 1
        if len(self.duplicate_examples) < MAX_EXAMPLES:
            self.duplicate_examples.append(
                f"line {line}: duplicate clip id {clip_id!r} (first on line {first_line})"
            )

    def add_rescued(self, line: int, label: str) -> None:
        self.n_rescued_labels += 1
        if len(self.rescued_examples) < MAX_EXAMPLES:
            self.rescued_examples.append(f"line {line}: read as one label {label!r}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ParseReport:
        return cls(**json.loads(text))

    def summary_lines(self) -> list[str]:
        """``vggsound.csv: 200000 rows, 199990 ok, 7 malformed, 3 duplicate ids`` + examples."""
        head = (
            f"{self.source or 'csv'}: {self.n_rows} rows, {self.n_ok} ok, "
            f"{self.n_malformed} malformed, {self.n_duplicates} duplicate ids"
        )
        lines = [head] + [f"  {example}" for example in self.examples]
        if self.n_malformed > len(self.examples):
            lines.append(f"  ... and {self.n_malformed - len(self.examples)} more malformed rows")
        lines += [f"  {example}" for example in self.duplicate_examples]
        if self.n_rescued_labels:
            lines.append(
                f"  {self.n_rescued_labels} labels had unquoted commas and were read as one label:"
            )
            lines += [f"    {example}" for example in self.rescued_examples]
            if self.n_rescued_labels > len(self.rescued_examples):
                lines.append(
                    f"    ... and {self.n_rescued_labels - len(self.rescued_examples)} more"
                )
        return lines


class MalformedRow(ValueError):
    """Raised by a format's row parser; the message is the reason logged for the row."""


def require_content(fields: list[str]) -> None:
    """:class:`MalformedRow` for a record of only commas and whitespace: a spreadsheet writes
    its empty rows that way, and they are counted rather than read as a row of empty ids."""
    if not any(field.strip() for field in fields):
        raise MalformedRow("empty row: only commas and whitespace")


def parse_seconds(text: str, what: str) -> float:
    """A finite, non-negative number of seconds, or :class:`MalformedRow` naming ``what``."""
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        raise MalformedRow(f"{what} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise MalformedRow(f"{what} {text!r} is not a finite number")
    if value < 0:
        raise MalformedRow(f"{what} {text!r} is negative")
    return value


class RowCollector:
    """Accumulates valid rows column by column; rejects unsafe ids and duplicate clip ids.

    Column lists instead of one dict per row keep 2M AudioSet rows cheap.
    """

    def __init__(self, report: ParseReport) -> None:
        self.report = report
        self._columns: dict[str, list[Any]] = {name: [] for name in PARSED_COLUMNS}
        self._first_line: dict[str, int] = {}  # clip id -> line it was first seen on

    def reject(self, line: int, reason: str) -> None:
        self.report.n_rows += 1
        self.report.add_malformed(line, reason)

    def add(
        self,
        line: int,
        source_id: str,
        start_s: float,
        end_s: float,
        labels: list[str],
        split: str,
    ) -> None:
        """Keep the row, or count it as malformed / duplicate (first occurrence wins)."""
        if not source_id:
            self.reject(line, "empty id")
            return
        if SPREADSHEET_ERROR.match(source_id):
            self.reject(
                line,
                f"id {source_id!r} is a spreadsheet error value (was the file saved by a "
                "spreadsheet?)",
            )
            return
        clip_id = make_clip_id(source_id, start_s)
        # The source id names the downloaded file and the clip id every later artefact.
        if not is_safe_clip_id(source_id) or not is_safe_clip_id(clip_id):
            self.reject(line, f"id {source_id!r} is not a safe file name")
            return
        first = self._first_line.get(clip_id)
        if first is not None:
            self.report.n_rows += 1
            self.report.add_duplicate(line, clip_id, first)
            return
        self._first_line[clip_id] = line
        self.report.n_rows += 1
        self.report.n_ok += 1
        for name, value in zip(
            PARSED_COLUMNS,
            (clip_id, source_id, start_s, end_s, labels, split, line),
            strict=True,
        ):
            self._columns[name].append(value)

    def frame(self) -> pd.DataFrame:
        df = pd.DataFrame(self._columns, columns=PARSED_COLUMNS)
        return df.astype({"start_s": "float64", "end_s": "float64", "line": "int64"})


def iter_csv_records(
    path: str | Path, *, skipinitialspace: bool
) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(first line number, fields)`` per CSV record, streaming.

    Blank lines are skipped, and so are the ``#`` header comment lines at the top of the file
    (AudioSet's header is three of them). A ``#`` line after the first data line, or one that
    starts with a spreadsheet error value such as ``#NAME?``, is data: it parses or is
    counted and shown as malformed, never dropped silently. Comment lines are replaced by
    blank ones rather than dropped so that the csv module's line counter stays equal to the
    file's line numbers.
    """
    with open(path, "rb") as fh:
        reader = csv.reader(_text_lines(path, fh), skipinitialspace=skipinitialspace)
        previous_end = 0
        try:
            for fields in reader:
                first_line, previous_end = previous_end + 1, reader.line_num
                if fields and not (len(fields) == 1 and not fields[0].strip()):
                    yield first_line, fields
        except csv.Error as err:
            # Not a bad row but a broken file (a field over csv's size limit, such as an
            # unclosed quote that swallows the rest): the reader cannot resync.
            raise ValueError(f"{path} line {previous_end + 1}: unreadable CSV: {err}") from err


def _text_lines(path: str | Path, fh: BinaryIO) -> Iterator[str]:
    """Decode line by line, so a byte that is not UTF-8 is reported with its line number;
    byte-order marks at line starts are dropped; header comment lines (``#`` lines before
    the first data line) become blank lines."""
    in_header = True
    for number, raw in enumerate(fh, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(
                f"{path} line {number}: unreadable CSV: not UTF-8 ({err.reason})"
            ) from None
        # A byte-order mark is never data. Windows tools start every file with one, so files
        # joined with `cat` carry one at the start of a later line too.
        line = line.lstrip("\ufeff")
        if in_header and line.startswith("#") and not SPREADSHEET_ERROR.match(line):
            yield "\n"
            continue
        if line.strip():
            in_header = False
        yield line
