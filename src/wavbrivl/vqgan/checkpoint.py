"""Load taming-transformers VQGAN checkpoints (``vqgan_imagenet_f16_16384``) without taming.

Two files make a model: the YAML config (``model.params.ddconfig``, ``embed_dim``,
``n_embed``) and the PyTorch Lightning checkpoint, ``{"state_dict": {...}, ...}``. The state
dict holds the VQModel (``encoder.*``, ``decoder.*``, ``quantize.embedding.weight``,
``quant_conv.*``, ``post_quant_conv.*``) and its training loss (``loss.*``: LPIPS and the
discriminator), which is dropped. Everything else must match the architecture key for key.

Files are read with ``weights_only=True``: nothing in them is executed. Lightning 1.x also
pickles its own bookkeeping (the ``ModelCheckpoint`` callback class as a dict key of the
callback state); the Lightning globals named in :data:`LIGHTNING_GLOBALS`, and only those,
are mapped to inert placeholder classes so the file loads without Lightning installed. Any
other global, another Lightning name included, is refused with the list of names.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import torch

from wavbrivl.checkpoints import (
    CheckpointError,
    CheckpointMismatchError,
    UntrustedCheckpointError,
    check_state_fits,
    read_checkpoint,
    state_dict_entry,
    state_dict_sha256,
    untrusted_error,
)
from wavbrivl.hashing import sha256_of
from wavbrivl.vqgan.model import TINY_VQGAN, VQGAN, VQGANConfig

__all__ = [
    "CheckpointError",
    "CheckpointMismatchError",
    "UntrustedCheckpointError",
    "build_tiny_vqgan",
    "load_vqgan",
    "read_taming_yaml",
    "read_vqgan_state",
    "vqgan_fingerprint",
]

IGNORED_PREFIX = "loss."  # the training loss (LPIPS + discriminator); not part of the model
# The Lightning globals that taming's released checkpoints pickle, by full name: Lightning
# 1.x stores its callback state keyed by the callback class, and the only one in taming's
# vqgan_imagenet_f16_16384 last.ckpt is ModelCheckpoint (loading it weights-only fails on
# exactly this name). Keep this list explicit and short; anything else is refused.
LIGHTNING_GLOBALS = frozenset({"pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"})
TAMING_TARGET = "taming.models.vqgan.VQModel"

# ddconfig keys that taming accepts but we implement at one value only.
_FIXED_DDCONFIG = {"resamp_with_conv": True, "give_pre_end": False}
# VQModel params that would add parameters/buffers we do not model (remapped codebooks etc.).
_UNSUPPORTED_PARAMS = ("remap", "colorize_nlabels")


def read_taming_yaml(path: str | os.PathLike) -> VQGANConfig:
    """The architecture described by a taming model YAML, strictly: an unknown ddconfig key
    or an unsupported option is an error naming the file and the key."""
    import yaml  # only needed here; part of the workflow environment (Snakemake needs it)

    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"{path}: cannot read the VQGAN config ({err})") from err
    params = _dig(doc, ("model", "params"), path)
    target = (doc.get("model") or {}).get("target")
    if target is not None and target != TAMING_TARGET:
        raise ValueError(f"{path}: model.target is {target!r}; only {TAMING_TARGET} is supported")
    for key in _UNSUPPORTED_PARAMS:
        if params.get(key) is not None:
            raise ValueError(f"{path}: model.params.{key} is set; it is not supported")
    ddconfig = dict(_dig(params, ("ddconfig",), path, where="model.params"))
    for key, value in _FIXED_DDCONFIG.items():
        if key in ddconfig and ddconfig.pop(key) != value:
            raise ValueError(f"{path}: model.params.ddconfig.{key} must be {value}")
    missing = [k for k in ("embed_dim", "n_embed") if k not in params]
    if missing:
        raise ValueError(f"{path}: model.params lacks {missing}")
    values = {**ddconfig, "embed_dim": params["embed_dim"], "n_embed": params["n_embed"]}
    try:
        return VQGANConfig.from_dict(values)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: model.params.ddconfig: {err}") from err


def _dig(doc: Any, keys: tuple[str, ...], path: Path, where: str = "") -> dict:
    node = doc
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            at = ".".join(filter(None, [where, *keys]))
            raise ValueError(f"{path}: no '{at}' mapping (not a taming model config?)")
        node = node[key]
    if not isinstance(node, dict):
        raise ValueError(f"{path}: '{'.'.join(keys)}' is not a mapping")
    return node


def _lightning_placeholder(full_name: str) -> type:
    """An inert class standing in for a Lightning global: instances only keep their state."""

    def keep_state(self: Any, state: Any) -> None:
        self.pickled_state = state

    module, _, name = full_name.rpartition(".")
    return type(
        name,
        (),
        {
            "__module__": module,
            "__init__": lambda self, *args, **kwargs: None,
            "__setstate__": keep_state,
        },
    )


def _read_lightning_checkpoint(path: Path) -> dict:
    """``torch.load(weights_only=True)``, with Lightning bookkeeping globals made inert."""
    unsafe: list[str] = []
    if path.is_file() and zipfile.is_zipfile(path):  # the format torch >= 1.6 writes
        try:
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:  # a damaged archive: read_checkpoint below reports it with the path
            unsafe = []
    lightning = [g for g in unsafe if g in LIGHTNING_GLOBALS]
    if len(lightning) < len(unsafe):
        foreign = sorted(set(unsafe) - set(lightning))
        raise untrusted_error(path, foreign)
    placeholders = [(_lightning_placeholder(name), name) for name in lightning]
    with torch.serialization.safe_globals(placeholders):
        return read_checkpoint(path)


def read_vqgan_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The VQModel weights of a Lightning checkpoint, ``loss.*`` dropped."""
    path = Path(path)
    payload = _read_lightning_checkpoint(path)
    state = state_dict_entry(payload, "state_dict", path, "a Lightning checkpoint")
    return {k: v for k, v in state.items() if not k.startswith(IGNORED_PREFIX)}


