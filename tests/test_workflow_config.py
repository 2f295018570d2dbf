"""The config is validated before any job starts, with messages that name the key."""

from __future__ import annotations

import itertools
import textwrap

import pytest
import yaml
from conftest import REPO, planned_jobs, run_snakemake

VALID = {
    "datasets": {
        "vgg": {
            "format": "vggsound",
            "csv": "in/vggsound.csv",
            "n_shards": 3,
            "source": {"url_template": "https://www.youtube.com/watch?v={id}"},
        }
    }
}


def _dry_run(tmp_path, cfg):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    (tmp_path / "in").mkdir(exist_ok=True)
    (tmp_path / "in" / "vggsound.csv").write_text("abcdefghijk,0,dog barking,train\n")
    return run_snakemake(tmp_path, "-n", "--configfile", str(path))


def _with(path, value):
    cfg = yaml.safe_load(yaml.safe_dump(VALID))
    node = cfg
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return cfg


def test_valid_config_plans_one_job_per_shard(tmp_path):
    result = _dry_run(tmp_path, VALID)
    jobs = planned_jobs(result)
    assert jobs["download_clips"] == jobs["extract_media"] == jobs["embed_images"] == 3
    # the demo config is replaced, not merged: no demo dataset, no synthesis job
    assert "synthesise_demo" not in jobs
    assert "audioset_gen" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("path", "value", "key", "words"),
    [
        (("download", "bogus_key"), 1, "download", "bogus_key"),
        (("datasets", "vgg", "n_shards"), -2, "datasets.vgg.n_shards", "minimum"),
        (("datasets", "vgg", "n_shards"), "many", "datasets.vgg.n_shards", "not of type"),
        (("extract", "sample_rate"), 44100, "extract.sample_rate", "16000"),
        (("extract", "frame_policy"), "first", "extract.frame_policy", "first"),
        (("datasets", "vgg", "format"), "kinetics", "datasets.vgg.format", "kinetics"),
        (("datasets", "vgg", "typo_key"), True, "datasets.vgg", "typo_key"),
    ],
)
def test_bad_config_stops_before_any_job(tmp_path, path, value, key, words):
    result = _dry_run(tmp_path, _with(path, value))
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"invalid config at '{key}'" in out, out[-2000:]
    assert words in out
    assert "Job stats" not in out
    assert not (tmp_path / "results").exists()


def test_audioset_dataset_needs_a_split_name(tmp_path):
    cfg = _with(("datasets", "vgg", "format"), "audioset")
    result = _dry_run(tmp_path, cfg)
    assert result.returncode != 0
    assert "split_name" in result.stdout + result.stderr


def test_defaults_are_filled_from_the_schema(tmp_path):
    # A config that names one dataset and nothing else still plans the whole run: its role,
    # the image encoder, the audio model and the run name come from the schema's defaults
    # and show up in the planned paths (values read from the schema file itself below).
    cfg_text = textwrap.dedent(
        """
        datasets:
          vgg: {format: vggsound, csv: in/vggsound.csv, n_shards: 1}
        """
    )
    (tmp_path / "cfg.yaml").write_text(cfg_text)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "vggsound.csv").write_text("abcdefghijk,0,dog barking,train\n")
    result = run_snakemake(tmp_path, "-n", "--configfile", str(tmp_path / "cfg.yaml"))
    out = result.stdout + result.stderr
    jobs = planned_jobs(result)

    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    default = {
        block: schema["properties"][block]["properties"][key]["default"]
        for block, key in [("embed", "encoder"), ("train", "run"), ("audio", "wavlm")]
    }
    assert (default["embed"], default["train"], default["audio"]) == ("tiny", "demo", "tiny")
    assert schema["$defs"]["dataset"]["properties"]["role"]["default"] == "train"
    # role train: embedded and trained on; no generation dataset, so no generation jobs
    assert jobs == {
        "build_manifest": 1,
        "prepare_tiny_wavlm": 1,  # audio.wavlm: tiny
        "download_clips": 1,
        "report_availability": 1,  # clips per status per class, in the report
        "extract_media": 1,
        "embed_images": 1,
        "train_audio_encoder": 1,
        "evaluate_retrieval": 1,
        "all": 1,
    }
    assert "output: results/embeddings/tiny/vgg/000.parquet" in out  # embed.encoder
    assert "output: results/models/demo/audio_encoder.pt" in out  # train.run
    assert "output: results/models/_wavlm/tiny-seed0" in out  # audio.wavlm, audio.tiny_seed


def test_shipped_configs_are_valid(tmp_path):
    demo = run_snakemake(tmp_path, "-n", "--configfile", str(REPO / "config" / "config.yaml"))
    assert planned_jobs(demo)["synthesise_demo"] == 1

    # The paper's config validates and plans up to the BriVL weights, which are not in the
    # repository (docs: download them from the BriVL release): that file, and only it, is
    # what a fresh checkout is missing.
    paper = ["-n", "--configfile", str(REPO / "config" / "paper.yaml")]
    result = run_snakemake(tmp_path, *paper)
    out = result.stdout + result.stderr
    assert "invalid config" not in out, out[-2000:]
    assert result.returncode == 1
    assert "Missing input files for rule embed_images:" in out, out[-2000:]
    listed = out.split("affected files:\n", 1)[1].splitlines()
    affected = [line.strip() for line in itertools.takewhile(lambda x: x.startswith("  "), listed)]
    assert affected == ["weights/BriVL-1.0-5500w.pth"], out[-2000:]

    # With a file at that path the whole paper run plans: 256 VGGSound shards, one AudioSet.
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "BriVL-1.0-5500w.pth").write_bytes(b"")
    jobs = planned_jobs(run_snakemake(tmp_path, *paper))
    assert jobs["build_manifest"] == 2
    assert jobs["download_clips"] == jobs["extract_media"] == 256 + 1
    assert jobs["embed_images"] == 256
    assert jobs["train_audio_encoder"] == jobs["generate_images"] == 1
