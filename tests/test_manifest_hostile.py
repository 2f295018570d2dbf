"""Hostile dataset CSVs (issue 10): files without usable rows, spreadsheet damage, rows
dropped or rescued without being named."""

from __future__ import annotations

import pandas as pd
import pytest

from wavbrivl.manifest.build import build_manifest
from wavbrivl.manifest.parsing import PARSED_COLUMNS
from wavbrivl.manifest.stage import DatasetConfig, make_manifest
from wavbrivl.manifest.vggsound import read_vggsound_csv

HTML = "<!DOCTYPE html>\n<html><head><title>Sign in</title></head>\n<body>nope</body></html>\n"
LABELS = "index,mid,display_name\n0,/m/068hy,Dog\n1,/m/0jbk,Animal\n2,/m/09x0r,Speech\n"
AUDIOSET_HEADER = (
    "# Segments csv created Sun Mar  5 10:54:31 2017\n"
    "# num_ytids=3, num_segs=3, num_unique_labels=3, num_positive_labels=4\n"
    "# YTID, start_seconds, end_seconds, positive_labels\n"
)


def config(fmt: str, csv, **extra) -> DatasetConfig:
    if fmt == "audioset":
        extra.setdefault("split_name", "eval")
    return DatasetConfig(
        format=fmt, csv=str(csv), n_shards=2, source={"url_template": "file:///m/{id}.mp4"}, **extra
    )


@pytest.mark.parametrize("fmt", ["vggsound", "audioset"])
@pytest.mark.parametrize(
    "content, shown",
    [
        (HTML, ["line 1: expected 4 fields", "'<!DOCTYPE html>'"]),
        ("", ["0 rows", "the file is empty"]),
        ("a;b;c\nx;y;z\n", ["2 malformed", "line 2: expected 4 fields", "'a;b;c'"]),
    ],
    ids=["html", "empty", "malformed"],
)
def test_no_usable_rows_names_the_file_and_shows_the_first_bad_lines(tmp_path, fmt, content, shown):
    path = tmp_path / "data.csv"
    path.write_text(content)
    out = tmp_path / "m.parquet"
    with pytest.raises(ValueError, match="no clips left") as err:
        make_manifest(config(fmt, path), out_path=out, log=lambda _: None)
    message = str(err.value)
    assert f"{path} has no usable rows" in message
    for text in shown:
        assert text in message
    assert not out.exists()


def test_build_manifest_of_no_rows_is_an_empty_table():
    empty = pd.DataFrame(columns=PARSED_COLUMNS)
    table, report = build_manifest(empty, n_shards=2, mapping={})
    assert table.num_rows == 0 and report.n_ok == 0


@pytest.mark.parametrize("fmt", ["vggsound", "audioset"])
def test_spreadsheet_error_ids_are_malformed_rows_not_comments(tmp_path, fmt):
    if fmt == "vggsound":
        body = "#NAME?,0,dog,train\naaa,0,dog,train\n#NAME?,10,cat,train\n"
    else:
        body = '#NAME?, 0.000, 10.000, "/m/068hy"\naaa, 0.000, 10.000, "/m/068hy"\n'
        body += '#NAME?, 5.000, 15.000, "/m/0jbk"\n'
    header = AUDIOSET_HEADER if fmt == "audioset" else ""
    path = tmp_path / "data.csv"
    path.write_text(header + body)
    lines: list[str] = []
    report = make_manifest(config(fmt, path), out_path=tmp_path / "m.parquet", log=lines.append)
    first = len(header.splitlines()) + 1
    assert (report.n_rows, report.n_ok, report.n_malformed) == (3, 1, 2)
    reason = "id '#NAME?' is a spreadsheet error value (was the file saved by a spreadsheet?)"
    assert f"  line {first}: {reason}" in lines
    assert f"  line {first + 2}: {reason}" in lines


@pytest.mark.parametrize("fmt", ["vggsound", "audioset"])
def test_byte_order_marks_and_blank_looking_lines(tmp_path, fmt):
    # What Windows tools write, and `cat` of two such files: a BOM at the file start and at
    # a later line's start, CRLF endings, lines of spaces or tabs, spreadsheet rows of only
    # commas. Whitespace lines are not rows; comma-only rows are counted and named.
    if fmt == "vggsound":
        rows = ["aaa,0,dog,train", "bbb,5,dog,test", "ccc,3,dog,train"]
        header = []
    else:
        rows = [f'{i}, {s}.000, {s + 10}.000, "/m/068hy"' for i, s in (("aaa", 0), ("bbb", 5))]
        rows.append('ccc, 3.000, 13.000, "/m/068hy"')
        header = AUDIOSET_HEADER.splitlines()
        header.insert(1, "  \t")
    lines = header + [rows[0], "   ", "\t", ",,,", rows[1], " , , , ", "\ufeff" + rows[2], ""]
    path = tmp_path / "data.csv"
    path.write_bytes(("\ufeff" + "\r\n".join(lines)).encode("utf-8"))
    first = len(header) + 1  # file line of the first row

    log: list[str] = []
    out = tmp_path / "m.parquet"
    report = make_manifest(config(fmt, path), out_path=out, log=log.append)

    assert (report.n_rows, report.n_ok, report.n_malformed, report.n_duplicates) == (5, 3, 2, 0)
    assert "data.csv: 5 rows, 3 ok, 2 malformed, 0 duplicate ids" in log
    assert f"  line {first + 3}: empty row: only commas and whitespace" in log
    assert f"  line {first + 5}: empty row: only commas and whitespace" in log
    manifest = pd.read_parquet(out).sort_values("source_id")
    assert manifest["clip_id"].tolist() == ["aaa_0", "bbb_5000", "ccc_3000"]


