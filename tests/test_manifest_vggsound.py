"""VGGSound CSV parsing, the parse report, and single-label selection."""

from __future__ import annotations

import random
import string

import pytest

from wavbrivl.manifest import MAX_EXAMPLES, MalformedRow, ParseReport
from wavbrivl.manifest.select import SelectionError, select_clips
from wavbrivl.manifest.vggsound import VGGSOUND_SPLITS, parse_vggsound_fields, read_vggsound_csv


def write_csv(tmp_path, text: str, name: str = "vggsound.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_quoted_and_unquoted_commas_in_labels(tmp_path):
    path = write_csv(
        tmp_path,
        '---g-f_I2yQ,1,"people marching, sound",test\n'
        "abcdefghijk,30,people marching, sound,train\n"
        "zzzzzzzzzzz,40,a, b, c,train\n",
    )
    df, report = read_vggsound_csv(path)
    assert report.n_ok == 3 and report.n_malformed == 0
    assert df["labels"].to_list() == [
        ["people marching, sound"],
        ["people marching, sound"],
        ["a, b, c"],
    ]
    assert df["source_id"].to_list() == ["---g-f_I2yQ", "abcdefghijk", "zzzzzzzzzzz"]
    assert df["split"].to_list() == ["test", "train", "train"]
    assert df["clip_id"].to_list() == ["---g-f_I2yQ_1000", "abcdefghijk_30000", "zzzzzzzzzzz_40000"]


def test_float_starts_and_clip_length(tmp_path):
    path = write_csv(tmp_path, "aaa,12.5,dog,train\nbbb, 7 ,cat,test\n")
    df, _ = read_vggsound_csv(path, clip_seconds=4.0)
    assert df["start_s"].to_list() == [12.5, 7.0]
    assert df["end_s"].to_list() == [16.5, 11.0]
    assert df["clip_id"].to_list() == ["aaa_12500", "bbb_7000"]
    assert str(df["start_s"].dtype) == "float64"
    with pytest.raises(ValueError, match="clip_seconds"):
        read_vggsound_csv(path, clip_seconds=0)


MALFORMED = [
    ("aaa,1,dog", "expected 4 fields"),
    ("aaa,one,dog,train", "start 'one' is not a number"),
    ("aaa,-4,dog,train", "start '-4' is negative"),
    ("aaa,nan,dog,train", "not a finite number"),
    (",1,dog,train", "empty id"),
    ("../etc,1,dog,train", "not a safe file name"),
    ("a b,1,dog,train", "not a safe file name"),
    ("aaa,1,,train", "empty label"),
    ("aaa,1,dog,", "empty split"),
    ("aaa,1,dog,validation", "split 'validation' is not one of"),
]


@pytest.mark.parametrize(("row", "reason"), MALFORMED)
def test_each_kind_of_malformed_row_is_counted_with_its_line(tmp_path, row, reason):
    path = write_csv(tmp_path, f"good,0,dog,train\n{row}\nbetter,0,cat,test\n")
    df, report = read_vggsound_csv(path)
    assert (report.n_rows, report.n_ok, report.n_malformed) == (3, 2, 1)
    assert df["source_id"].to_list() == ["good", "better"]
    assert len(report.examples) == 1
    assert report.examples[0].startswith("line 2: ")
    assert reason in report.examples[0]


def test_examples_are_capped_and_summary_counts_the_rest(tmp_path):
    bad = "".join(f"id{i},-{i + 1},dog,train\n" for i in range(MAX_EXAMPLES + 3))
    path = write_csv(tmp_path, "ok1,0,dog,train\n" + bad)
    _, report = read_vggsound_csv(path)
    assert report.n_malformed == MAX_EXAMPLES + 3
    assert [e.split(":")[0] for e in report.examples] == [
        f"line {n}" for n in range(2, 2 + MAX_EXAMPLES)
    ]
    lines = report.summary_lines()
    assert lines[0] == (
        f"vggsound.csv: {MAX_EXAMPLES + 4} rows, 1 ok, {MAX_EXAMPLES + 3} malformed, 0 duplicate ids"
    )
    assert lines[1] == "  line 2: start '-1' is negative"
    assert lines[-1] == "  ... and 3 more malformed rows"


def test_duplicates_dropped_first_wins(tmp_path):
    path = write_csv(
        tmp_path,
        "aaa,10,dog,train\naaa,20,cat,train\naaa,10,cow,test\naaa,10.0,pig,train\n",
    )
    df, report = read_vggsound_csv(path)
    assert (report.n_rows, report.n_ok, report.n_duplicates) == (4, 2, 2)
    assert df.set_index("clip_id")["labels"].to_dict() == {
        "aaa_10000": ["dog"],
        "aaa_20000": ["cat"],
    }
    assert report.duplicate_examples[0] == "line 3: duplicate clip id 'aaa_10000' (first on line 1)"
    assert "2 duplicate ids" in report.summary_lines()[0]


def test_blank_and_comment_lines_do_not_count_and_keep_line_numbers(tmp_path):
    path = write_csv(tmp_path, "# a note\n\naaa,1,dog,train\n\nbbb,x,dog,train\n")
    df, report = read_vggsound_csv(path)
    assert (report.n_rows, report.n_ok, report.n_malformed) == (2, 1, 1)
    assert df["line"].to_list() == [3]
    assert report.examples == ["line 5: start 'x' is not a number"]


def test_multiline_quoted_label_reports_its_first_line(tmp_path):
    path = write_csv(tmp_path, 'aaa,1,dog,train\nbbb,-1,"two\nlines",train\nccc,-2,x,train\n')
    _, report = read_vggsound_csv(path)
    assert report.examples == ["line 2: start '-1' is negative", "line 4: start '-2' is negative"]


def test_any_split_accepted_when_known_splits_is_none(tmp_path):
    path = write_csv(tmp_path, "aaa,1,dog,val\n")
    df, report = read_vggsound_csv(path, known_splits=None)
    assert report.n_ok == 1 and df["split"].to_list() == ["val"]


def test_report_json_round_trip(tmp_path):
    path = write_csv(tmp_path, "aaa,1,dog,train\naaa,-1,dog,train\naaa,1,cat,train\n")
    _, report = read_vggsound_csv(path)
    again = ParseReport.from_json(report.to_json())
    assert again == report
    assert again.n_duplicates == 1 and again.n_malformed == 1


# -- selection on single-label data ---------------------------------------------------------


@pytest.fixture
def vgg_df(tmp_path):
    rows = []
    for label in ("dog", "cat", "cow"):
        for i in range(20):
            split = "test" if i % 4 == 0 else "train"
            rows.append(f"{label}{i:02d},{i},{label},{split}\n")
    df, _ = read_vggsound_csv(write_csv(tmp_path, "".join(rows)))
    return df


def test_select_splits_and_classes(vgg_df):
    out = select_clips(vgg_df, splits=["test"], classes=["dog", "cow"])
    assert set(out["split"]) == {"test"}
    assert sorted({lab for labs in out["labels"] for lab in labs}) == ["cow", "dog"]
    assert len(out) == 10
    assert out["clip_id"].is_monotonic_increasing
    assert len(select_clips(vgg_df, splits=[])) == len(vgg_df)  # empty = all


def test_unknown_class_and_split_are_errors_naming_them(vgg_df):
    with pytest.raises(SelectionError, match="'dgo'"):
        select_clips(vgg_df, classes=["dog", "dgo"])
    with pytest.raises(SelectionError, match="'trian'"):
        select_clips(vgg_df, splits=["trian"])
    with pytest.raises(SelectionError, match="empty list"):
        select_clips(vgg_df, classes=[])


def test_max_clips_per_class_is_seeded(vgg_df):
    a = select_clips(vgg_df, max_clips_per_class=5, seed=1)
    again = select_clips(vgg_df.sample(frac=1.0, random_state=3), max_clips_per_class=5, seed=1)
    other = select_clips(vgg_df, max_clips_per_class=5, seed=2)
    assert a["labels"].map(tuple).value_counts().to_dict() == {
        ("dog",): 5,
        ("cat",): 5,
        ("cow",): 5,
    }
    # Same seed -> same clips, whatever the input row order; another seed -> other clips.
    assert a["clip_id"].to_list() == again["clip_id"].to_list()
    assert a["clip_id"].to_list() != other["clip_id"].to_list()
    # A cap larger than a class keeps the whole class.
    assert len(select_clips(vgg_df, classes=["cat"], max_clips_per_class=100)) == 20


# -- scale (speed is measured by tests/benchmarks/bench_planning.py, not asserted) ------------


def test_200k_rows_parse_completely(tmp_path):
    rng = random.Random(0)
    alphabet = string.ascii_letters + string.digits + "-_"
    lines = [
        f"{''.join(rng.choices(alphabet, k=11))},{rng.randint(0, 300)},"
        f'"label {i % 300}, with comma",{"test" if i % 5 == 0 else "train"}\n'
        for i in range(200_000)
    ]
    path = tmp_path / "big.csv"
    path.write_text("".join(lines), encoding="utf-8")
    df, report = read_vggsound_csv(path)
    assert report.n_rows == 200_000
    assert report.n_ok + report.n_duplicates == 200_000
    assert len(df) == report.n_ok


def test_broken_file_is_an_error_naming_file_and_line(tmp_path):
    path = tmp_path / "broken.csv"
    path.write_bytes(b"aaa,1,dog,train\nbbb,2,\xff\xfe,train\n")
    with pytest.raises(ValueError, match=r"broken\.csv line 2: unreadable CSV"):
        read_vggsound_csv(path)


# -- one record, and the reader's defaults (manifest/vggsound.py) ------------------------------


def test_fields_are_stripped_and_middle_fields_form_the_label():
    assert parse_vggsound_fields([" aaa ", " 1.5 ", " dog ", " train "], VGGSOUND_SPLITS) == (
        "aaa",
        1.5,
        "dog",
        "train",
    )
    # Unquoted commas: fields 2 .. -2 joined back with their commas, inner spaces kept.
    assert parse_vggsound_fields(["aaa", "2", "a", " b", " c", "test"], None) == (
        "aaa",
        2.0,
        "a, b, c",
        "test",
    )


@pytest.mark.parametrize(
    ("fields", "splits", "message"),
    [
        (
            ["aaa", "1", "dog"],
            ("train", "test"),
            "expected 4 fields (id, start, label, split), got 3",
        ),
        (["", " ", "\t", ""], ("train", "test"), "empty row: only commas and whitespace"),
        (["aaa", "x", "dog", "train"], ("train", "test"), "start 'x' is not a number"),
        (["aaa", "1", " ", "train"], ("train", "test"), "empty label"),
        (["aaa", "1", "dog", " "], ("train", "test"), "empty split"),
        (
            ["aaa", "1", "dog", "val"],
            ("train", "test"),
            "split 'val' is not one of ['test', 'train']",
        ),
        (["aaa", "1", "dog", "train"], {"val"}, "split 'train' is not one of ['val']"),
    ],
)
def test_each_bad_record_has_its_exact_reason(fields, splits, message):
    with pytest.raises(MalformedRow) as err:
        parse_vggsound_fields(fields, splits)
    assert str(err.value) == message


def test_default_clip_is_ten_seconds_and_any_positive_length_is_allowed(tmp_path):
    path = write_csv(tmp_path, "aaa,12.5,dog,train\nbbb,0,cat,test\n")
    df, _ = read_vggsound_csv(path)
    assert df["end_s"].to_list() == [22.5, 10.0]
    df, _ = read_vggsound_csv(path, clip_seconds=0.5)
    assert df["end_s"].to_list() == [13.0, 0.5]
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError) as err:
            read_vggsound_csv(path, clip_seconds=bad)
        assert str(err.value) == f"clip_seconds must be > 0, got {bad}"


def test_only_rows_with_unquoted_commas_count_as_rescued(tmp_path):
    path = write_csv(
        tmp_path,
        'aaa,0,"quoted, comma",train\nbbb,1,dog,train\nccc,2,people marching, sound,test\n',
    )
    df, report = read_vggsound_csv(path)
    assert report.n_rescued_labels == 1
    assert report.rescued_examples == ["line 3: read as one label 'people marching, sound'"]
    assert df["labels"].to_list() == [["quoted, comma"], ["dog"], ["people marching, sound"]]
    assert df["line"].to_list() == [1, 2, 3]
