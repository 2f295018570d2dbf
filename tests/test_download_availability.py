"""The availability report (download/availability.py): clips per status per class.

Counts are a hand-made set of clips whose expected table is written out by hand; the plot is
checked on the matplotlib Figure the code builds (caught as it is saved), as in test_report.py.
Each test calls the code itself (no shared module-scoped result: mutmut links tests to the
functions they call).
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from wavbrivl import status as st
from wavbrivl.atomic import write_table_atomic
from wavbrivl.download import availability as av
from wavbrivl.download.status_table import STATUS_SCHEMA, Clip, status_row

# clip -> class; clip -> status. By hand: dog 4 clips (ok 2, unavailable 1, deferred 1),
# cat 3 clips (ok 1, rate_limited 1, no status row 1), "" -> (no label) 1 clip (ok).
CLASSES = {
    "d1": "dog",
    "d2": "dog",
    "d3": "dog",
    "d4": "dog",
    "c1": "cat",
    "c2": "cat",
    "c3": "cat",
    "n1": "",
}
STATUSES = {
    "d1": st.OK,
    "d2": st.OK,
    "d3": st.UNAVAILABLE,
    "d4": st.DEFERRED,
    "c1": st.RATE_LIMITED,
    "c2": st.OK,
    "n1": st.OK,
    "zz": st.OK,  # not in the manifest
}
VOCABULARY = [
    "ok",
    "unavailable",
    "private",
    "rate_limited",
    "timeout",
    "bad_media",
    "error",
    "missing",
    "deferred",
]
EXPECTED_TSV = (
    "class\tclips\tok\tunavailable\tprivate\trate_limited\ttimeout\tbad_media\terror\tmissing\tdeferred"
    "\tno_row\tok_share\n"
    "(all)\t8\t4\t1\t0\t1\t0\t0\t0\t0\t1\t1\t0.5000\n"
    "(no label)\t1\t1\t0\t0\t0\t0\t0\t0\t0\t0\t0\t1.0000\n"
    "cat\t3\t1\t0\t0\t1\t0\t0\t0\t0\t0\t1\t0.3333\n"
    "dog\t4\t2\t1\t0\t0\t0\t0\t0\t0\t1\t0\t0.5000\n"
)


def test_counts_per_class_and_status_by_hand():
    counts = av.availability_counts(CLASSES, STATUSES)
    assert list(counts.index) == ["(no label)", "cat", "dog"]
    assert counts.index.name == "class"
    assert list(counts.columns) == [*VOCABULARY, "no_row"]
    assert counts.loc["dog"].to_dict() == dict.fromkeys(VOCABULARY, 0) | {
        "ok": 2,
        "unavailable": 1,
        "deferred": 1,
        "no_row": 0,
    }
    assert counts.loc["cat"].to_dict() == dict.fromkeys(VOCABULARY, 0) | {
        "ok": 1,
        "rate_limited": 1,
        "no_row": 1,
    }
    assert counts.loc["(no label)", "ok"] == 1
    assert counts.to_numpy().sum() == len(CLASSES)  # the stray "zz" is not counted
    assert all(dtype == "int64" for dtype in counts.dtypes)


def test_every_vocabulary_status_is_a_column_even_when_absent_and_others_follow_sorted():
    counts = av.availability_counts({"a": "x", "b": "x", "c": "y"}, {"a": "zeta", "b": "held"})
    assert list(counts.columns) == [*VOCABULARY, "held", "no_row", "zeta"]
    assert counts.loc["x"].sum() == 2 and counts.loc["y", "no_row"] == 1


def test_class_names_lose_tabs_and_line_breaks():
    counts = av.availability_counts({"a": "dog\tbarking\nloud"}, {"a": st.OK})
    assert list(counts.index) == ["dog barking loud"]


def test_stray_status_rows_are_listed_sorted():
    assert av.stray_clips(CLASSES, STATUSES) == ["zz"]
    assert av.stray_clips({"a": "x"}, {"b": st.OK, "a": st.OK, "0": st.OK}) == ["0", "b"]


def test_tsv_text_by_hand():
    assert av.availability_tsv(av.availability_counts(CLASSES, STATUSES)) == EXPECTED_TSV


def test_tsv_of_an_empty_dataset():
    counts = av.availability_counts({}, {})
    assert list(counts.columns) == VOCABULARY and len(counts) == 0
    assert all(dtype == "int64" for dtype in counts.dtypes)
    text = av.availability_tsv(counts)
    assert text.splitlines()[1] == "(all)\t0\t" + "\t".join(["0"] * 9) + "\t0.0000"
    assert len(text.splitlines()) == 2


def test_plotted_classes_lowest_ok_share_first_then_name_and_capped():
    counts = av.availability_counts(
        {"a": "b_half", "b": "b_half", "c": "a_half", "d": "a_half", "e": "none", "f": "all"},
        {"a": st.OK, "b": st.DEFERRED, "c": st.OK, "d": st.ERROR, "e": st.PRIVATE, "f": st.OK},
    )
    assert av.plotted_classes(counts) == ["none", "a_half", "b_half", "all"]
    assert av.plotted_classes(counts, limit=2) == ["none", "a_half"]
    assert av.MAX_PLOTTED_CLASSES == 40


# -- the plot ----------------------------------------------------------------------------------


def _draw(counts: pd.DataFrame, path: Path, monkeypatch, **kwargs) -> Figure:
    figures = []
    original = Figure.savefig

    def spy(fig, fname, *args, **kw):
        figures.append(fig)
        return original(fig, fname, *args, **kw)

    monkeypatch.setattr(Figure, "savefig", spy)
    av.plot_availability(counts, path, "vgg: 8 clips", **kwargs)
    monkeypatch.undo()
    (fig,) = figures
    return fig


def _bars(fig: Figure) -> dict[str, list[tuple[float, float, float]]]:
    """status -> [(y, left, width)] of its bars."""
    (ax,) = fig.axes
    out = {}
    for container in ax.containers:
        out[container.get_label()] = [
            (p.get_y() + p.get_height() / 2, p.get_x(), p.get_width()) for p in container.patches
        ]
    return out


def test_plot_stacks_each_class_shares_with_all_classes_on_top(tmp_path, monkeypatch):
    fig = _draw(av.availability_counts(CLASSES, STATUSES), tmp_path / "a.png", monkeypatch)
    (ax,) = fig.axes
    labels = [t.get_text() for t in ax.get_yticklabels()]
    # (all), then by ok share: cat 1/3, dog 2/4, (no label) 1/1
    assert labels == ["(all) (n=8)", "cat (n=3)", "dog (n=4)", "(no label) (n=1)"]
    assert ax.yaxis_inverted() and ax.get_ylim() == (3.5, -0.5)
    bars = _bars(fig)
    # only statuses that occur, in column order
    assert list(bars) == ["ok", "unavailable", "rate_limited", "deferred", "no_row"]
    approx = pytest.approx
    assert [w for _, _, w in bars["ok"]] == approx([4 / 8, 1 / 3, 2 / 4, 1.0])
    assert [w for _, _, w in bars["unavailable"]] == approx([1 / 8, 0, 1 / 4, 0])
    assert [w for _, _, w in bars["no_row"]] == approx([1 / 8, 1 / 3, 0, 0])
    # stacked: each status starts where the ones before it end (dog: ok 0.5, unavailable
    # 0.25, rate_limited 0, then deferred from 0.75)
    assert [left for _, left, _ in bars["deferred"]] == approx([6 / 8, 2 / 3, 3 / 4, 1.0])
    assert [y for y, _, _ in bars["ok"]] == [0, 1, 2, 3]
    for status, colour in (("ok", "#2ca02c"), ("deferred", "#1f77b4"), ("no_row", "#7f7f7f")):
        (ax_container,) = [c for c in ax.containers if c.get_label() == status]
        assert ax_container.patches[0].get_facecolor() == to_rgba(colour), status
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == [
        "ok",
        "unavailable",
        "rate_limited",
        "deferred",
        "no_row",
    ]
    assert legend._loc == 8  # "lower center" (matplotlib's location code)
    assert legend._ncols == 5  # one row: a column per status shown
    assert legend.get_texts()[0].get_fontsize() == 8
    assert ax.get_xlim() == (0, 1)
    assert ax.get_xlabel() == "share of the class's clips"
    assert ax.get_title() == "vgg: 8 clips"
    assert ax.title.get_fontsize() == 9
    assert isinstance(ax.patches[0], Rectangle)
    assert ax.get_subplotspec().get_geometry() == (1, 1, 0, 0)
    assert isinstance(fig.canvas, FigureCanvasAgg)  # no pyplot, no display
    # the axes (with their tick labels) sit above the legend's strip of 0.4 inches
    strip = av.LEGEND_INCHES / fig.get_size_inches()[1]
    assert av.LEGEND_INCHES == 0.4
    assert ax.get_tightbbox().y0 / fig.bbox.height >= strip - 1e-3
    assert ax.get_position().y0 < 3 * strip  # not pushed further up than needed
    assert ax.get_tightbbox().x1 <= fig.bbox.width and ax.get_tightbbox().y1 <= fig.bbox.height


def test_plot_size_grows_with_the_classes_and_the_png_is_written(tmp_path, monkeypatch):
    fig = _draw(av.availability_counts(CLASSES, STATUSES), tmp_path / "a.png", monkeypatch)
    assert tuple(fig.get_size_inches()) == pytest.approx((9, 1.6 + 0.3 * 4))
    png = (tmp_path / "a.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == (900, 280)


def test_plot_of_an_empty_dataset_has_one_empty_bar(tmp_path, monkeypatch):
    fig = _draw(av.availability_counts({}, {}), tmp_path / "a.png", monkeypatch)
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_yticklabels()] == ["(all) (n=0)"]
    assert ax.containers == [] and ax.get_xlim() == (0, 1)
    assert fig.legends == []  # nothing to name


def test_plot_shares_divide_by_each_class_total(tmp_path, monkeypatch):
    counts = av.availability_counts(
        {"a": "one", "b": "two", "c": "two"}, {"a": st.UNAVAILABLE, "b": st.OK, "c": st.ERROR}
    )
    bars = _bars(_draw(counts, tmp_path / "a.png", monkeypatch))
    # rows: (all) 3 clips, then one (ok share 0), two (ok share 1/2)
    assert [w for _, _, w in bars["unavailable"]] == pytest.approx([1 / 3, 1.0, 0.0])
    assert [w for _, _, w in bars["ok"]] == pytest.approx([1 / 3, 0.0, 0.5])
    assert [left for _, left, _ in bars["error"]] == pytest.approx([2 / 3, 1.0, 0.5])
    assert list(bars) == ["ok", "unavailable", "error"]  # each occurs exactly once


def test_plot_of_many_classes_shows_the_worst_and_says_so(tmp_path, monkeypatch):
    classes = {f"c{i}": f"class{i:02d}" for i in range(6)}
    statuses = {f"c{i}": st.OK for i in range(3)}  # class00-02 all ok, class03-05 none
    counts = av.availability_counts(classes, statuses)
    fig = _draw(counts, tmp_path / "a.png", monkeypatch, limit=2)
    (ax,) = fig.axes
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["(all) (n=6)", "class03 (n=1)", "class04 (n=1)"]
    assert ax.get_title() == "vgg: 8 clips (2 of 6 classes, lowest ok share first)"


# -- from the files ----------------------------------------------------------------------------


def _manifest(path: Path) -> Path:
    ids = list(CLASSES)
    names = [[c] if c else [] for c in CLASSES.values()]
    labels = [[f"/m/{c}"] if c else [] for c in CLASSES.values()]
    table = pa.table(
        {"clip_id": ids, "labels": labels, "label_names": names},
        schema=pa.schema(
            [
                ("clip_id", pa.string()),
                ("labels", pa.list_(pa.string())),
                ("label_names", pa.list_(pa.string())),
            ]
        ),
    )
    pq.write_table(table, path)
    return path


def _status_table(path: Path, statuses: dict[str, str]) -> Path:
    rows = [status_row(Clip(cid, f"u/{cid}", 0, 1), s, "", 1) for cid, s in statuses.items()]
    write_table_atomic(path, pa.Table.from_pylist(rows, schema=STATUS_SCHEMA))
    return path


def test_report_from_the_manifest_and_every_shard(tmp_path):
    manifest = _manifest(tmp_path / "m.parquet")
    items = list(STATUSES.items())
    shards = [
        _status_table(tmp_path / "000.status.parquet", dict(items[:3])),
        _status_table(tmp_path / "001.status.parquet", dict(items[3:])),
    ]
    out = tmp_path / "reports" / "availability"
    log = io.StringIO()

    counts = av.write_availability_report(
        manifest, shards, out / "vgg.tsv", out / "vgg.png", "vgg", log=log
    )

    assert (out / "vgg.tsv").read_text(encoding="utf-8") == EXPECTED_TSV
    assert (out / "vgg.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.iterdir()) == ["vgg.png", "vgg.tsv"]
    assert counts.loc["dog", "deferred"] == 1
    lines = log.getvalue().splitlines()
    assert lines == [
        f"availability: 1 status row(s) name clips not in {manifest} (left out): ['zz']",
        "availability: vgg: ok=4 unavailable=1 rate_limited=1 deferred=1 no_row=1",
    ]


def test_report_title_counts_clips_and_classes(tmp_path, monkeypatch):
    titles = []
    monkeypatch.setattr(av, "plot_availability", lambda counts, path, title: titles.append(title))
    manifest = _manifest(tmp_path / "m.parquet")
    shard = _status_table(tmp_path / "000.status.parquet", STATUSES)
    av.write_availability_report(manifest, [shard], tmp_path / "a.tsv", tmp_path / "a.png", "vgg")
    assert titles == ["vgg: 8 clips, 3 classes"]


def test_a_report_without_a_log_is_silent_and_without_strays_says_nothing_of_them(tmp_path):
    manifest = _manifest(tmp_path / "m.parquet")
    shard = _status_table(
        tmp_path / "000.status.parquet", {k: v for k, v in STATUSES.items() if k != "zz"}
    )
    log = io.StringIO()
    av.write_availability_report(
        manifest, [shard], tmp_path / "a.tsv", tmp_path / "a.png", "vgg", log=log
    )
    assert log.getvalue().count("\n") == 1 and "left out" not in log.getvalue()
    av.write_availability_report(manifest, [shard], tmp_path / "b.tsv", tmp_path / "b.png", "v")
    assert (tmp_path / "b.tsv").read_text(encoding="utf-8") == (tmp_path / "a.tsv").read_text(
        encoding="utf-8"
    )


def test_a_report_lists_at_most_five_strays_and_makes_each_output_folder(tmp_path):
    manifest = _manifest(tmp_path / "m.parquet")
    strays = {f"s{i}": st.OK for i in range(7)}
    shard = _status_table(tmp_path / "000.status.parquet", STATUSES | strays)
    log = io.StringIO()
    tsv, png = tmp_path / "t" / "deep" / "vgg.tsv", tmp_path / "p" / "deep" / "vgg.png"
    av.write_availability_report(manifest, [shard], tsv, png, "vgg", log=log)
    first = log.getvalue().splitlines()[0]
    assert first.endswith("(left out): ['s0', 's1', 's2', 's3', 's4']")
    assert first.startswith("availability: 8 status row(s) name clips not in")
    assert tsv.read_text(encoding="utf-8") == EXPECTED_TSV
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_report_of_no_clips_says_so(tmp_path):
    manifest = tmp_path / "m.parquet"
    empty = pa.schema([("clip_id", pa.string()), ("labels", pa.list_(pa.string()))])
    empty = empty.append(pa.field("label_names", pa.list_(pa.string())))
    pq.write_table(empty.empty_table(), manifest)
    log = io.StringIO()
    av.write_availability_report(
        manifest, [], tmp_path / "a.tsv", tmp_path / "a.png", "none", log=log
    )
    assert log.getvalue() == "availability: none: no clips\n"
