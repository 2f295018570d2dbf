"""The small demo the workflow tests run: 12 clips in 2 shards, a few training and generation steps.

Its one uninterrupted run is the session fixture ``small_demo_run`` (conftest.py), shared by the
demo tests and the SIGKILL soak test, which compares its own interrupted runs against it.
"""

from __future__ import annotations

from pathlib import Path

import torch
import yaml
from conftest import REPO, run_snakemake

from wavbrivl.demo.tiny_text import save_tiny_text_folder
from wavbrivl.encoders.brivl_text import build_random_text
from wavbrivl.encoders.registry import build_tiny

TARGETS = ("media", "embeddings", "model", "sheets")


def small_demo_config() -> dict:
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["demo"].update(
        n_classes=6,
        clips_per_class=2,
        audioset_clips_per_class=1,
        duration_s=11,
        width=64,
        height=48,
        fps=8,
    )
    cfg["datasets"]["vggsound"]["n_shards"] = 2
    cfg["extract"]["frame_size"] = 32
    cfg["embed"].update(encoder="brivl", architecture="tiny", weights="weights/toy-brivl.pth")
    # 12 clips: a few short steps exercise the training and evaluation rules end to end
    cfg["train"].update(
        steps=6,
        batch_size=2,
        warmup_steps=2,
        ckpt_every=3,
        eval_every=3,
        log_every=1,
        window_s=2.0,
        num_workers=0,
        val_fraction=0.2,
    )
    cfg["generate"].update(steps=4, cutouts=2, size=[32, 32], min_cut_size=16)
    # The toy checkpoint also holds a random text tower (prepare_small_demo) for zero-shot.
    cfg["benchmarks"]["models"]["wavbrivl"]["text"] = {"text_tokenizer": "weights/text"}
    return cfg


def write_toy_checkpoint(path: Path, seed: int, text_folder: Path | None = None) -> None:
    """A BriVL-format checkpoint ({"learnable": {"imgencoder.*": ...}}) of the toy architecture;
    with ``text_folder`` (a BERT config + vocabulary) also a random ``textencoder.*`` tower."""
    state = build_tiny(seed=seed).model.state_dict()
    learnable = {f"imgencoder.{k}": v for k, v in state.items()}
    if text_folder is not None:
        text = build_random_text(text_folder, seed=seed).model.state_dict()
        learnable |= {f"textencoder.{k}": v for k, v in text.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"learnable": learnable}, path)


def prepare_small_demo(workdir: Path, cfg: dict | None = None) -> Path:
    """Write ``cfg.yaml`` (``small_demo_config()`` unless given) and the toy BriVL checkpoint
    into ``workdir``; return the config path."""
    config = workdir / "cfg.yaml"
    config.write_text(yaml.safe_dump(small_demo_config() if cfg is None else cfg))
    text_folder = workdir / "weights/text"
    if not text_folder.exists():
        save_tiny_text_folder(text_folder)
    write_toy_checkpoint(workdir / "weights/toy-brivl.pth", seed=0, text_folder=text_folder)
    return config


def run_small_demo(workdir: Path) -> None:
    """One uninterrupted run of the small demo's targets in ``workdir``."""
    prepare_small_demo(workdir)
    result = run_snakemake(workdir, "--cores", "2", *TARGETS, "--configfile", "cfg.yaml")
    assert result.returncode == 0, result.stderr[-4000:]
