"""The demo's stages run for real under Snakemake: synthesis, manifest, yt-dlp, ffmpeg, embeddings.

The embeddings use the `brivl` encoder with a toy-size checkpoint in the official format, so
the checkpoint path of the real model is exercised and its content can be changed.
"""

from __future__ import annotations

import os
import shutil

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import planned_jobs, run_snakemake
from small_demo import TARGETS, small_demo_config, write_toy_checkpoint

from wavbrivl.embed.store import read_header

pytestmark = pytest.mark.slow


@pytest.fixture
def demo_run(small_demo_run):
    return small_demo_run


def test_every_demo_clip_reaches_the_media_shards(demo_run):
    manifest = pd.read_parquet(demo_run / "results/manifest/vggsound.parquet")
    assert len(manifest) == 12
    assert set(manifest["split"]) == {"train", "test"}
    media = pd.concat(
        pd.read_parquet(p) for p in sorted((demo_run / "results/media/vggsound").glob("*.parquet"))
    )
    assert sorted(media["clip_id"]) == sorted(manifest["clip_id"])
    assert (media["status"] == "ok").all(), media[["clip_id", "status", "reason"]]
    assert media["frame"].map(len).min() > 100
    # a 10 s window at 16 kHz
    assert media["n_samples"].between(159_000, 161_000).all()


def test_shard_files_hold_only_their_shard(demo_run):
    manifest = pd.read_parquet(demo_run / "results/manifest/vggsound.parquet")
    for shard in ("000", "001"):
        media = pq.read_table(demo_run / f"results/media/vggsound/{shard}.parquet").to_pandas()
        expected = set(manifest.loc[manifest["shard"] == shard, "clip_id"])
        assert set(media["clip_id"]) == expected


def test_generation_inputs_use_the_audioset_path(demo_run):
    manifest = pd.read_parquet(demo_run / "results/manifest/audioset_gen.parquet")
    assert len(manifest) == 6
    assert all(name for names in manifest["label_names"] for name in names)
    media = pd.read_parquet(demo_run / "results/media/audioset_gen/000.parquet")
    assert (media["status"] == "ok").all()


def test_logs_carry_progress_and_status_summary(demo_run):
    manifest = pd.read_parquet(demo_run / "results/manifest/vggsound.parquet")
    n_clips = {shard: int((manifest["shard"] == shard).sum()) for shard in ("000", "001")}
    assert sum(n_clips.values()) == 12  # every demo clip downloads and extracts fine
    for shard, n in n_clips.items():
        log = (demo_run / f"logs/download_clips/vggsound/{shard}.log").read_text()
        folder = (demo_run / f"results/download/vggsound/{shard}").resolve()
        assert f"download {shard}: 100%" in log  # tqdm's progress bar
        assert log.rstrip().splitlines()[-1] == f"download: {folder}: ok={n}"
        log = (demo_run / f"logs/extract_media/vggsound/{shard}.log").read_text()
        assert "extract: 100%" in log
        assert log.rstrip().splitlines()[-1] == f"extract: ok={n}"


def test_training_and_evaluation_write_their_artefacts(demo_run):
    import json

    model_dir = demo_run / "results/models/demo"
    assert (model_dir / "audio_encoder.pt").stat().st_size > 0
    assert (model_dir / "curves.png").stat().st_size > 0
    log = (model_dir / "train_log.tsv").read_text().splitlines()
    assert log[0].startswith("step") or "step" in log[0].split("\t")
    metrics = json.loads((demo_run / "results/eval/demo/metrics.json").read_text())
    r1 = metrics["audio_to_image"]["class"]["R@1"]
    assert 0.0 <= r1["value"] <= 1.0 and 0.0 < r1["chance"] < 1.0
    assert metrics["n_clips"] >= 2
    assert (demo_run / "results/eval/demo/retrieval.png").stat().st_size > 0


