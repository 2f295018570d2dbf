"""The retrieval report (evaluate/report.py): the exact text of metrics.json and metrics.tsv,
and the bar plot checked on the matplotlib Figure the code builds (caught as it is saved) and
on the PNG it writes.

The metrics are a hand-written table, not the output of retrieval_metrics: every value and
chance differs between the two directions and the two levels, so a swap of direction, level,
value or chance changes what is checked."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import matplotlib as mpl
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PathCollection
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from wavbrivl.evaluate import write_retrieval_report
from wavbrivl.evaluate.report import metric_rows

ARROW = "\u2192"

# direction, level, metric, value, chance (in the order retrieval_metrics builds the cells)
ROWS = [
    ("audio_to_image", "instance", "R@1", 0.25, 1 / 13),
    ("audio_to_image", "instance", "R@5", 0.5, 5 / 13),
    ("audio_to_image", "instance", "R@10", 0.75, 10 / 13),
    ("audio_to_image", "instance", "median_rank", 2.5, 7.0),
    ("audio_to_image", "instance", "mAP", 1 / 3, 0.24),
    ("audio_to_image", "class", "R@1", 0.4, 0.2),
    ("audio_to_image", "class", "R@5", 0.9, 0.65),
    ("audio_to_image", "class", "R@10", 1.0, 0.95),
    ("audio_to_image", "class", "median_rank", 1.0, 3.14159),
    ("audio_to_image", "class", "mAP", 0.55, 0.3),
    ("image_to_audio", "instance", "R@1", 0.15, 1 / 13),
    ("image_to_audio", "instance", "R@5", 0.45, 5 / 13),
    ("image_to_audio", "instance", "R@10", 0.7, 10 / 13),
    ("image_to_audio", "instance", "median_rank", 6.5, 7.0),
    ("image_to_audio", "instance", "mAP", 0.2, 0.24),
    ("image_to_audio", "class", "R@1", 0.35, 0.2),
    ("image_to_audio", "class", "R@5", 0.8, 0.65),
    ("image_to_audio", "class", "R@10", 0.85, 0.95),
    ("image_to_audio", "class", "median_rank", 2.0, 3.14159),
    ("image_to_audio", "class", "mAP", 0.45, 0.3),
]

# the same table as metrics.tsv must write it: %.6g by hand (1/13 = 0.0769230769...)
TSV = """\
direction\tlevel\tmetric\tvalue\tchance
audio_to_image\tinstance\tR@1\t0.25\t0.0769231
audio_to_image\tinstance\tR@5\t0.5\t0.384615
audio_to_image\tinstance\tR@10\t0.75\t0.769231
audio_to_image\tinstance\tmedian_rank\t2.5\t7
audio_to_image\tinstance\tmAP\t0.333333\t0.24
audio_to_image\tclass\tR@1\t0.4\t0.2
audio_to_image\tclass\tR@5\t0.9\t0.65
audio_to_image\tclass\tR@10\t1\t0.95
audio_to_image\tclass\tmedian_rank\t1\t3.14159
audio_to_image\tclass\tmAP\t0.55\t0.3
image_to_audio\tinstance\tR@1\t0.15\t0.0769231
image_to_audio\tinstance\tR@5\t0.45\t0.384615
image_to_audio\tinstance\tR@10\t0.7\t0.769231
image_to_audio\tinstance\tmedian_rank\t6.5\t7
image_to_audio\tinstance\tmAP\t0.2\t0.24
image_to_audio\tclass\tR@1\t0.35\t0.2
image_to_audio\tclass\tR@5\t0.8\t0.65
image_to_audio\tclass\tR@10\t0.85\t0.95
image_to_audio\tclass\tmedian_rank\t2\t3.14159
image_to_audio\tclass\tmAP\t0.45\t0.3
"""

BARS = ["R@1", "R@5", "R@10", "mAP"]


def _metrics(rows=ROWS, n_clips=13, n_classes=5) -> dict:
    metrics: dict = {"n_clips": n_clips, "n_classes": n_classes, "ks": [1, 5, 10]}
    for direction, level, name, value, chance in rows:
        cells = metrics.setdefault(direction, {}).setdefault(level, {})
        cells[name] = {"value": value, "chance": chance}
    return metrics


def _cell(direction: str, level: str, name: str, field: str) -> float:
    (row,) = [r for r in ROWS if r[:3] == (direction, level, name)]
    return row[3] if field == "value" else row[4]


@dataclass
class Drawn:
    fig: Figure
    saved_to: Path  # the path savefig was given
    out: Path


def _draw(metrics: dict, out: Path, monkeypatch) -> Drawn:
    """Write the report, catching the Figure as it is saved."""
    calls = []
    original = Figure.savefig

    def spy(fig, fname, *args, **kwargs):
        calls.append((fig, Path(fname)))
        return original(fig, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", spy)
    write_retrieval_report(metrics, out)
    monkeypatch.undo()
    ((fig, saved_to),) = calls
    return Drawn(fig, saved_to, out)


@pytest.fixture
def drawn(tmp_path, monkeypatch) -> Drawn:
    """The report of the table above. Each test draws its own: mutmut links a test to the
    functions it calls, so a shared module-scoped report would leave all but the first test
    unlinked to the plotting code."""
    return _draw(_metrics(), tmp_path / "runs" / "eval", monkeypatch)  # neither folder exists


# -- the files ---------------------------------------------------------------------------------


def test_metric_rows_follow_directions_then_levels_then_the_cells_order():
    assert metric_rows(_metrics()) == ROWS
    # built in reverse, the dict starts with image -> audio, class level, mAP: the rows still
    # start with audio -> image at the instance level, its cells in the dict's own order
    backwards = metric_rows(_metrics(rows=ROWS[::-1]))
    assert backwards[:5] == ROWS[4::-1]
    assert backwards[-5:] == ROWS[:14:-1]
    assert sorted(backwards) == sorted(ROWS)


def test_the_report_writes_exactly_three_files_into_a_new_nested_folder(drawn):
    assert sorted(p.name for p in drawn.out.iterdir()) == [
        "metrics.json",
        "metrics.tsv",
        "retrieval.png",
    ]


def test_tsv_has_the_header_and_one_line_per_metric_in_six_significant_digits(drawn):
    assert (drawn.out / "metrics.tsv").read_text(encoding="utf-8") == TSV


def test_json_is_the_metrics_indented_by_two_spaces_with_a_final_newline(drawn):
    text = (drawn.out / "metrics.json").read_text(encoding="utf-8")
    assert json.loads(text) == _metrics()
    lines = text.split("\n")
    assert lines[:3] == ["{", '  "n_clips": 13,', '  "n_classes": 5,']
    assert '      "R@1": {' in lines  # third level: six spaces
    assert '        "value": 0.25,' in lines
    assert lines[-2:] == ["}", ""]  # one newline after the closing brace, no more


def test_a_second_report_into_the_same_folder_replaces_the_files(tmp_path):
    """An existing output folder is fine (a rerun of the evaluation overwrites its report)."""
    write_retrieval_report(_metrics(), tmp_path)
    write_retrieval_report(_metrics(n_clips=14), tmp_path)
    assert json.loads((tmp_path / "metrics.json").read_text())["n_clips"] == 14
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "metrics.json",
        "metrics.tsv",
        "retrieval.png",
    ]


def test_the_plot_is_drawn_into_a_png_named_temporary_next_to_its_target(drawn):
    """atomic_path's temporary keeps the .png type in its name, and is renamed away."""
    assert drawn.saved_to.parent == drawn.out
    assert drawn.saved_to.name.startswith(".retrieval.png.")
    assert drawn.saved_to.name.endswith(".png.tmp")
    assert not drawn.saved_to.exists()


