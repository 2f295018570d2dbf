"""The benchmark's result files: JSON, per-fold and per-class TSV, the confusion plot (the
harness end to end is in test_benchmark_harness.py)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from PIL import Image

from wavbrivl.benchmark.results import (
    confusion_figure,
    confusion_fractions,
    fold_tsv,
    per_class_tsv,
    read_result,
    tick_labels,
    write_result,
)
from wavbrivl.benchmark.zeroshot import evaluate_zeroshot

RATE = 16_000


def by_hand_result():
    """The top-5 case of test_benchmark_zeroshot.py: per fold (0.5, 1.0) and (0.0, 0.5)."""
    names = list("abcdefg")
    text = {f"x {c}": np.eye(7)[k] for k, c in enumerate(names)}
    audio = np.array(
        [
            [0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1],
            [0.7, 0.5, 0.6, 0.1, 0.1, 0.1, 0.1],
            [0.6, 0.5, 0.3, 0.4, 0.45, 0.35, 0.1],
            [0.2, 0.2, 0.2, 0.5, 0.5, 0.1, 0.1],
        ]
    )
    return evaluate_zeroshot(
        audio,
        np.array([0, 1, 2, 3]),
        np.array([1, 1, 2, 2]),
        names,
        lambda prompts: np.array([text[p] for p in prompts]),
        templates=["x {}"],
    )


DATA = {
    "dataset": "esc50",
    "n_clips": 4,
    "n_skipped": 1,
    "n_classes": 7,
    "classes": list("abcdefg"),
    "folds": [1, 2],
    "skipped": [
        {"clip_id": "z.wav", "path": "/d/z.wav", "reason": "/d/z.wav: empty file (0 bytes)"}
    ],
}


def test_zeroshot_files_hold_the_result_protocol_and_skipped_clips(tmp_path):
    result = by_hand_result()
    out = tmp_path / "run" / "esc50"  # folders made as needed
    paths = write_result(result, DATA, out)
    assert paths == {
        "json": out / "zeroshot.json",
        "tsv": out / "zeroshot.tsv",
        "per_class": out / "zeroshot_per_class.tsv",
        "confusion": out / "confusion.png",
    }
    assert sorted(p.name for p in out.iterdir()) == [
        "confusion.png",
        "zeroshot.json",
        "zeroshot.tsv",
        "zeroshot_per_class.tsv",
    ]
    assert (
        (out / "zeroshot.json")
        .read_text()
        .startswith('{\n  "protocol": {\n    "name": "zeroshot",\n')
    )
    document = read_result(out / "zeroshot.json")
    assert document == json.loads(json.dumps({**result, "data": DATA}))
    assert document["protocol"]["templates"] == ["x {}"]
    assert document["data"]["skipped"][0]["reason"] == "/d/z.wav: empty file (0 bytes)"
    assert document["chance_verdict"]["at_chance"] is True
    assert (out / "zeroshot.tsv").read_text() == (
        "fold\tn_clips\ttop1\ttop5\n"
        "1\t2\t0.500000\t1.000000\n"
        "2\t2\t0.000000\t0.500000\n"
        "mean\t4\t0.250000\t0.750000\n"
        "std\t4\t0.250000\t0.250000\n"
    )
    assert (out / "zeroshot_per_class.tsv").read_text() == (
        "class_index\tclass_name\tn_clips\ttop1\n"
        "0\ta\t1\t1.000000\n"
        "1\tb\t1\t0.000000\n"
        "2\tc\t1\t0.000000\n"
        "3\td\t1\t0.000000\n"
        "4\te\t0\t\n"
        "5\tf\t0\t\n"
        "6\tg\t0\t\n"
    )
    with Image.open(out / "confusion.png") as image:
        assert image.format == "PNG"
        assert image.size[0] >= 400 and image.size[1] >= 400


def test_chinese_names_stay_readable_in_the_json(tmp_path):
    result = by_hand_result()
    result["classes"][0] = "狗"
    result["per_class"][0]["class_name"] = "狗"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a missing glyph would warn
        write_result(result, DATA, tmp_path)
    assert '"狗"' in (tmp_path / "zeroshot.json").read_text(encoding="utf-8")
    assert "0\t狗\t1\t1.000000\n" in (tmp_path / "zeroshot_per_class.tsv").read_text()
    assert tick_labels(["狗", "cat"]) == ["0", "1"]
    assert tick_labels(["dog", "cat"]) == ["dog", "cat"]


def test_linear_probe_tsv_adds_the_chosen_c():
    result = {
        "protocol": {"name": "linear_probe"},
        "n_clips": 30,
        "per_fold": [
            {"fold": 1, "n_test": 10, "top1": 0.9, "top5": 1.0, "C": 0.1},
            {"fold": 2, "n_test": 12, "top1": 0.75, "top5": 1.0, "C": 10.0},
            {"fold": 3, "n_test": 8, "top1": 1.0, "top5": 1.0, "C": 100.0},
        ],
        "top1": {"mean": 0.883333, "std": 0.1},
        "top5": {"mean": 1.0, "std": 0.0},
    }
    assert fold_tsv(result) == (
        "fold\tn_clips\ttop1\ttop5\tC\n"
        "1\t10\t0.900000\t1.000000\t0.1\n"
        "2\t12\t0.750000\t1.000000\t10\n"
        "3\t8\t1.000000\t1.000000\t100\n"
        "mean\t30\t0.883333\t1.000000\t\n"
        "std\t30\t0.100000\t0.000000\t\n"
    )
    assert per_class_tsv({"per_class": []}) == "class_index\tclass_name\tn_clips\ttop1\n"


def test_unknown_protocol_is_refused(tmp_path):
    with pytest.raises(ValueError) as info:
        write_result({"protocol": {"name": "retrieval"}}, DATA, tmp_path)
    assert (
        str(info.value)
        == "unknown protocol 'retrieval'; expected one of ('zeroshot', 'linear_probe')"
    )
    assert list(tmp_path.iterdir()) == []


def test_confusion_figure_by_hand():
    result = by_hand_result()  # rows: a->a, b->a, c->a, d->d; e, f, g without clips
    fig = confusion_figure(result)
    assert tuple(fig.get_size_inches()) == pytest.approx((4 + 0.22 * 7, 4 + 0.22 * 7))
    assert fig.dpi == 120
    ax, bar = fig.axes
    assert ax.title.get_fontsize() == 9
    assert {t.get_fontsize() for t in ax.get_xticklabels() + ax.get_yticklabels()} == {6}
    assert ax.get_title() == "zeroshot: top-1 25.0% ± 25.0% over 2 folds (chance 14.3%)"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted class", "true class")
    assert [t.get_text() for t in ax.get_xticklabels()] == list("abcdefg")
    assert [t.get_text() for t in ax.get_yticklabels()] == list("abcdefg")
    assert [t.get_rotation() for t in ax.get_xticklabels()] == [90.0] * 7
    assert bar.get_ylabel() == "fraction of the true class"
    image = ax.get_images()[0]
    expected = np.zeros((7, 7))
    expected[0, 0] = expected[1, 0] = expected[2, 0] = expected[3, 3] = 1.0
    np.testing.assert_array_equal(image.get_array(), expected)
    assert image.get_clim() == (0, 1)
    assert image.get_cmap().name == "Blues"
    inner = confusion_figure({**result, "classes": ["a", "b"], "confusion": [[1, 1], [1, 3]]})
    assert inner.axes[0].get_images()[0].get_clim() == (0, 1)  # not the data's 0.25..0.75
    big = {**result, "classes": [str(i) for i in range(60)], "confusion": np.eye(60).tolist()}
    assert tuple(confusion_figure(big).get_size_inches()) == (16, 16)


def test_confusion_fractions_by_hand():
    got = confusion_fractions([[1, 3, 0], [0, 0, 0], [2, 2, 4]])
    np.testing.assert_array_equal(got, [[0.25, 0.75, 0], [0, 0, 0], [0.25, 0.25, 0.5]])
