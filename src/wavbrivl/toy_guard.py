"""Refuse toy stand-ins (random, untrained models) outside the demo, before any job starts.

The schema's defaults are the demo's toy models (`tiny` image encoder, tiny WavLM, `tiny`
VQGAN), so a config that forgets a block would otherwise train and generate with random
networks and still produce every figure. ``check_no_toy_models`` names every toy key the
config uses, in one line, unless the config says ``allow_toy_models: true`` (the demo's
config/config.yaml does). The workflow calls it at config load (workflow/rules/common.smk),
right after the schema has filled the defaults. See config/README.md (`allow_toy_models`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: (block, key, toy value, what it is). A key counts only where the run uses it (see toy_keys).
TOY_VALUES: tuple[tuple[str, str, str, str], ...] = (
    ("embed", "encoder", "tiny", "random tiny image encoder"),
    ("embed", "encoder", "demo", "tiny image encoder trained on the synthetic demo frames"),
    ("embed", "architecture", "tiny", "toy-size BriVL checkpoint"),
    ("audio", "wavlm", "tiny", "random tiny WavLM"),
    ("generate", "vqgan", "tiny", "random tiny VQGAN"),
    ("generate", "vqgan", "demo", "tiny VQGAN trained on the synthetic demo frames"),
)


class ToyModelError(ValueError):
    """The config uses a toy stand-in and does not allow it."""


def _used(config: Mapping[str, Any], block: str, key: str) -> bool:
    """Whether the run reads ``block.key`` at all."""
    if (block, key) == ("embed", "architecture"):
        # only the brivl encoder loads a checkpoint into an architecture
        return config["embed"]["encoder"] == "brivl"
    if block == "generate":
        # generation runs only for a dataset with role generation; unCLIP reads no VQGAN
        generates = any(ds.get("role") == "generation" for ds in config["datasets"].values())
        return generates and config[block].get("method", "vqgan") == "vqgan"
    return True


def toy_keys(config: Mapping[str, Any]) -> list[str]:
    """``block.key=value (what)`` for every toy stand-in the (defaults-filled) config uses."""
    found = []
    for block, key, toy, what in TOY_VALUES:
        if config[block][key] == toy and _used(config, block, key):
            found.append(f"{block}.{key}={toy} ({what})")
    return found


def check_no_toy_models(config: Mapping[str, Any]) -> None:
    """Raise ToyModelError naming every toy key, unless ``allow_toy_models`` is true."""
    if config.get("allow_toy_models"):  # absent: not allowed
        return
    found = toy_keys(config)
    if found:
        raise ToyModelError(
            f"config uses toy stand-ins, not trained models: {'; '.join(found)}. "
            "Set the real models (config/paper.yaml shows them; weights/README.md lists "
            "their files), or add `allow_toy_models: true` to the config to run them anyway."
        )