def test_generation_and_sheets_are_written(demo_run):
    import json

    from wavbrivl.generate.png import read_png_metadata

    gen = demo_run / "results/generation/demo/audioset_gen"
    pngs = sorted(gen.glob("*.png"))
    assert len(pngs) == 6
    meta = read_png_metadata(pngs[0])
    assert meta["clip_id"] == pngs[0].stem
    assert {"label", "seed", "steps", "final_similarity", "target_norm"} <= set(meta)
    assert {"vqgan_fingerprint", "image_encoder_fingerprint"} <= set(meta)
    generation = json.loads((gen / "generation.json").read_text())
    assert set(generation["fingerprints"]) >= {"vqgan", "image_encoder"}
    metrics = json.loads((gen / "metrics.json").read_text())  # docs/generation-metrics.md
    assert metrics["n_generated"] == 6
    assert metrics["ais"]["n"] == 6 and metrics["iis"]["n"] == 6
    assert metrics["class_agreement"]["n"] == 6
    assert 0 < metrics["class_agreement"]["chance"] < 1
    assert metrics["fid_kid"]["fid"] is None  # the demo has no Inception weights
    assert "no Inception weights" in metrics["fid_kid"]["reason"]
    assert (gen / "metrics.tsv").read_text().startswith("metric\tvalue\tci95_low")
    sheets = demo_run / "results/sheets/demo"
    for name in ("grid.png", "grid.pdf", "study.html", "answer_key.json", "auto2afc.json"):
        assert (sheets / name).stat().st_size > 0, name
    key = json.loads((sheets / "answer_key.json").read_text())
    html = (sheets / "study.html").read_text()
    # the answer key never travels inside the page
    assert key["study_id"] in html
    assert generation["clips"][0]["clip_id"] not in html
    # catch trials at the demo's rate 0.2: round(0.2 * 6 / 0.8) = 2 beside the 6 clips
    kinds = [t["kind"] for t in key["trials"]]
    assert (kinds.count("match"), kinds.count("catch")) == (6, 2)
    # simulated raters (sheets.simulate: 8, the last 2 careless) answered it: Table 1
    simulated = sheets / "simulated"
    assert sorted(p.name for p in (simulated / "answers").glob("*.csv")) == [
        f"sim0{i}.csv" for i in range(1, 9)
    ]
    table = json.loads((simulated / "table1.json").read_text())
    assert table["study_id"] == key["study_id"] and len(table["raters"]) == 8
    assert {r["session_id"] for r in table["raters"] if r["excluded"]} <= {"sim07", "sim08"}
    assert "catch trials (real frames)" in table["runs"]
    assert "<h2>Raters and agreement</h2>" in (simulated / "table1.html").read_text()


def test_report_holds_grid_curves_metrics_and_study_kit(demo_run, tmp_path):
    import zipfile

    report = tmp_path / "report.zip"  # outside the shared run
    args = ("--report", str(report), *TARGETS, "--configfile", "cfg.yaml")
    result = run_snakemake(demo_run, *args)
    assert result.returncode == 0, result.stderr[-3000:]
    names = {n.rsplit("/", 1)[-1] for n in zipfile.ZipFile(report).namelist()}
    assert {"grid.png", "curves.png", "metrics.tsv", "retrieval.png", "study.html"} <= names
    assert "table1.html" in names  # Table 1 of the simulated raters
    assert "metrics.json" in names  # the generation metrics (the retrieval's json is not shown)


def test_embeddings_carry_the_checkpoint_fingerprint(demo_run):
    paths = sorted((demo_run / "results/embeddings/brivl/vggsound").glob("*.parquet"))
    assert [p.stem for p in paths] == ["000", "001"]
    headers = [read_header(p) for p in paths]
    assert sum(h.num_rows for h in headers) == 12 * 2  # two views per clip in the demo config
    assert len({h.fingerprint for h in headers}) == 1
    assert headers[0].meta["box_mode"] == "whole"


TRAIN_AND_AFTER = {
    "train_audio_encoder": 1,
    "evaluate_retrieval": 1,
    "model": 1,
    "generate_images": 1,
    "assemble_sheets": 1,
    "simulate_study": 1,  # the simulated raters answer the new study kit
    "sheets": 1,
}
EMBED_AND_AFTER = {"embed_images": 2, "embeddings": 1, **TRAIN_AND_AFTER}


def dry_run(workdir, cfg=None):
    if cfg is not None:
        (workdir / "cfg2.yaml").write_text(yaml.safe_dump(cfg))
    name = "cfg2.yaml" if cfg is not None else "cfg.yaml"
    return planned_jobs(run_snakemake(workdir, "-n", *TARGETS, "--configfile", name))


# A new value for every run-time key of wavbrivl.config_keys.
RUNTIME_CHANGES = {
    "download": dict(
        max_attempts=5,
        backoff_s=1.0,
        pace_s=0.5,
        socket_timeout_s=10.0,
        cookies_file="cookies.txt",
        js_runtime="node",
        retry_permanent=True,
        rate_limit="1M",
        sleep_requests_s=0.1,
        breaker_after=2,
    ),
    "embed": dict(batch_size=3, device="cpu", text_tokenizer="weights/text"),
    "train": dict(
        num_workers=2,
        ckpt_every=2,
        keep_checkpoints=3,
        log_every=5,
        max_nonfinite_in_row=3,
        device="cpu",
        gpus=1,
    ),
    "generate": dict(device="cpu"),
}