def test_png_is_10_by_4_4_inches_at_120_dpi(drawn):
    png = (drawn.out / "retrieval.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    assert struct.unpack(">II", png[16:24]) == (1200, 528)  # 10 * 120, 4.4 * 120
    assert tuple(drawn.fig.get_size_inches()) == pytest.approx((10, 4.4))
    assert drawn.fig.dpi == 120
    assert isinstance(drawn.fig.canvas, FigureCanvasAgg)  # no pyplot, no display


# -- the figure --------------------------------------------------------------------------------


def test_two_panels_side_by_side_one_per_level(drawn):
    instance, cls = drawn.fig.axes
    assert instance.get_subplotspec().get_geometry() == (1, 2, 0, 0)
    assert cls.get_subplotspec().get_geometry() == (1, 2, 1, 1)
    assert instance.get_title().startswith("instance level")
    assert cls.get_title().startswith("class level")


def test_panel_titles_give_each_directions_median_rank_and_its_chance(drawn):
    instance, cls = drawn.fig.axes
    assert instance.get_title() == (
        "instance level: median rank\n"
        f"audio {ARROW} image 2.5 (chance 7); image {ARROW} audio 6.5 (chance 7)"
    )
    assert cls.get_title() == (
        "class level: median rank\n"
        f"audio {ARROW} image 1 (chance 3.14); image {ARROW} audio 2 (chance 3.14)"
    )
    assert instance.title.get_fontsize() == cls.title.get_fontsize() == 9


def test_suptitle_counts_clips_and_classes(drawn):
    assert drawn.fig.get_suptitle() == "retrieval, N = 13 clips, 5 classes"


def test_x_axis_names_the_four_bars_and_y_axis_spans_zero_to_one(drawn):
    for ax in drawn.fig.axes:
        assert list(ax.get_xticks()) == [0, 1, 2, 3]
        assert [t.get_text() for t in ax.get_xticklabels()] == BARS
        assert ax.get_ylim() == (0, 1)


def test_y_axis_stays_zero_to_one_for_a_table_of_zeros(tmp_path, monkeypatch):
    """The scale is fixed, not fitted to the data: with nothing above zero, matplotlib's
    own autoscaling would put the bottom below zero."""
    zeros = [(d, lvl, name, 0.0, 0.0) for d, lvl, name, _, _ in ROWS]
    fig = _draw(_metrics(rows=zeros), tmp_path, monkeypatch).fig
    assert [ax.get_ylim() for ax in fig.axes] == [(0, 1), (0, 1)]


@pytest.mark.parametrize("panel, level", [(0, "instance"), (1, "class")])
def test_bars_are_the_values_left_audio_to_image_right_image_to_audio(drawn, panel, level):
    """Each direction's bars are 0.38 wide, centred 0.19 left (audio -> image) or right
    (image -> audio) of the tick, as high as the metric's value."""
    ax = drawn.fig.axes[panel]
    assert len(ax.containers) == 2
    for container, direction, shift in zip(
        ax.containers, ("audio_to_image", "image_to_audio"), (-0.19, 0.19), strict=True
    ):
        assert container.get_label() == _pretty(direction)
        patches = list(container)
        assert [p.get_height() for p in patches] == pytest.approx(
            [_cell(direction, level, b, "value") for b in BARS]
        )
        assert [p.get_width() for p in patches] == pytest.approx([0.38] * 4)
        centres = [p.get_x() + p.get_width() / 2 for p in patches]
        assert centres == pytest.approx([i + shift for i in range(4)])


@pytest.mark.parametrize("panel, level", [(0, "instance"), (1, "class")])
def test_chance_levels_are_black_dashes_over_each_bar(drawn, panel, level):
    """A black horizontal dash (marker '_', size 300, drawn above the bars) at each bar's
    chance level; only the first direction's dashes are named in the legend."""
    ax = drawn.fig.axes[panel]
    assert len(ax.collections) == 2
    for n, (dashes, direction, shift) in enumerate(
        zip(ax.collections, ("audio_to_image", "image_to_audio"), (-0.19, 0.19), strict=True)
    ):
        offsets = dashes.get_offsets()
        assert list(offsets[:, 0]) == pytest.approx([i + shift for i in range(4)])
        assert list(offsets[:, 1]) == pytest.approx(
            [_cell(direction, level, b, "chance") for b in BARS]
        )
        assert list(dashes.get_sizes()) == [300]
        assert [tuple(c) for c in dashes.get_facecolor()] == [to_rgba("black")]
        assert dashes.get_zorder() == 3
        (marker,) = dashes.get_paths()
        assert list(marker.vertices[:, 1]) == pytest.approx([0, 0])  # a horizontal line
        assert sorted(marker.vertices[:, 0]) == pytest.approx([-0.5, 0.5])
        if n == 0:
            assert dashes.get_label() == "chance"
        else:
            assert dashes.get_label().startswith("_")  # not in the legend


def test_legend_names_chance_and_both_directions_with_arrows(drawn):
    (legend,) = drawn.fig.legends
    texts = legend.get_texts()
    assert [t.get_text() for t in texts] == [
        "chance",
        f"audio {ARROW} image",
        f"image {ARROW} audio",
    ]
    assert [t.get_fontsize() for t in texts] == [8, 8, 8]


def test_legend_keys_look_like_the_series_they_name(drawn):
    """Next to each name the key is drawn like that series: a black dash for chance, a
    patch in the colour of that direction's bars. The directions differ in colour and keep
    it in both panels, so one legend serves both."""
    (legend,) = drawn.fig.legends
    chance, audio_to_image, image_to_audio = legend.legend_handles
    assert isinstance(chance, PathCollection)
    assert [tuple(c) for c in chance.get_facecolor()] == [to_rgba("black")]
    for panel in drawn.fig.axes:
        first, second = ([p.get_facecolor() for p in c] for c in panel.containers)
        assert isinstance(audio_to_image, Rectangle)
        assert first == [audio_to_image.get_facecolor()] * 4
        assert isinstance(image_to_audio, Rectangle)
        assert second == [image_to_audio.get_facecolor()] * 4
    assert audio_to_image.get_facecolor() != image_to_audio.get_facecolor()


def test_legend_is_one_row_centred_under_the_panels(drawn):
    fig = drawn.fig
    renderer = fig.canvas.get_renderer()
    (legend,) = fig.legends
    box = legend.get_window_extent(renderer)  # pixels, origin at the bottom left
    assert (box.x0 + box.x1) / 2 == pytest.approx(1200 / 2, abs=1)
    assert 0 < box.y0 and box.y1 < 0.07 * 528  # inside the strip kept free under the panels
    texts = [t.get_window_extent(renderer) for t in legend.get_texts()]
    assert len({t.y0 for t in texts}) == 1  # one row: three columns
    assert texts[0].x1 < texts[1].x0 and texts[1].x1 < texts[2].x0


def test_panels_fill_the_figure_above_a_strip_of_7_percent(drawn):
    """tight_layout(rect=(0, 0.07, 1, 1)): each panel, ticks and labels included, ends one
    padding (1.08 font sizes) inside that rectangle, and below the suptitle."""
    fig = drawn.fig
    renderer = fig.canvas.get_renderer()
    pad = 1.08 * mpl.rcParams["font.size"] / 72  # inches
    left, right = (
        ax.get_tightbbox(renderer).transformed(fig.dpi_scale_trans.inverted()) for ax in fig.axes
    )
    assert left.x0 == pytest.approx(pad, abs=0.01)
    assert right.x1 == pytest.approx(10 - pad, abs=0.01)
    assert left.y0 == pytest.approx(0.07 * 4.4 + pad, abs=0.01)
    assert right.y0 == pytest.approx(0.07 * 4.4 + pad, abs=0.01)
    assert left.x1 < right.x0
    assert max(left.y1, right.y1) < 4.4 - pad  # the suptitle sits above


def _pretty(direction: str) -> str:
    return {"audio_to_image": f"audio {ARROW} image", "image_to_audio": f"image {ARROW} audio"}[
        direction
    ]
