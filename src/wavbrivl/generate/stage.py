"""The generation stage as the workflow runs it: config blocks in, a run's image folder out."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from wavbrivl.configs import from_mapping
from wavbrivl.devices import pick_device
from wavbrivl.encoders.from_config import encoder_from_config
from wavbrivl.generate.loop import GenerateConfig
from wavbrivl.generate.run import generate_for_clips

#: Keys of the workflow's ``generate`` block that are not GenerateConfig fields.
WORKFLOW_ONLY_KEYS = (
    "dataset",
    "vqgan",
    "vqgan_ckpt",
    "vqgan_yaml",
    "tiny_seed",
    "clip_ids",
    "device",
)


def build_vqgan(block: dict[str, Any], device):
    """``vqgan: tiny`` (toy size, seeded random weights: demo only) or a taming checkpoint."""
    from wavbrivl.vqgan import build_tiny_vqgan, load_vqgan

    if block["vqgan"] == "tiny":
        return build_tiny_vqgan(seed=block["tiny_seed"], device=device)
    return load_vqgan(block["vqgan_ckpt"], block["vqgan_yaml"], device=device)


def run_generation(
    *,
    model_path: str | Path,
    media_paths: Sequence[str | Path],
    manifest_path: str | Path,
    out_dir: str | Path,
    generate_block: dict[str, Any],
    embed_block: dict[str, Any],
    wavlm: str | None,
    log: Callable[[str], None],
) -> dict[str, Any]:
    device = pick_device(generate_block.get("device", "auto"))
    values = {k: v for k, v in generate_block.items() if k not in WORKFLOW_ONLY_KEYS}
    cfg = from_mapping(GenerateConfig, values, "generate config")
    vqgan = build_vqgan(generate_block, device)
    encoder = encoder_from_config({**embed_block, "device": str(device)})
    log(f"generating with {vqgan.name} and {encoder.name} on {device}")
    return generate_for_clips(
        model_path,
        list(media_paths),
        manifest_path,
        out_dir,
        vqgan,
        encoder,
        cfg,
        clip_ids=generate_block.get("clip_ids"),
        device=device,
        wavlm=wavlm,
        log=log,
    )