def test_only_what_changed_reruns(demo_run, tmp_path):
    """On a copy of the run (other test files read the original meanwhile): configs and the
    checkpoint change."""
    from wavbrivl.config_keys import RESUME_SAFE, RUNTIME, keys_of

    demo_run = shutil.copytree(demo_run, tmp_path / "demo", symlinks=True)
    # nothing changed: nothing runs
    assert dry_run(demo_run) == {}
    # run-time settings only (all of them at once): nothing runs
    cfg = small_demo_config()
    for block, changes in RUNTIME_CHANGES.items():
        assert set(changes) == set(keys_of(block, RUNTIME)), block
        assert all(cfg.get(block, {}).get(k) != v for k, v in changes.items()), block
        cfg.setdefault(block, {}).update(changes)
    # A text tokenizer folder is a new file for check_weights to look at (a cheap local job,
    # an ancient input downstream); nothing else runs.
    assert dry_run(demo_run, cfg) == {"check_weights": 1}
    del cfg["embed"]["text_tokenizer"]
    assert dry_run(demo_run, cfg) == {}
    # safe to change on resume, but part of the results (validation rows): training reruns
    for key in keys_of("train", RESUME_SAFE):
        cfg = small_demo_config()
        cfg["train"][key] = cfg["train"].get(key, 1) + 1
        assert dry_run(demo_run, cfg) == TRAIN_AND_AFTER, key
    # preprocessing changes: the embedding jobs rerun, nothing upstream
    cfg = small_demo_config()
    cfg["embed"]["box_mode"] = "grid"
    assert dry_run(demo_run, cfg) == EMBED_AND_AFTER
    cfg = small_demo_config()
    cfg["embed"]["n_views"] = 3
    assert dry_run(demo_run, cfg) == EMBED_AND_AFTER
    # a training setting: training and evaluation rerun, the embeddings do not
    cfg = small_demo_config()
    cfg["loss"]["temperature"] = 0.1
    assert dry_run(demo_run, cfg) == TRAIN_AND_AFTER
    cfg = small_demo_config()
    cfg["train"]["lr"] = 0.002
    assert dry_run(demo_run, cfg) == TRAIN_AND_AFTER
    # the checkpoint's content changes (same path, mtime put back): embedding jobs rerun
    weights = demo_run / "weights/toy-brivl.pth"
    stat = weights.stat()
    original = weights.read_bytes()
    try:
        write_toy_checkpoint(weights, seed=1, text_folder=demo_run / "weights/text")
        os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        assert dry_run(demo_run) == EMBED_AND_AFTER
    finally:
        weights.write_bytes(original)
        os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert dry_run(demo_run) == {}


def test_added_clips_rerun_only_their_shard(demo_run, tmp_path):
    """On a copy of the run (other test files read the original meanwhile): a CSV changes."""
    demo_run = shutil.copytree(demo_run, tmp_path / "demo", symlinks=True)
    csv_path = demo_run / "results/demo/vggsound.csv"
    rows = csv_path.read_text().splitlines()
    # A new clip of an existing video: the same id with another start (files are 11 s long).
    ytid, start, *rest = rows[0].split(",")
    new_start = "1" if start == "0" else "0"
    csv_path.write_text("\n".join([*rows, ",".join([ytid, new_start, *rest])]) + "\n")
    manifest_path = demo_run / "results/manifest/vggsound.parquet"
    old = pd.read_parquet(manifest_path)

    # Rebuild the manifest; then the plan holds the new clip's shard only (and training).
    result = run_snakemake(demo_run, "--cores", "2", "manifests", "--configfile", "cfg.yaml")
    assert result.returncode == 0, result.stderr[-3000:]
    new = pd.read_parquet(manifest_path)
    added = set(new["clip_id"]) - set(old["clip_id"])
    assert len(added) == 1
    shard = new.loc[new["clip_id"].isin(added), "shard"].item()
    other = "001" if shard == "000" else "000"
    plan = run_snakemake(demo_run, "-n", "-p", *TARGETS, "--configfile", "cfg.yaml")
    assert planned_jobs(plan) == {
        "download_clips": 1,
        "extract_media": 1,
        "embed_images": 1,
        **TRAIN_AND_AFTER,
        "media": 1,
        "embeddings": 1,
    }
    out = plan.stdout + plan.stderr
    assert f"results/download/vggsound/{shard}.status.parquet" in out
    assert f"results/download/vggsound/{other}.status.parquet" not in out

    # The real run does the same up to the embeddings: the other shard's artefacts are not
    # rewritten, and what is left is training and after (as planned above).
    untouched = demo_run / f"results/media/vggsound/{other}.parquet"
    before = untouched.stat().st_mtime_ns
    args = ("--cores", "2", "media", "embeddings", "--configfile", "cfg.yaml")
    result = run_snakemake(demo_run, *args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert untouched.stat().st_mtime_ns == before
    media = pd.read_parquet(demo_run / f"results/media/vggsound/{shard}.parquet")
    assert added <= set(media["clip_id"])
    assert dry_run(demo_run) == TRAIN_AND_AFTER
