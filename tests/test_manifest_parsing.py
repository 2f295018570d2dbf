"""What both dataset parsers share (manifest/parsing.py), tested directly: the parse report
and its log lines, the row checks, the row collector and the CSV record reader.

Expected values are written out by hand; the constants of the module (MAX_EXAMPLES, the
column list) are pinned here rather than imported, so a changed constant is noticed.
"""

from __future__ import annotations

import csv
import json

import pytest

from wavbrivl.manifest.parsing import (
    MalformedRow,
    ParseReport,
    RowCollector,
    iter_csv_records,
    parse_seconds,
    require_content,
)

COLUMNS = ["clip_id", "source_id", "start_s", "end_s", "labels", "split", "line"]

# -- the parse report --------------------------------------------------------------------------


def test_a_fresh_report_counts_nothing_and_is_named_csv():
    report = ParseReport()
    counts = (report.n_rows, report.n_ok, report.n_malformed, report.n_duplicates)
    assert counts == (0, 0, 0, 0) and report.n_rescued_labels == 0
    assert report.source == ""
    assert report.summary_lines() == ["csv: 0 rows, 0 ok, 0 malformed, 0 duplicate ids"]


def test_each_kind_of_example_keeps_the_first_five_and_counts_all():
    """Seven of each kind: all seven counted, the first five (not six) kept verbatim."""
    report = ParseReport(source="v.csv")
    for i in range(7):
        report.add_malformed(10 + i, f"reason {i}")
        report.add_duplicate(20 + i, f"id_{i}", 3 + i)
        report.add_rescued(30 + i, f"a, b{i}")
    assert (report.n_malformed, report.n_duplicates, report.n_rescued_labels) == (7, 7, 7)
    assert report.n_rows == 0  # the collector counts rows, not the report's add_* methods
    assert report.examples == [
        "line 10: reason 0",
        "line 11: reason 1",
        "line 12: reason 2",
        "line 13: reason 3",
        "line 14: reason 4",
    ]
    assert report.duplicate_examples == [
        "line 20: duplicate clip id 'id_0' (first on line 3)",
        "line 21: duplicate clip id 'id_1' (first on line 4)",
        "line 22: duplicate clip id 'id_2' (first on line 5)",
        "line 23: duplicate clip id 'id_3' (first on line 6)",
        "line 24: duplicate clip id 'id_4' (first on line 7)",
    ]
    assert report.rescued_examples == [
        "line 30: read as one label 'a, b0'",
        "line 31: read as one label 'a, b1'",
        "line 32: read as one label 'a, b2'",
        "line 33: read as one label 'a, b3'",
        "line 34: read as one label 'a, b4'",
    ]


def test_summary_lines_show_examples_and_count_the_rest():
    """Different remainders (3 more malformed, 2 more rescued) so a sign or a swap shows."""
    report = ParseReport(
        source="v.csv",
        n_rows=14,
        n_ok=8,
        n_malformed=5,
        n_duplicates=1,
        examples=["line 2: a", "line 3: b"],
        duplicate_examples=["line 9: dup"],
        n_rescued_labels=3,
        rescued_examples=["line 4: read as one label 'x, y'"],
    )
    assert report.summary_lines() == [
        "v.csv: 14 rows, 8 ok, 5 malformed, 1 duplicate ids",
        "  line 2: a",
        "  line 3: b",
        "  ... and 3 more malformed rows",
        "  line 9: dup",
        "  3 labels had unquoted commas and were read as one label:",
        "    line 4: read as one label 'x, y'",
        "    ... and 2 more",
    ]


def test_summary_lines_say_no_more_when_every_example_is_shown():
    report = ParseReport(
        source="a.csv",
        n_rows=3,
        n_ok=1,
        n_malformed=1,
        examples=["line 2: bad"],
        n_rescued_labels=1,
        rescued_examples=["line 1: read as one label 'p, q'"],
    )
    assert report.summary_lines() == [
        "a.csv: 3 rows, 1 ok, 1 malformed, 0 duplicate ids",
        "  line 2: bad",
        "  1 labels had unquoted commas and were read as one label:",
        "    line 1: read as one label 'p, q'",
    ]