def test_comment_like_lines_after_the_header_are_data(tmp_path):
    path = tmp_path / "v.csv"
    path.write_text("# my header\naaa,0,dog,train\n# a late note\n")
    _, report = read_vggsound_csv(path)
    assert (report.n_rows, report.n_ok, report.n_malformed) == (2, 1, 1)
    assert report.examples == ["line 3: expected 4 fields (id, start, label, split), got 1"]


def audioset_files(tmp_path, body: str):
    segments = tmp_path / "eval_segments.csv"
    segments.write_text(AUDIOSET_HEADER + body)
    labels = tmp_path / "class_labels_indices.csv"
    labels.write_text(LABELS)
    return segments, labels


def test_stray_quotes_around_audioset_labels_are_cleaned(tmp_path):
    # What a spreadsheet writes back: the label list's quotes end up inside the fields.
    body = 'aaa, 0.000, 10.000, """/m/068hy", "/m/0jbk"""\nbbb, 5.000, 15.000, "/m/09x0r "\n'
    segments, labels = audioset_files(tmp_path, body)
    out = tmp_path / "m.parquet"
    lines: list[str] = []
    make_manifest(
        config("audioset", segments, labels_csv=str(labels)), out_path=out, log=lines.append
    )
    rows = {r["source_id"]: r for r in pd.read_parquet(out).to_dict("records")}
    assert list(rows["aaa"]["labels"]) == ["/m/068hy", "/m/0jbk"]
    assert list(rows["aaa"]["label_names"]) == ["Dog", "Animal"]
    assert list(rows["bbb"]["label_names"]) == ["Speech"]
    assert not any("unknown" in line for line in lines)


def test_unknown_audioset_labels_are_counted_and_shown(tmp_path):
    body = (
        'aaa, 0.000, 10.000, "/m/068hy,/m/0jbk"\n'
        'bbb, 5.000, 15.000, "/m/09x0r,/m/zzz"\n'
        'ccc, 1.000, 11.000, "/m/068hy"\n'
    )
    segments, labels = audioset_files(tmp_path, body)
    lines: list[str] = []
    make_manifest(
        config("audioset", segments, labels_csv=str(labels)),
        out_path=tmp_path / "m.parquet",
        log=lines.append,
    )
    assert f"{segments}: 1 of 5 labels unknown to {labels} (kept as they are); first:" in lines
    assert "  line 5: '/m/zzz'" in lines


def test_mostly_unknown_audioset_labels_stop_with_a_mangled_error(tmp_path):
    body = "".join(f'y{i}, 0.000, 10.000, "/m/bad{i},/m/068hy;x"\n' for i in range(4))
    body += 'ok1, 0.000, 10.000, "/m/068hy"\n'
    segments, labels = audioset_files(tmp_path, body)
    out = tmp_path / "m.parquet"
    message = (
        f"{segments} looks mangled: 8 of 9 labels unknown to {labels}; "
        "first: line 4: '/m/bad0', line 4: '/m/068hy;x', line 5: '/m/bad1'"
    )
    with pytest.raises(ValueError, match="looks mangled") as err:
        make_manifest(
            config("audioset", segments, labels_csv=str(labels)), out_path=out, log=lambda _: None
        )
    assert str(err.value).startswith(message)
    assert not out.exists()


def test_clips_without_a_url_are_named_even_after_many_malformed_rows(tmp_path):
    body = "".join(f"bad{i},x,dog,train\n" for i in range(6)) + "aaa,0,dog,train\nbbb,0,dog,train\n"
    path = tmp_path / "v.csv"
    path.write_text(body)
    mapping = tmp_path / "sources.csv"
    mapping.write_text("aaa,file:///m/aaa.mp4\n")
    lines: list[str] = []
    report = make_manifest(
        DatasetConfig(
            format="vggsound", csv=str(path), n_shards=1, source={"mapping_csv": str(mapping)}
        ),
        out_path=tmp_path / "m.parquet",
        log=lines.append,
    )
    assert report.n_malformed == 7
    assert f"{mapping}: 1 selected clips have no source url, dropped" in lines
    assert "  line 8: no source url for id 'bbb'" in lines


def test_labels_rescued_from_unquoted_commas_are_counted_and_shown(tmp_path):
    path = tmp_path / "v.csv"
    path.write_text('aaa,0,people marching, sound,train\nbbb,0,"cat, purring",train\n')
    lines: list[str] = []
    report = make_manifest(
        config("vggsound", path), out_path=tmp_path / "m.parquet", log=lines.append
    )
    assert report.n_rescued_labels == 1
    assert "  1 labels had unquoted commas and were read as one label:" in lines
    assert "    line 1: read as one label 'people marching, sound'" in lines
