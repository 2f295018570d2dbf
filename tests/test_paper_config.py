"""config/paper.yaml as a researcher runs it: stand-ins for the four weight files, saved in the
official formats at the paths the config names, pass check_weights; the whole DAG plans, every
job that reads a weight waits for that check, and no toy model is left anywhere in the plan
or in the resolved config."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO, planned_jobs, run_snakemake
from small_demo import write_toy_checkpoint

from wavbrivl.audio.tiny import save_tiny_wavlm
from wavbrivl.vqgan import TINY_VQGAN

PAPER = REPO / "config" / "paper.yaml"
VQGAN_FIXTURE = REPO / "tests" / "fixtures" / "vqgan_parity_tiny.pt"
# The rules that load a model from a weight file.
READERS = {
    "embed_images",
    "train_audio_encoder",
    "evaluate_retrieval",
    "generate_images",
    "assemble_sheets",
}


def _taming_yaml() -> str:
    """A tiny VQGAN's YAML laid out like taming's released model.yaml."""
    dd = {k: v for k, v in TINY_VQGAN.to_dict().items() if k not in ("embed_dim", "n_embed")}
    return yaml.safe_dump(
        {
            "model": {
                "target": "taming.models.vqgan.VQModel",
                "params": {
                    "embed_dim": TINY_VQGAN.embed_dim,
                    "n_embed": TINY_VQGAN.n_embed,
                    "ddconfig": dd,
                    "lossconfig": {"target": "taming.modules.losses.dummy.DummyLoss"},
                },
            }
        }
    )


def write_stand_ins(root: Path) -> None:
    """Tiny models in the release formats, at paper.yaml's paths."""
    weights = root / "weights"
    write_toy_checkpoint(weights / "BriVL-1.0-5500w.pth", seed=0)  # {"learnable": imgencoder.*}
    save_tiny_wavlm(weights / "wavlm-base-plus")  # save_pretrained: config, weights, preprocessor
    state = torch.load(VQGAN_FIXTURE, weights_only=True)["state_dict"]
    torch.save(
        {"state_dict": state, "epoch": 1, "global_step": 10},
        weights / "vqgan_imagenet_f16_16384.ckpt",
    )
    (weights / "vqgan_imagenet_f16_16384.yaml").write_text(_taming_yaml())


def _jobs(output: str) -> dict[str, list[str]]:
    """Rule -> the input lines of its planned jobs."""
    jobs: dict[str, list[str]] = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output):
        rule = re.match(r"(?:local)?rule (\w+):", block)
        if rule:
            found = re.search(r"^\s+input: (.*)$", block, re.M)
            jobs.setdefault(rule[1], []).append(found[1] if found else "")
    return jobs


def _values(node):
    if isinstance(node, dict):
        for value in node.values():
            yield from _values(value)
    elif isinstance(node, list):
        for value in node:
            yield from _values(value)
    else:
        yield node


@pytest.mark.slow
def test_paper_config_with_stand_ins_plans_the_whole_run_without_toys(tmp_path):
    write_stand_ins(tmp_path)
    paper = ["--configfile", str(PAPER)]

    plan = run_snakemake(tmp_path, "-n", *paper)
    out = plan.stdout + plan.stderr
    assert planned_jobs(plan) == {
        "check_weights": 1,
        "build_manifest": 2,
        "download_clips": 257,
        "list_used_clips": 2,  # one per dataset
        "report_availability": 2,  # one per dataset
        "extract_media": 257,
        "embed_images": 256,
        "train_audio_encoder": 1,
        "evaluate_retrieval": 1,
        "generate_images": 1,
        "assemble_sheets": 1,
        "all": 1,
    }
    # every job that reads a weight waits for the check (the paper DAG's first step)
    jobs = _jobs(plan.stdout)
    for rule in READERS:
        assert jobs[rule] and all("results/checks/weights.json" in i for i in jobs[rule]), rule
    assert "results/checks/weights.json" not in "".join(jobs["download_clips"])
    # the real models' paths, nothing made up by the toy rules
    assert "results/embeddings/brivl/vggsound/000.parquet" in out
    assert "results/sheets/paper/grid.png" in out
    assert "results/generation/paper/audioset_gen" in out
    assert "tiny" not in out
    assert "demo" not in out.replace("results/demo", "")

    # the resolved config (defaults filled by the schema, as the workflow does) names no toy
    from snakemake.utils import validate

    config = yaml.safe_load(PAPER.read_text())
    validate(config, str(REPO / "workflow/schemas/config.schema.yaml"))
    toys = [v for v in _values(config) if isinstance(v, str) and "tiny" in v.lower()]
    assert toys == []
    assert config.get("allow_toy_models") in (None, False)
    assert (config["generate"]["vqgan"], config["sheets"]["name"]) == ("taming", "paper")
    assert config["audio"]["wavlm"] == "weights/wavlm-base-plus"

    # the stand-ins pass the check: it writes its record, and the next plan needs no re-check
    checked = run_snakemake(tmp_path, "--cores", "1", "check_weights", *paper)
    assert checked.returncode == 0, (checked.stdout + checked.stderr)[-3000:]
    record = json.loads((tmp_path / "results/checks/weights.json").read_text())
    assert [r["path"] for r in record] == [
        "weights/BriVL-1.0-5500w.pth",
        "weights/wavlm-base-plus",
        "weights/vqgan_imagenet_f16_16384.ckpt",
        "weights/vqgan_imagenet_f16_16384.yaml",
    ]
    assert "check_weights" not in planned_jobs(run_snakemake(tmp_path, "-n", *paper))

    # a weight replaced by a broken file is checked again, and named
    (tmp_path / "weights/vqgan_imagenet_f16_16384.yaml").write_text("model: [\n")
    again = run_snakemake(tmp_path, "--cores", "1", "check_weights", *paper)
    out = again.stdout + again.stderr
    assert again.returncode != 0
    assert "1 weight file(s) missing or unreadable:" in out, out[-3000:]
    assert "generate.vqgan_yaml: weights/vqgan_imagenet_f16_16384.yaml: not valid YAML" in out
