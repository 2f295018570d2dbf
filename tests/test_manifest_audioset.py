"""AudioSet segments and class-index parsing; multi-label selection."""

from __future__ import annotations

from collections import Counter

import pandas as pd
import pytest

from wavbrivl.manifest.audioset import (
    check_known_labels,
    clean_mid,
    default_split_name,
    parse_audioset_fields,
    read_audioset_segments,
    read_class_labels,
)
from wavbrivl.manifest.parsing import MalformedRow
from wavbrivl.manifest.select import SelectionError, select_clips

HEADER = (
    "# Segments csv created Sun Mar  5 10:54:31 2017\n"
    "# num_ytids=3, num_segs=3, num_unique_labels=4, num_positive_labels=6\n"
    "# YTID, start_seconds, end_seconds, positive_labels\n"
)


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_segments_with_comment_header_and_quoted_mid_lists(tmp_path):
    path = write(
        tmp_path,
        "eval_segments.csv",
        HEADER + '--4gqARaEJE, 0.000, 10.000, "/m/068hy,/m/07q6cd_,/m/0bt9lr,/m/0jbk"\n'
        '--BfvyPmVMo, 20.000, 30.000, "/m/03l9g"\n'
        "-0BIyqJj9ZU, 30.500, 40.500, /m/07rgt08,/m/09x0r\n",  # unquoted list
    )
    df, report = read_audioset_segments(path, split="eval")
    assert (report.n_rows, report.n_ok, report.n_malformed) == (3, 3, 0)
    assert df["labels"].to_list() == [
        ["/m/068hy", "/m/07q6cd_", "/m/0bt9lr", "/m/0jbk"],
        ["/m/03l9g"],
        ["/m/07rgt08", "/m/09x0r"],
    ]
    assert df["clip_id"].to_list() == ["--4gqARaEJE_0", "--BfvyPmVMo_20000", "-0BIyqJj9ZU_30500"]
    assert df["end_s"].to_list() == [10.0, 30.0, 40.5]
    assert set(df["split"]) == {"eval"}
    assert df["line"].to_list() == [4, 5, 6]  # the comment lines still count as lines
    assert report.summary_lines() == [
        "eval_segments.csv: 3 rows, 3 ok, 0 malformed, 0 duplicate ids"
    ]


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("aaa, 0.000, 10.000", "expected 4 fields"),
        ("aaa, 10.000, 10.000, /m/x", "end '10.000' is not after start '10.000'"),
        ("aaa, 10.000, 5.000, /m/x", "is not after start"),
        ("aaa, zero, 10.000, /m/x", "start 'zero' is not a number"),
        ("aaa, 0.000, ten, /m/x", "end 'ten' is not a number"),
        ("aaa, -1.000, 10.000, /m/x", "start '-1.000' is negative"),
        ('aaa, 0.000, 10.000, ""', "empty label"),
        ('aaa, 0.000, 10.000, " , "', "empty label"),
        ('a/b, 0.000, 10.000, "/m/x"', "not a safe file name"),
        (', 0.000, 10.000, "/m/x"', "empty id"),
    ],
)
def test_malformed_segments_are_counted_with_line(tmp_path, row, reason):
    path = write(tmp_path, "s.csv", HEADER + 'ok1, 0.0, 10.0, "/m/a"\n' + row + "\n")
    df, report = read_audioset_segments(path, split="eval")
    assert (report.n_rows, report.n_ok, report.n_malformed) == (2, 1, 1)
    assert df["source_id"].to_list() == ["ok1"]
    assert report.examples[0].startswith("line 5: ") and reason in report.examples[0]


def test_duplicate_segments(tmp_path):
    path = write(tmp_path, "s.csv", HEADER + 'a, 0.0, 10.0, "/m/a"\na, 0.000, 10.0, "/m/b"\n')
    df, report = read_audioset_segments(path, split="eval")
    assert (report.n_ok, report.n_duplicates) == (1, 1)
    assert df["labels"].to_list() == [["/m/a"]]


