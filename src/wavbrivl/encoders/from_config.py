"""Build the configured image encoder from the workflow's ``embed`` config block.

Every stage that needs the frozen encoder (embedding, generation, the sheets' automatic
score) builds it here, so the config means the same model everywhere.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from wavbrivl.demo.encoder_train import DEMO_ENCODER_PATH
from wavbrivl.devices import pick_device
from wavbrivl.encoders.brivl import BRIVL_1_0, TINY_BRIVL
from wavbrivl.encoders.registry import ImageEncoder, build_encoder

ARCHITECTURES = {"brivl-1.0": BRIVL_1_0, "tiny": TINY_BRIVL}


def encoder_from_config(cfg: dict[str, Any]) -> ImageEncoder:
    """``cfg`` is the validated ``embed`` block (see workflow/schemas/config.schema.yaml)."""
    device = pick_device(cfg.get("device", "auto"))
    text_folder = cfg.get("text_tokenizer")  # BriVL's text tower (docs/stages.md)
    if cfg["encoder"] == "tiny":
        return build_encoder(
            "tiny",
            seed=cfg["seed"],
            box_mode=cfg["box_mode"],
            device=device,
            text_folder=text_folder,
        )
    if cfg["encoder"] == "demo":  # made by the rule train_demo_image_encoder
        return build_encoder(
            "demo",
            weights=DEMO_ENCODER_PATH,
            seed=cfg["seed"],
            box_mode=cfg["box_mode"],
            device=device,
            text_folder=text_folder,
        )
    if cfg["encoder"] in ("clip", "open_clip"):
        _check_clip_keys(cfg)
    if cfg["encoder"] == "clip":
        return build_encoder("clip", weights=cfg["weights"], device=device)
    if cfg["encoder"] == "open_clip":
        return build_encoder(
            "open_clip", weights=cfg["weights"], model_name=cfg.get("model_name"), device=device
        )
    architecture = ARCHITECTURES[cfg["architecture"]]
    if cfg.get("image_size"):
        architecture = dataclasses.replace(architecture, img_size=cfg["image_size"])
    return build_encoder(
        "brivl",
        weights=cfg["weights"],
        box_mode=cfg["box_mode"],
        device=device,
        config=architecture,
        text_folder=text_folder,
    )


def _check_clip_keys(cfg: dict[str, Any]) -> None:
    """CLIP-family models carry their own preprocessing: BriVL's keys would be ignored."""
    set_keys = [
        f"embed.{key}={cfg[key]}"
        for key, unset in (("image_size", None), ("box_mode", "whole"))
        if cfg.get(key, unset) != unset
    ]
    if cfg["encoder"] == "clip" and cfg.get("model_name"):
        set_keys.append(f"embed.model_name={cfg['model_name']}")
    if cfg.get("text_tokenizer"):  # the text side is the CLIP model's own
        set_keys.append(f"embed.text_tokenizer={cfg['text_tokenizer']}")
    if set_keys:
        raise ValueError(
            f"embed.encoder={cfg['encoder']} does not read {', '.join(set_keys)} (the model "
            "carries its own preprocessing; model_name is for open_clip): remove them"
        )
