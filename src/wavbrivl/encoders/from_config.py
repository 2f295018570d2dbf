"""Build the configured image encoder from the workflow's ``embed`` config block.

Every stage that needs the frozen encoder (embedding, generation, the sheets' automatic
score) builds it here, so the config means the same model everywhere.
"""

from __future__ import annotations

import dataclasses
from typing import Any

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