def test_split_name_required_and_default_from_file_name(tmp_path):
    path = write(tmp_path, "s.csv", HEADER)
    with pytest.raises(ValueError, match="split"):
        read_audioset_segments(path, split="")
    assert default_split_name("x/eval_segments.csv") == "eval"
    assert default_split_name("balanced_train_segments.csv") == "balanced_train"
    assert default_split_name("https://h/p/unbalanced_train_segments.csv") == "unbalanced_train"


def test_class_labels_with_commas_in_display_names(tmp_path):
    path = write(
        tmp_path,
        "class_labels_indices.csv",
        'index,mid,display_name\n0,/m/09x0r,"Speech"\n'
        '1,/m/0ytgt,"Child speech, kid speaking"\n2,/m/01h8n0,Conversation\n',
    )
    assert read_class_labels(path) == {
        "/m/09x0r": "Speech",
        "/m/0ytgt": "Child speech, kid speaking",
        "/m/01h8n0": "Conversation",
    }


def test_class_labels_without_header_is_an_error_naming_the_file(tmp_path):
    path = write(tmp_path, "labels.csv", '0,/m/09x0r,"Speech"\n')
    with pytest.raises(ValueError, match=r"labels\.csv.*header"):
        read_class_labels(path)


# -- multi-label selection ---------------------------------------------------------------------

NAMES = {"/m/a": "Alpha", "/m/b": "Beta, with comma", "/m/c": "Gamma", "/m/d": "Delta"}


@pytest.fixture
def multi_df(tmp_path):
    """40 clips: /m/a in every 2nd, /m/b in every 3rd, /m/c in every 5th, /m/d in clip 7 only."""
    rows = []
    for i in range(40):
        mids = [m for m, k in (("/m/a", 2), ("/m/b", 3), ("/m/c", 5)) if i % k == 0] or ["/m/z"]
        if i == 7:
            mids.append("/m/d")
        rows.append(f'yt{i:03d}, {i}.0, {i + 10}.0, "{",".join(mids)}"\n')
    df, _ = read_audioset_segments(
        write(tmp_path, "eval_segments.csv", HEADER + "".join(rows)), split="eval"
    )
    return df


def class_counts(df, classes):
    return Counter(lab for labs in df["labels"] for lab in labs if lab in classes)


def test_classes_by_mid_or_display_name(multi_df):
    by_mid = select_clips(multi_df, classes=["/m/b"])
    by_name = select_clips(multi_df, classes=["Beta, with comma"], label_names=NAMES)
    assert by_mid["clip_id"].to_list() == by_name["clip_id"].to_list()
    assert len(by_mid) == 14  # i % 3 == 0 for i < 40
    with pytest.raises(SelectionError, match="'Beta, with comma'"):
        select_clips(multi_df, classes=["Beta, with comma"])  # no names given
    with pytest.raises(SelectionError, match="'Epsilon'"):
        select_clips(multi_df, classes=["Epsilon"], label_names=NAMES)


def test_max_per_class_multilabel_fills_every_selected_class(multi_df):
    classes = ["/m/a", "/m/b", "/m/c", "Delta"]
    selected = {"/m/a", "/m/b", "/m/c", "/m/d"}
    available = class_counts(multi_df, selected)
    for seed in range(5):
        out = select_clips(
            multi_df, classes=classes, max_clips_per_class=3, seed=seed, label_names=NAMES
        )
        got = class_counts(out, selected)
        for cls in selected:
            assert got[cls] >= min(3, available[cls]), (seed, cls, got)
        # Greedy: each kept clip was needed by one of its classes, so at most N per class kept.
        assert len(out) <= 3 * len(selected)
        assert all(set(labs) & selected for labs in out["labels"])
    a = select_clips(multi_df, classes=classes, max_clips_per_class=3, seed=0, label_names=NAMES)
    b = select_clips(multi_df, classes=classes, max_clips_per_class=3, seed=0, label_names=NAMES)
    c = select_clips(multi_df, classes=classes, max_clips_per_class=3, seed=1, label_names=NAMES)
    assert a["clip_id"].to_list() == b["clip_id"].to_list()
    assert a["clip_id"].to_list() != c["clip_id"].to_list()


