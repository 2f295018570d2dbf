"""The combined benchmark table (``wavbrivl.benchmark.table``): result JSONs in the harness's
layout, written by the test, and the Markdown and TSV worked out by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wavbrivl.benchmark.table import (
    PUBLISHED,
    PUBLISHED_FLAG,
    RERUN,
    ResultError,
    Row,
    build_table,
    collect,
    combine,
    read_rows,
    rows_from_result,
    to_markdown,
    to_tsv,
    write_table,
)


def result(protocol: str, top1=(0.5, 0.25), top5=(0.75, 0.125), folds=(1, 2, 3, 4, 5)) -> dict:
    """The part of a harness result JSON the table reads, plus keys it ignores."""
    return {
        "protocol": {"name": protocol, "templates": ["the sound of {}."]},
        "n_clips": 40,
        "folds": list(folds),
        "top1": {"mean": top1[0], "std": top1[1]},
        "top5": {"mean": top5[0], "std": top5[1]},
        "chance": {"top1": 0.1, "top5": 0.5},
    }


def write(root: Path, run: str, dataset: str, protocol: str, **kwargs) -> Path:
    path = root / run / dataset / f"{protocol}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result(protocol, **kwargs)))
    return path


def test_a_result_gives_one_row_per_metric_in_percent():
    rows = rows_from_result(result("zeroshot"), model="demo", dataset="esc50", where="x.json")
    assert rows == [
        Row("demo", "esc50", "zeroshot", "top1", 50.0, 25.0, 5, "rerun here", ""),
        Row("demo", "esc50", "zeroshot", "top5", 75.0, 12.5, 5, "rerun here", ""),
    ]
    probe = rows_from_result(
        result("linear_probe", top1=(1, 0), folds=[3]), model="m", dataset="d", where="y"
    )
    assert probe[0] == Row("m", "d", "linear_probe", "top1", 100.0, 0.0, 1)
    assert RERUN == "rerun here"


def test_read_rows_takes_model_and_dataset_from_the_results_folders(tmp_path):
    path = write(tmp_path, "wav2clip", "urbansound8k", "zeroshot", folds=range(1, 11))
    rows = read_rows(path)
    assert [(r.model, r.dataset, r.n_folds) for r in rows] == [
        ("wav2clip", "urbansound8k", 10),
        ("wav2clip", "urbansound8k", 10),
    ]
    chinese = result("zeroshot")
    chinese["protocol"]["templates"] = ["{}的声音"]
    path.write_text(json.dumps(chinese, ensure_ascii=False), encoding="utf-8")
    assert read_rows(path)[0].mean == 50.0
    named = read_rows(path, model="Wav2CLIP (ours)", dataset="us8k")
    assert {(r.model, r.dataset) for r in named} == {("Wav2CLIP (ours)", "us8k")}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda r: r["protocol"].update(name="retrieval"),
            "x.json: protocol.name is 'retrieval', expected one of ('zeroshot', 'linear_probe')",
        ),
        (
            lambda r: r.pop("protocol"),
            "x.json: protocol.name is None, expected one of ('zeroshot', 'linear_probe')",
        ),
        (lambda r: r.update(folds=[]), "x.json: folds must be a non-empty list, got []"),
        (lambda r: r.pop("folds"), "x.json: folds must be a non-empty list, got None"),
        (lambda r: r.update(folds="12345"), "x.json: folds must be a non-empty list, got '12345'"),
        (lambda r: r.pop("top5"), "x.json: no top5 figure ({'mean': ..., 'std': ...})"),
        (lambda r: r.update(top1=0.5), "x.json: no top1 figure ({'mean': ..., 'std': ...})"),
        (
            lambda r: r["top1"].update(mean=41.4),
            "x.json: top1.mean: expected a fraction in [0, 1], got 41.4",
        ),
        (
            lambda r: r["top5"].update(std=-0.01),
            "x.json: top5.std: expected a fraction in [0, 1], got -0.01",
        ),
        (
            lambda r: r["top1"].pop("std"),
            "x.json: top1.std: expected a fraction in [0, 1], got None",
        ),
        (
            lambda r: r["top1"].update(mean="0.5"),
            "x.json: top1.mean: expected a fraction in [0, 1], got '0.5'",
        ),
        (
            lambda r: r["top1"].update(mean=True),
            "x.json: top1.mean: expected a fraction in [0, 1], got True",
        ),
    ],
)
def test_a_bad_result_is_named_in_one_line(change, message):
    bad = result("zeroshot")
    change(bad)
    with pytest.raises(ResultError) as info:
        rows_from_result(bad, model="m", dataset="d", where="x.json")
    assert str(info.value) == message


def test_fractions_at_the_ends_are_accepted():
    rows = rows_from_result(
        result("zeroshot", top1=(0, 0), top5=(1, 1)), model="m", dataset="d", where="x"
    )
    assert [(r.mean, r.std) for r in rows] == [(0.0, 0.0), (100.0, 100.0)]


def test_unreadable_result_files_are_named(tmp_path):
    missing = tmp_path / "r" / "d" / "zeroshot.json"
    with pytest.raises(ResultError, match=f"^{missing}: not a readable result JSON"):
        read_rows(missing)
    missing.parent.mkdir(parents=True)
    missing.write_text("{not json")
    with pytest.raises(ResultError, match=f"^{missing}: not a readable result JSON"):
        read_rows(missing)
    missing.write_bytes(b"\xff\xfe")
    with pytest.raises(ResultError, match=f"^{missing}: not a readable result JSON"):
        read_rows(missing)
    missing.write_text("[1, 2]")
    with pytest.raises(ResultError) as info:
        read_rows(missing)
    assert str(info.value) == f"{missing}: expected a JSON object, got list"
    write(tmp_path, "r", "d", "zeroshot", top1=(2, 0))
    with pytest.raises(ResultError, match=f"^{missing}: top1.mean: expected a fraction"):
        read_rows(missing)


def test_collect_reads_both_protocols_of_every_run_and_dataset_only(tmp_path):
    write(tmp_path, "wav2clip", "esc50", "zeroshot")
    write(tmp_path, "demo", "esc50", "linear_probe")
    write(tmp_path, "demo", "esc50", "zeroshot")
    (tmp_path / "demo" / "esc50" / "other.json").write_text("{}")  # not a protocol's file
    (tmp_path / "demo" / "zeroshot.json").write_text("{}")  # not in a dataset folder
    rows = collect(tmp_path)
    assert [(r.model, r.protocol, r.metric) for r in rows] == [  # in path order
        ("demo", "linear_probe", "top1"),
        ("demo", "linear_probe", "top5"),
        ("demo", "zeroshot", "top1"),
        ("demo", "zeroshot", "top5"),
        ("wav2clip", "zeroshot", "top1"),
        ("wav2clip", "zeroshot", "top5"),
    ]
    assert collect(tmp_path / "nothing") == []


def row(model, dataset, protocol="zeroshot", metric="top1", mean=50.0) -> Row:
    return Row(model, dataset, protocol, metric, mean, 1.0, 5)


def test_combine_sorts_ours_and_puts_the_published_figures_last():
    ours = [
        row("wav2clip", "esc50"),
        row("demo", "urbansound8k", "linear_probe"),
        row("demo", "zz_custom"),
        row("demo", "aa_custom"),
        row("demo", "esc50", metric="top5"),
        row("demo", "vggsound"),
        row("demo", "urbansound8k"),
        row("demo", "esc10"),
        row("demo", "esc50"),
    ]
    combined = combine(ours)
    assert [(r.model, r.protocol, r.metric, r.dataset) for r in combined[:9]] == [
        ("demo", "zeroshot", "top1", "esc50"),
        ("demo", "zeroshot", "top1", "esc10"),
        ("demo", "zeroshot", "top1", "urbansound8k"),
        ("demo", "zeroshot", "top1", "vggsound"),
        ("demo", "zeroshot", "top1", "aa_custom"),
        ("demo", "zeroshot", "top1", "zz_custom"),
        ("demo", "zeroshot", "top5", "esc50"),
        ("demo", "linear_probe", "top1", "urbansound8k"),
        ("wav2clip", "zeroshot", "top1", "esc50"),
    ]
    assert combined[9:] == list(PUBLISHED)
    assert combine([], published=[]) == []


def test_the_published_figures_are_the_papers():
    assert [(r.model, r.dataset, r.protocol, r.metric, r.mean) for r in PUBLISHED] == [
        ("Wav2CLIP", "esc50", "zeroshot", "top1", 41.4),
        ("Wav2CLIP", "urbansound8k", "zeroshot", "top1", 40.4),
        ("AudioCLIP", "esc50", "zeroshot", "top1", 69.40),
        ("AudioCLIP", "urbansound8k", "zeroshot", "top1", 68.78),
        ("ImageBind-H", "esc50", "zeroshot", "top1", 66.9),
    ]
    assert {(r.std, r.n_folds, r.source) for r in PUBLISHED} == {
        (None, None, "published, not rerun here")
    }
    assert [r.reference for r in PUBLISHED] == [
        "Wu et al. 2022, ICASSP (arXiv:2110.11499)",
        "Wu et al. 2022, ICASSP (arXiv:2110.11499)",
        "Guzhov et al. 2022, ICASSP (arXiv:2106.13043)",
        "Guzhov et al. 2022, ICASSP (arXiv:2106.13043)",
        "Girdhar et al. 2023, CVPR (arXiv:2305.05665)",
    ]
    assert PUBLISHED_FLAG == "published, not rerun here"


def sample_rows() -> list[Row]:
    return [
        Row("demo", "esc50", "zeroshot", "top1", 2.0, 0.5, 5),
        Row("demo", "esc50", "linear_probe", "top1", 87.25, 3.125, 5),
        Row("demo", "urbansound8k", "linear_probe", "top1", 70.0, 4.0, 10),
        Row("demo", "my|set", "linear_probe", "top5", 99.0, 0.0, 2),
        Row("W2C", "esc50", "zeroshot", "top1", 41.4, None, None, PUBLISHED_FLAG, "Wu\t2022"),
    ]


def test_tsv_is_one_line_per_row_with_every_field():
    assert to_tsv(sample_rows()) == (
        "model\tdataset\tprotocol\tmetric\tmean\tstd\tn_folds\tsource\treference\n"
        "demo\tesc50\tzeroshot\ttop1\t2.00\t0.50\t5\trerun here\t\n"
        "demo\tesc50\tlinear_probe\ttop1\t87.25\t3.12\t5\trerun here\t\n"
        "demo\turbansound8k\tlinear_probe\ttop1\t70.00\t4.00\t10\trerun here\t\n"
        "demo\tmy/set\tlinear_probe\ttop5\t99.00\t0.00\t2\trerun here\t\n"
        "W2C\tesc50\tzeroshot\ttop1\t41.40\t\t\tpublished, not rerun here\tWu 2022\n"
    )


def test_markdown_has_one_column_per_dataset_and_the_source_in_its_own():
    assert to_markdown(sample_rows()) == (
        "| model | protocol | metric | ESC-50 | UrbanSound8K | my/set | source |\n"
        "|---|---|---|---|---|---|---|\n"
        "| demo | zero-shot | top-1 | 2.0 ± 0.5 (n=5) | – | – | rerun here |\n"
        "| demo | linear probe | top-1 | 87.2 ± 3.1 (n=5) | 70.0 ± 4.0 (n=10) | – | rerun here |\n"
        "| demo | linear probe | top-5 | – | – | 99.0 ± 0.0 (n=2) | rerun here |\n"
        "| W2C | zero-shot | top-1 | 41.4 | – | – | published, not rerun here: Wu 2022 |\n"
        "\n"
        "Accuracy in percent: mean ± standard deviation over the official folds (n folds) "
        "for rows rerun here; rows published, not rerun here are copied from the paper "
        "named, under its own protocol.\n"
    )


def test_markdown_titles_the_known_datasets_and_keeps_pipes_out_of_cells():
    text = to_markdown([Row("a|b", "vggsound", "zeroshot", "top5", 1.0, 2.0, 3)])
    assert text.splitlines()[:3] == [
        "| model | protocol | metric | VGGSound test | source |",
        "|---|---|---|---|---|",
        "| a/b | zero-shot | top-5 | 1.0 ± 2.0 (n=3) | rerun here |",
    ]
    assert to_markdown([Row("m", "esc10", "zeroshot", "top1", 1.0, 2.0, 3)]).splitlines()[0] == (
        "| model | protocol | metric | ESC-10 | source |"
    )


def test_markdown_refuses_two_figures_for_one_cell():
    twice = [row("demo", "esc50"), row("demo", "esc50", mean=60.0)]
    with pytest.raises(ResultError) as info:
        to_markdown(twice)
    assert str(info.value) == "two zeroshot top1 figures of demo on esc50"
    # the same figure published and rerun is two lines, not a clash
    both = [Row("W", "esc50", "zeroshot", "top1", 1.0, 0.0, 5), *PUBLISHED[:1]]
    assert len(to_markdown(both).splitlines()) == 6


def test_write_table_and_build_table(tmp_path):
    md, tsv = write_table(sample_rows(), tmp_path / "t.md", str(tmp_path / "t.tsv"))
    assert (md, tsv) == (tmp_path / "t.md", tmp_path / "t.tsv")
    assert md.read_text() == to_markdown(sample_rows())
    assert tsv.read_text() == to_tsv(sample_rows())

    root = tmp_path / "results" / "benchmarks"
    write(root, "demo", "esc50", "zeroshot", top1=(0.02, 0.005))
    write(root, "demo", "esc50", "linear_probe", top1=(0.8725, 0.03125))
    md, tsv = build_table(root, tmp_path / "out" / "table.md", tmp_path / "out" / "table.tsv")
    lines = md.read_text().splitlines()
    assert lines[0] == "| model | protocol | metric | ESC-50 | UrbanSound8K | source |"
    assert lines[2:6] == [
        "| demo | zero-shot | top-1 | 2.0 ± 0.5 (n=5) | – | rerun here |",
        "| demo | zero-shot | top-5 | 75.0 ± 12.5 (n=5) | – | rerun here |",
        "| demo | linear probe | top-1 | 87.2 ± 3.1 (n=5) | – | rerun here |",
        "| demo | linear probe | top-5 | 75.0 ± 12.5 (n=5) | – | rerun here |",
    ]
    assert lines[6] == (
        "| Wav2CLIP | zero-shot | top-1 | 41.4 | 40.4 | published, not rerun here: "
        "Wu et al. 2022, ICASSP (arXiv:2110.11499) |"
    )
    assert lines[8] == (
        "| ImageBind-H | zero-shot | top-1 | 66.9 | – | published, not rerun here: "
        "Girdhar et al. 2023, CVPR (arXiv:2305.05665) |"
    )
    assert len(tsv.read_text().splitlines()) == 1 + 4 + 5
