"""The config is validated before any job starts, with messages that name the key."""

from __future__ import annotations

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
    # A config that says nothing about extraction still plans: defaults come from the schema.
    cfg_text = textwrap.dedent(
        """
        datasets:
          vgg: {format: vggsound, csv: in/vggsound.csv, n_shards: 1}
        """
    )
    (tmp_path / "cfg.yaml").write_text(cfg_text)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "vggsound.csv").write_text("abcdefghijk,0,dog barking,train\n")
    result = run_snakemake(
        tmp_path, "-n", "--configfile", str(tmp_path / "cfg.yaml"), "--printshellcmds"
    )
    assert result.returncode == 0, result.stderr


def test_shipped_configs_are_valid(tmp_path):
    for name in ["config.yaml", "paper.yaml"]:
        result = run_snakemake(tmp_path, "-n", "--configfile", str(REPO / "config" / name))
        out = result.stdout + result.stderr
        assert "invalid config" not in out, (name, out[-2000:])