def test_max_per_class_without_classes_caps_every_label(multi_df):
    out = select_clips(multi_df, max_clips_per_class=2, seed=0)
    everything = class_counts(multi_df, {"/m/a", "/m/b", "/m/c", "/m/d", "/m/z"})
    got = class_counts(out, set(everything))
    assert all(got[cls] >= min(2, n) for cls, n in everything.items())
    assert len(out) < len(multi_df)


def test_ytids_keep_only_those_and_missing_ones_are_named(multi_df):
    out = select_clips(multi_df, ytids=["yt003", "yt010"])
    assert out["source_id"].to_list() == ["yt003", "yt010"]
    with pytest.raises(SelectionError, match=r"1 ytid\(s\).*'nope'"):
        select_clips(multi_df, ytids=["yt003", "nope"])


# -- one record, label checks, the class index (manifest/audioset.py) -------------------------


def test_fields_are_stripped_and_every_later_field_holds_mids():
    assert parse_audioset_fields([" yt1 ", " 1.5", "11.5 ", '"/m/a, /m/b', " /m/c'", ""]) == (
        "yt1",
        1.5,
        11.5,
        ["/m/a", "/m/b", "/m/c"],
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            ["a", "0", "10"],
            "expected 4 fields (YTID, start_seconds, end_seconds, positive_labels), got 3",
        ),
        (["", " ", "\t", ""], "empty row: only commas and whitespace"),
        (["a", " 5.0 ", " 4.0 ", "/m/x"], "end '4.0' is not after start '5.0'"),
        (["a", "0", "-1", "/m/x"], "end '-1' is negative"),
        (["a", "0", "10", " '' ", ' "'], "empty label"),
    ],
)
def test_each_bad_record_has_its_exact_reason(fields, message):
    with pytest.raises(MalformedRow) as err:
        parse_audioset_fields(fields)
    assert str(err.value) == message


@pytest.mark.parametrize(
    ("text", "mid"),
    [(' "/m/0X" ', "/m/0X"), ("'/m/a'", "/m/a"), ('" /m/b "', "/m/b"), ("/m/c", "/m/c")],
)
def test_clean_mid_drops_whitespace_and_stray_quotes_only(text, mid):
    assert clean_mid(text) == mid


def labelled(*rows):
    """A parsed table of (line, labels) rows, as check_known_labels reads it."""
    return pd.DataFrame({"line": [r[0] for r in rows], "labels": [r[1] for r in rows]})


KNOWN = {"/m/a": "Alpha", "/m/b": "Beta"}


def test_known_labels_give_no_lines():
    df = labelled((4, ["/m/a", "/m/b"]), (5, ["/m/b"]))
    assert check_known_labels(df, KNOWN, source="s.csv", labels_source="l.csv") == []


def test_half_the_labels_unknown_is_still_kept_and_shown():
    df = labelled((4, ["/m/a", "/m/x"]), (6, ["/m/y", "/m/b"]))
    assert check_known_labels(df, KNOWN, source="s.csv", labels_source="l.csv") == [
        "s.csv: 2 of 4 labels unknown to l.csv (kept as they are); first:",
        "  line 4: '/m/x'",
        "  line 6: '/m/y'",
    ]


