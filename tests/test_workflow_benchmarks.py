"""The benchmark harness through the real Snakemake, on a copy of the shared small demo run:
the demo's ESC-50-layout set and its VGGSound test split, the trained run scored by zero-shot
(a random text tower: at chance, and the log says so) and by the linear probe (far above
chance), one table beside the published figures, and the results in `snakemake --report`."""

from __future__ import annotations

import json
import shutil
import zipfile

import pytest
import torch
import yaml
from conftest import planned_jobs, run_snakemake
from test_benchmark_audio_models import make_release_state

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def benchmarked(small_demo_run, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("benchmarks") / "run"
    shutil.copytree(small_demo_run, workdir, symlinks=True)
    # The peer beside our run: Wav2CLIP with random weights in its release format, no text side.
    torch.save(make_release_state(0), workdir / "weights/Wav2CLIP.pt")
    cfg = yaml.safe_load((workdir / "cfg.yaml").read_text())
    cfg["benchmarks"]["models"]["wav2clip"] = {"kind": "wav2clip", "path": "weights/Wav2CLIP.pt"}
    (workdir / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    plan = planned_jobs(run_snakemake(workdir, "-n", "benchmarks", "--configfile", "cfg.yaml"))
    result = run_snakemake(workdir, "--cores", "2", "benchmarks", "--configfile", "cfg.yaml")
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir, plan


def test_only_the_benchmark_jobs_run_on_a_finished_demo(benchmarked):
    _, plan = benchmarked
    assert plan == {
        "synthesise_demo_benchmark": 1,
        "benchmark_embeddings": 3,  # the peer has nothing to score on the one-fold split
        "benchmark_zeroshot": 2,  # our run only: the peer has no text side here
        "benchmark_linear_probe": 2,  # ESC-50's 5 folds; the VGGSound test split has one
        "benchmark_table": 1,
        "benchmarks": 1,
    }


def test_the_probe_is_far_above_chance_and_zero_shot_says_it_is_at_chance(benchmarked):
    workdir, _ = benchmarked
    out = workdir / "results/benchmarks/wavbrivl"
    probe = json.loads((out / "esc50/linear_probe.json").read_text())
    zeroshot = json.loads((out / "esc50/zeroshot.json").read_text())
    assert probe["n_classes"] == 6 and probe["n_clips"] == 30
    assert probe["top1"]["mean"] >= 3 * probe["chance"]["top1"]  # far above chance (1/6)
    assert len(zeroshot["protocol"]["templates"]) > 1  # every template used is recorded
    log = (workdir / "logs/benchmark_zeroshot/wavbrivl/esc50.log").read_text()
    if zeroshot["chance_verdict"]["at_chance"]:
        assert zeroshot["chance_verdict"]["line"] in log
    assert "benchmark: zeroshot: top-1" in log
    for name in ("confusion.png", "linear_probe_confusion.png", "zeroshot.tsv"):
        assert (out / "esc50" / name).stat().st_size > 0, name
    assert sorted(p.name for p in (out / "vggsound").iterdir()) == [
        "confusion.png",
        "embeddings.npz",
        "zeroshot.json",
        "zeroshot.tsv",
        "zeroshot_per_class.tsv",
    ]


def test_the_table_holds_our_rows_the_peers_and_the_published_ones(benchmarked):
    workdir, _ = benchmarked
    tsv = (workdir / "results/benchmarks/table.tsv").read_text().splitlines()
    ours = [line for line in tsv if line.startswith("wavbrivl\t")]
    assert len(ours) == 6  # esc50 zero-shot + probe, vggsound zero-shot; top-1 and top-5 each
    peer = [line for line in tsv if line.startswith("wav2clip\t")]
    assert len(peer) == 2 and all("linear_probe" in line for line in peer)
    assert any("published, not rerun here" in line and "Wav2CLIP" in line for line in tsv)
    md = (workdir / "results/benchmarks/table.md").read_text()
    assert md.startswith("| model |") and "ESC-50" in md


def test_the_results_enter_the_report_and_a_rerun_has_nothing_to_do(benchmarked):
    workdir, _ = benchmarked
    args = ("benchmarks", "--configfile", "cfg.yaml")
    assert planned_jobs(run_snakemake(workdir, "-n", *args)) == {}
    result = run_snakemake(workdir, "--report", "report.zip", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    names = {n.rsplit("/", 1)[-1] for n in zipfile.ZipFile(workdir / "report.zip").namelist()}
    assert {"table.md", "zeroshot.json", "linear_probe_confusion.png"} <= names
