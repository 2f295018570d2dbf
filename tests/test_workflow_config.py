"""The config is validated before any job starts, with messages that name the key."""

from __future__ import annotations

import re
import textwrap

import pytest
import yaml
from conftest import REPO, planned_jobs, run_snakemake

VALID = {
    "allow_toy_models": True,  # the schema's default models are the demo's toys
    "datasets": {
        "vgg": {
            "format": "vggsound",
            "csv": "in/vggsound.csv",
            "n_shards": 3,
            "source": {"url_template": "https://www.youtube.com/watch?v={id}"},
        }
    },
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
        (("sheets", "compare"), ["only_one"], "sheets.compare", "too short"),
        (("sheets", "compare"), ["no_such_run", "other"], "sheets.compare", "no_such_run"),
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


def test_sheets_compare_names_two_different_entries_of_sheets_runs(tmp_path):
    cfg = _with(("sheets", "runs"), ["r1", "r2"])
    cfg["sheets"]["compare"] = ["r1", "r1"]
    result = _dry_run(tmp_path, cfg)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "invalid config at 'sheets.compare': ['r1', 'r1'] must name two different runs" in out
    assert "of sheets.runs ['r1', 'r2']" in out
    cfg["sheets"]["compare"] = ["r2", "r1"]
    assert _dry_run(tmp_path, cfg).returncode == 0


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
        allow_toy_models: true
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
        "list_used_clips": 1,  # results/download/vgg/used_clips.csv
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
    assert "check_weights" not in planned_jobs(demo)  # toy models: no weight files

    # A fresh checkout (weights/ holds only its README) plans the whole paper run: the weights
    # are checked by its first job, which every job that reads them waits for.
    (tmp_path / "weights").mkdir()
    paper = ["--configfile", str(REPO / "config" / "paper.yaml")]
    jobs = planned_jobs(run_snakemake(tmp_path, "-n", *paper))
    assert jobs["check_weights"] == 1
    assert jobs["build_manifest"] == 2
    assert jobs["download_clips"] == jobs["extract_media"] == 256 + 1
    assert jobs["embed_images"] == 256
    assert jobs["train_audio_encoder"] == jobs["generate_images"] == jobs["assemble_sheets"] == 1

    # That job names all four missing files in one message, with what to do.
    result = run_snakemake(tmp_path, "--cores", "1", "check_weights", *paper)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "4 weight file(s) missing or unreadable:" in out, out[-3000:]
    for key, path in [
        ("embed.weights", "weights/BriVL-1.0-5500w.pth"),
        ("audio.wavlm", "weights/wavlm-base-plus"),
        ("generate.vqgan_ckpt", "weights/vqgan_imagenet_f16_16384.ckpt"),
        ("generate.vqgan_yaml", "weights/vqgan_imagenet_f16_16384.yaml"),
    ]:
        assert f"  - {key}: {path}: missing (" in out
    assert "weights/README.md says who publishes each file" in out
    assert not (tmp_path / "results/checks/weights.json").exists()


TOY_KEYS = [
    (("embed", "encoder"), "tiny", "embed.encoder=tiny"),
    (("audio", "wavlm"), "tiny", "audio.wavlm=tiny"),
    (("embed", "architecture"), "tiny", "embed.architecture=tiny"),
]


def _real(cfg):
    """VALID with real models named (the files need not exist to plan)."""
    cfg = yaml.safe_load(yaml.safe_dump(cfg))
    del cfg["allow_toy_models"]
    cfg["embed"] = {"encoder": "brivl", "weights": "w/brivl.pth"}
    cfg["audio"] = {"wavlm": "microsoft/wavlm-base-plus"}
    return cfg


@pytest.mark.parametrize(("path", "value", "named"), TOY_KEYS)
def test_a_toy_model_stops_the_run_before_any_job(tmp_path, path, value, named):
    cfg = _real(VALID)
    cfg[path[0]][path[1]] = value
    result = _dry_run(tmp_path, cfg)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "config uses toy stand-ins, not trained models: " + named in out, out[-2000:]
    assert "allow_toy_models: true" in out
    assert "Job stats" not in out
    assert not (tmp_path / "results").exists()

    cfg["allow_toy_models"] = True
    assert planned_jobs(_dry_run(tmp_path, cfg))["embed_images"] == 3


def test_a_config_without_models_is_refused_naming_every_toy_default(tmp_path):
    cfg = yaml.safe_load(yaml.safe_dump(VALID))
    del cfg["allow_toy_models"]
    cfg["datasets"]["gen"] = {
        "format": "audioset",
        "role": "generation",
        "csv": "in/vggsound.csv",
        "split_name": "eval",
        "n_shards": 1,
    }
    result = _dry_run(tmp_path, cfg)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    for named in ["embed.encoder=tiny", "audio.wavlm=tiny", "generate.vqgan=tiny"]:
        assert named in out, out[-2000:]
    assert "Job stats" not in out


def test_real_models_plan_without_the_flag(tmp_path):
    jobs = planned_jobs(_dry_run(tmp_path, _real(VALID)))
    assert jobs["check_weights"] == 1  # the BriVL checkpoint, checked before it is read
    assert "prepare_tiny_wavlm" not in jobs


def test_the_demo_encoder_is_trained_before_any_job_reads_it(tmp_path):
    from wavbrivl.demo.encoder_train import DEMO_ENCODER_PATH

    config = ["--configfile", str(REPO / "config" / "config.yaml")]
    result = run_snakemake(tmp_path, "-n", *config, "--config", "embed={encoder: demo}")
    jobs = planned_jobs(result)
    assert jobs["train_demo_image_encoder"] == 1
    assert "check_weights" not in jobs  # made by the run, not a file to provide
    blocks = re.split(r"\n(?=(?:local)?rule \w+:)", result.stdout)
    training = [b for b in blocks if re.match(r"(local)?rule train_demo_image_encoder:", b)]
    assert f"output: {DEMO_ENCODER_PATH}," in training[0]
    readers = {
        re.match(r"(?:local)?rule (\w+):", b)[1]
        for b in blocks
        if re.match(r"(?:local)?rule \w+:", b) and DEMO_ENCODER_PATH in b.split("output:")[0]
    }
    assert readers == {"embed_images", "generate_images", "assemble_sheets", "benchmark_zeroshot"}