def test_more_than_half_unknown_is_refused_showing_the_first_five():
    """7 of 8 labels unknown: the file is refused, naming the first 5 (of 7) unknown ones."""
    df = labelled(
        (4, ["/m/u1", "/m/a", "/m/u2"]), (5, ["/m/u3"]), (9, [f"/m/v{i}" for i in range(4)])
    )
    with pytest.raises(ValueError) as err:
        check_known_labels(df, KNOWN, source="s.csv", labels_source="l.csv")
    assert str(err.value) == (
        "s.csv looks mangled: 7 of 8 labels unknown to l.csv; first: line 4: '/m/u1', "
        "line 4: '/m/u2', line 5: '/m/u3', line 9: '/m/v0', line 9: '/m/v1'"
    )


def test_a_quoted_label_list_may_span_lines(tmp_path):
    """Segments are read with skipinitialspace: the quote after ", " opens a quoted field,
    which may hold a line break; the record is one row, named by its first line."""
    path = write(
        tmp_path, "s.csv", HEADER + 'aaa, 0.0, 10.0, "/m/a,\n/m/b"\nbbb, 1.0, 11.0, /m/c\n'
    )
    df, report = read_audioset_segments(path, split="eval")
    assert (report.n_rows, report.n_ok, report.n_malformed) == (2, 2, 0)
    assert df["labels"].to_list() == [["/m/a", "/m/b"], ["/m/c"]]
    assert df["line"].to_list() == [4, 6]
    assert df["split"].to_list() == ["eval", "eval"]


def test_an_empty_split_name_is_refused_naming_the_file(tmp_path):
    path = write(tmp_path, "s.csv", HEADER)
    with pytest.raises(ValueError) as err:
        read_audioset_segments(path, split="")
    assert str(err.value) == f"{path}: an AudioSet segments file needs a split name"


def test_class_labels_with_padded_header_and_quoted_names_after_spaces(tmp_path):
    """Spaces after commas (skipinitialspace) and around header names; the first of two
    rows for one MID wins; a line break inside a quoted name stays as written."""
    path = write(
        tmp_path,
        "labels.csv",
        'index , mid , display_name \n0, /m/a, "Child speech, kid speaking"\n'
        '1, /m/b, "Two\r\nlines"\n2, /m/a, Other\n',
    )
    assert read_class_labels(path) == {
        "/m/a": "Child speech, kid speaking",
        "/m/b": "Two\r\nlines",
    }


def test_class_labels_saved_with_a_byte_order_mark_start_with_mid(tmp_path):
    """A Windows tool's BOM must not glue itself to the first column name (here "mid"), and
    names are UTF-8 whatever the locale."""
    path = tmp_path / "labels.csv"
    path.write_bytes("\ufeffmid,display_name,index\n/m/a,Café,0\n".encode())
    assert read_class_labels(path) == {"/m/a": "Café"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("index,display_name\n0,Speech\n", "got ['index', 'display_name']; missing ['mid']"),
        ("index,mid\n0,/m/a\n", "got ['index', 'mid']; missing ['display_name']"),
        ("", "got []; missing ['mid', 'display_name']"),
    ],
)
def test_class_labels_without_the_needed_columns_are_refused(tmp_path, text, message):
    path = write(tmp_path, "labels.csv", text)
    with pytest.raises(ValueError) as err:
        read_class_labels(path)
    assert str(err.value) == (
        f"{path}: expected a header with columns ['index', 'mid', 'display_name'], {message}"
    )


@pytest.mark.parametrize("row", ["1,/m/b, ", "1, ,Beta", "1,/m/b"])
def test_class_labels_with_an_empty_mid_or_name_name_the_line(tmp_path, row):
    path = write(tmp_path, "labels.csv", f"index,mid,display_name\n0,/m/a,Alpha\n{row}\n")
    with pytest.raises(ValueError) as err:
        read_class_labels(path)
    assert str(err.value) == f"{path} line 3: empty mid or display_name"


@pytest.mark.parametrize(
    ("name", "split"),
    [("_segments.csv", "_segments"), ("a.b_segments.csv", "a"), ("eval_segments", "eval")],
)
def test_split_name_is_the_stem_before_the_first_dot_without_segments(name, split):
    assert default_split_name(name) == split