def check_vqgan_state(model: VQGAN, state: dict[str, torch.Tensor], path: str | Path) -> None:
    """Raise :class:`CheckpointMismatchError` listing missing, unexpected and mis-shaped keys
    unless ``state`` fits ``model`` exactly."""
    check_state_fits(model, state, path, "VQGAN weights do not match the configured architecture")


def vqgan_fingerprint(cfg: VQGANConfig, weights_sha256: str) -> str:
    """Hex SHA-256 of the architecture and the weights: what generated images depend on."""
    identity = {"config": cfg.to_dict(), "weights_sha256": weights_sha256}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def _frozen(model: VQGAN, name: str, weights_sha256: str, device: str | torch.device) -> VQGAN:
    # Guided generation optimises latents only: the VQGAN is a fixed decoder.
    model.requires_grad_(False).eval()
    model.name = name
    model.fingerprint = vqgan_fingerprint(model.cfg, weights_sha256)
    return model.to(device)


def load_vqgan(
    ckpt_path: str | os.PathLike,
    config: VQGANConfig | str | os.PathLike,
    device: str | torch.device = "cpu",
) -> VQGAN:
    """A frozen (eval, no grad) VQGAN from a taming checkpoint and its config.

    ``config`` is a :class:`VQGANConfig` or the path of taming's YAML. Weights load strictly
    (``loss.*`` aside); any problem raises a :class:`CheckpointError` subclass naming the file.
    """
    cfg = config if isinstance(config, VQGANConfig) else read_taming_yaml(config)
    state = read_vqgan_state(ckpt_path)
    model = VQGAN(cfg)
    check_vqgan_state(model, state, ckpt_path)
    model.load_state_dict(state, strict=True)
    return _frozen(model, f"vqgan({Path(ckpt_path).name})", sha256_of(ckpt_path), device)


def build_tiny_vqgan(seed: int = 0, device: str | torch.device = "cpu") -> VQGAN:
    """:data:`TINY_VQGAN` with seeded random weights: NOT a trained model (tests, demo)."""
    with torch.random.fork_rng(devices=[]):  # leave the caller's RNG untouched
        torch.manual_seed(seed)
        model = VQGAN(TINY_VQGAN)
        # taming's tiny-range init (+-1/n_embed) makes all codes nearly equal; spread them
        # so that different tokens decode to visibly different images.
        torch.nn.init.normal_(model.quantize.embedding.weight)
    digest = state_dict_sha256(model.state_dict())
    return _frozen(model, f"tiny-random-vqgan(seed={seed})", digest, device)