def test_report_json_has_sorted_keys_and_round_trips():
    """Sorted keys keep the stored report stable and diffable whatever the field order."""
    report = ParseReport(
        source="v.csv",
        n_rows=4,
        n_ok=1,
        n_malformed=2,
        n_duplicates=1,
        examples=["line 2: x", "line 3: y"],
        duplicate_examples=["line 4: dup"],
        n_rescued_labels=1,
        rescued_examples=["line 1: read as one label 'a, b'"],
        no_url_examples=["line 1: no source url for id 'a'"],
    )
    text = report.to_json()
    keys = list(json.loads(text))
    assert keys == sorted(keys)
    assert keys[0] == "duplicate_examples"  # not n_rows, the first field
    assert ParseReport.from_json(text) == report


# -- row checks --------------------------------------------------------------------------------


def test_a_row_of_commas_and_whitespace_has_no_content():
    with pytest.raises(MalformedRow) as err:
        require_content(["", " ", "\t"])
    assert str(err.value) == "empty row: only commas and whitespace"
    require_content(["", " x", ""])  # one non-blank field is content


@pytest.mark.parametrize(
    ("text", "seconds"), [("0", 0.0), (" 7 ", 7.0), ("0.5", 0.5), ("1e3", 1000.0)]
)
def test_seconds_accept_zero_fractions_and_padding(text, seconds):
    assert parse_seconds(text, "start") == seconds


@pytest.mark.parametrize(
    ("text", "what", "message"),
    [
        (" one ", "start", "start 'one' is not a number"),
        ("", "end", "end '' is not a number"),
        (" inf", "end", "end 'inf' is not a finite number"),
        ("-inf", "start", "start '-inf' is not a finite number"),
        ("nan ", "start", "start 'nan' is not a finite number"),
        ("-0.001", "end", "end '-0.001' is negative"),
    ],
)
def test_bad_seconds_name_the_field_and_the_stripped_text(text, what, message):
    with pytest.raises(MalformedRow) as err:
        parse_seconds(text, what)
    assert str(err.value) == message


# -- the row collector -------------------------------------------------------------------------


def test_collector_keeps_rows_column_by_column_with_their_lines():
    report = ParseReport()
    rows = RowCollector(report)
    rows.add(3, "bbb", 1.5, 11.5, ["dog"], "train")
    rows.add(7, "aaa", 0.0, 10.0, ["x", "y"], "test")
    df = rows.frame()
    assert list(df.columns) == COLUMNS
    assert df.to_dict("list") == {
        "clip_id": ["bbb_1500", "aaa_0"],
        "source_id": ["bbb", "aaa"],
        "start_s": [1.5, 0.0],
        "end_s": [11.5, 10.0],
        "labels": [["dog"], ["x", "y"]],
        "split": ["train", "test"],
        "line": [3, 7],
    }
    assert (report.n_rows, report.n_ok, report.n_malformed, report.n_duplicates) == (2, 2, 0, 0)


def test_an_empty_collector_gives_typed_empty_columns():
    """No rows at all still gives float seconds and integer lines (not pandas' object)."""
    df = RowCollector(ParseReport()).frame()
    assert list(df.columns) == COLUMNS and len(df) == 0
    assert {name: str(df[name].dtype) for name in ("start_s", "end_s", "line")} == {
        "start_s": "float64",
        "end_s": "float64",
        "line": "int64",
    }


def test_duplicate_clip_ids_count_once_each_and_name_the_first_line():
    """Starts 1.0 and 1.0004 s round to the same millisecond, so the same clip id."""
    report = ParseReport()
    rows = RowCollector(report)
    rows.add(2, "aaa", 1.0, 11.0, ["dog"], "train")
    rows.add(5, "aaa", 1.0004, 11.0, ["cat"], "train")
    rows.add(6, "aaa", 2.0, 12.0, ["cow"], "test")
    rows.add(9, "aaa", 1.0, 11.0, ["pig"], "test")
    assert (report.n_rows, report.n_ok, report.n_duplicates, report.n_malformed) == (4, 2, 2, 0)
    assert report.duplicate_examples == [
        "line 5: duplicate clip id 'aaa_1000' (first on line 2)",
        "line 9: duplicate clip id 'aaa_1000' (first on line 2)",
    ]
    assert rows.frame()["labels"].to_list() == [["dog"], ["cow"]]


def test_rejected_ids_are_counted_as_rows_with_their_reason():
    report = ParseReport()
    rows = RowCollector(report)
    rows.add(1, "", 0.0, 10.0, ["dog"], "train")
    rows.add(2, "#NAME?", 0.0, 10.0, ["dog"], "train")
    rows.add(3, "#hash", 0.0, 10.0, ["dog"], "train")  # a '#', yet no spreadsheet error
    rows.add(4, "a/b", 0.0, 10.0, ["dog"], "train")
    rows.reject(5, "told so")
    assert (report.n_rows, report.n_ok, report.n_malformed) == (5, 0, 5)
    assert report.examples == [
        "line 1: empty id",
        "line 2: id '#NAME?' is a spreadsheet error value (was the file saved by a spreadsheet?)",
        "line 3: id '#hash' is not a safe file name",
        "line 4: id 'a/b' is not a safe file name",
        "line 5: told so",
    ]
    assert len(rows.frame()) == 0


def test_a_safe_source_id_whose_clip_id_is_unsafe_is_rejected():
    """Clip ids may have 200 characters: a 198-character id plus "_0" fits, 199 do not; a
    huge start makes the millisecond suffix alone too long."""
    report = ParseReport()
    rows = RowCollector(report)
    rows.add(1, "a" * 198, 0.0, 10.0, ["dog"], "train")
    rows.add(2, "b" * 199, 0.0, 10.0, ["dog"], "train")
    rows.add(3, "big", 1e300, 1e300, ["dog"], "train")
    assert rows.frame()["clip_id"].to_list() == ["a" * 198 + "_0"]
    assert report.examples == [
        f"line 2: id {'b' * 199!r} is not a safe file name",
        "line 3: id 'big' is not a safe file name",
    ]


# -- reading CSV records -----------------------------------------------------------------------


def write(tmp_path, data: bytes):
    path = tmp_path / "data.csv"
    path.write_bytes(data)
    return path


def test_records_carry_their_first_line_number_and_blank_lines_are_skipped(tmp_path):
    """Header comments and blank or whitespace lines yield nothing but still count as lines;
    a one-field record and a record of commas are records."""
    path = write(tmp_path, b'# c1\n#c2\n\naaa,1\n  \t\n"multi\nline",2\nbbb\n,,\n')
    assert list(iter_csv_records(path, skipinitialspace=False)) == [
        (4, ["aaa", "1"]),
        (6, ["multi\nline", "2"]),
        (8, ["bbb"]),
        (9, ["", "", ""]),
    ]


def test_skipinitialspace_reads_a_quoted_field_after_a_space(tmp_path):
    path = write(tmp_path, b'a, "b,c"\n')
    assert list(iter_csv_records(str(path), skipinitialspace=True)) == [(1, ["a", "b,c"])]
    assert list(iter_csv_records(path, skipinitialspace=False)) == [(1, ["a", ' "b', 'c"'])]


def test_only_comments_before_the_first_data_line_are_a_header(tmp_path):
    """Blank lines inside the header keep it a header; a '#' line after data is data, and so
    is a spreadsheet error value on the very first line."""
    path = write(tmp_path, b"# c\n\n  \n# c2\naaa,1\n# late\n")
    assert list(iter_csv_records(path, skipinitialspace=False)) == [
        (5, ["aaa", "1"]),
        (6, ["# late"]),
    ]
    path = write(tmp_path, b"#NAME?,1\n#N/A,2\n")
    assert list(iter_csv_records(path, skipinitialspace=False)) == [
        (1, ["#NAME?", "1"]),
        (2, ["#N/A", "2"]),
    ]


def test_byte_order_marks_are_dropped_at_any_line_start(tmp_path):
    """Only the mark goes: ids starting with 'X' keep their first letter."""
    data = "\ufeff# c\nX1,2\n\ufeffXb,3\n".encode()
    assert list(iter_csv_records(write(tmp_path, data), skipinitialspace=False)) == [
        (2, ["X1", "2"]),
        (3, ["Xb", "3"]),
    ]


def test_a_byte_that_is_not_utf8_names_the_file_and_line(tmp_path):
    path = write(tmp_path, b"aaa,1\n\xffb,2\n")
    with pytest.raises(ValueError) as err:
        list(iter_csv_records(path, skipinitialspace=False))
    assert str(err.value) == f"{path} line 2: unreadable CSV: not UTF-8 (invalid start byte)"


def test_a_record_the_csv_module_refuses_names_the_file_and_line(tmp_path):
    """A field over the csv module's size limit (131072 characters) breaks the file."""
    path = write(tmp_path, b'aaa,1\nbbb,"' + b"x" * 140_000 + b'"\n')
    with pytest.raises(ValueError) as err:
        list(iter_csv_records(path, skipinitialspace=False))
    assert str(err.value) == (
        f"{path} line 2: unreadable CSV: field larger than field limit (131072)"
    )
    assert isinstance(err.value.__cause__, csv.Error)
