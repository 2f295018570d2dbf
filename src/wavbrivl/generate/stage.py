"""The generation stage: media clips -> audio targets -> guided images + their records.

``run_generation`` is the workflow's call (config blocks in); ``generate_for_clips`` does the
work on built models. The run's folder is described in :mod:`wavbrivl.generate.records`.

Clips whose media row is not ``ok`` or whose audio cannot be decoded or embedded are
skipped and listed with the reason; a configuration error (wrong embedding size, a clip
missing from the manifest) stops before any optimisation.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from wavbrivl.configs import from_mapping
from wavbrivl.devices import pick_device
from wavbrivl.extract.media import collect_clip_audio
from wavbrivl.generate.loop import GenerateConfig, GenerationResult, generate
from wavbrivl.generate.records import PROGRESS_DIR, generation_record, write_generation_folder
from wavbrivl.generate.targets import AudioTargets, targets_for_clips
from wavbrivl.hashing import seeded_int
from wavbrivl.manifest.labels import read_clip_labels

PathLike = str | os.PathLike

#: Keys of the workflow's ``generate`` block that are not GenerateConfig fields.
WORKFLOW_ONLY_KEYS = (
    "dataset",
    "vqgan",
    "vqgan_ckpt",
    "vqgan_yaml",
    "tiny_seed",
    "clip_ids",
    "device",
    "metrics",  # wavbrivl.generate.metrics, run after the images (workflow/scripts/generate_images.py)
    "method",  # vqgan here; unclip is another rule (docs/generation-unclip.md)
    "unclip",
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
    """Build the configured VQGAN and image encoder, then :func:`generate_for_clips`."""
    from wavbrivl.encoders.from_config import encoder_from_config

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


def clip_seed(base_seed: int, clip_id: str) -> int:
    """A clip's generation seed: stable across runs, machines and batch composition."""
    return seeded_int("generate", base_seed, clip_id, bits=63)


def generate_for_clips(
    model_path: PathLike,
    media_paths: PathLike | Sequence[PathLike],
    manifest_path: PathLike,
    out_dir: PathLike,
    vqgan: torch.nn.Module,
    image_encoder: Any,
    cfg: GenerateConfig,
    *,
    vqgan_fingerprint: str | None = None,
    clip_ids: Sequence[str] | None = None,
    device: torch.device | str = "cpu",
    wavlm: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Generate an image for every ok clip of ``media_paths`` (or only ``clip_ids``).

    ``model_path`` is the trained ``audio_encoder.pt`` (``wavlm`` overrides its WavLM folder);
    ``vqgan`` and ``image_encoder`` are built by the caller (``image_encoder`` on ``device``),
    ``vqgan_fingerprint`` identifies the VQGAN weights (default: ``vqgan.fingerprint``, set by
    ``wavbrivl.vqgan``'s loaders). Returns the generation.json record.
    """
    device = torch.device(device)
    out_dir = Path(out_dir)
    vqgan_fingerprint = _vqgan_fingerprint(vqgan, vqgan_fingerprint)
    model, audio_fingerprint = load_audio_model(model_path, image_encoder, device, wavlm)
    fingerprints = {
        "vqgan": vqgan_fingerprint,
        "image_encoder": image_encoder.fingerprint,
        "audio_model": audio_fingerprint,  # of configs and weights, not of the file's bytes
    }

    audio, skipped = collect_clip_audio(_as_list(media_paths), clip_ids)
    labels = _display_labels(manifest_path, audio)
    targets, unusable = targets_for_clips(model, audio, device=device, log=log)
    skipped |= unusable
    del model  # free its memory before the optimisation

    progress_dir = out_dir / PROGRESS_DIR if cfg.save_every else None
    results = _optimise(vqgan, image_encoder, targets, labels, cfg, device, progress_dir, log)
    record = generation_record(cfg, fingerprints, vqgan, image_encoder, results, skipped)
    write_generation_folder(out_dir, results, targets, labels, fingerprints, record)
    return record


def _vqgan_fingerprint(vqgan: torch.nn.Module, given: str | None) -> str:
    fingerprint = given or getattr(vqgan, "fingerprint", None)
    if not fingerprint:
        raise ValueError(
            "the VQGAN has no fingerprint (build it with wavbrivl.vqgan.load_vqgan or "
            "build_tiny_vqgan, or pass vqgan_fingerprint=)"
        )
    return fingerprint


def load_audio_model(
    model_path: PathLike, image_encoder: Any, device: torch.device, wavlm: str | None
) -> tuple[torch.nn.Module, str]:
    """The trained model and its fingerprint (:func:`audio_model_fingerprint`), refused
    unless it was trained on the run's image encoder (the fingerprint it recorded) and embeds
    into its dimension. Both generation methods load through here."""
    from wavbrivl.train.checkpoint import (
        audio_model_fingerprint,
        build_trained_model,
        read_audio_encoder,
    )

    state = read_audio_encoder(model_path)
    recorded = state.get("image_encoder_fingerprint")
    if recorded and recorded != image_encoder.fingerprint:
        raise ValueError(
            f"{model_path}: trained on image encoder {recorded}, but the run's image encoder "
            f"{image_encoder.name} is {image_encoder.fingerprint}; generate with the encoder "
            "the model was trained against"
        )
    model = build_trained_model(state, device=device, wavlm=wavlm)
    if model.cfg.image_dim != image_encoder.dim:
        raise ValueError(
            f"{model_path}: the audio model embeds into {model.cfg.image_dim} dimensions, the "
            f"image encoder {image_encoder.name!r} into {image_encoder.dim}; generate with the "
            "image encoder the model was trained against"
        )
    return model, audio_model_fingerprint(state)


def _as_list(paths: PathLike | Sequence[PathLike]) -> list[PathLike]:
    return [paths] if isinstance(paths, str | os.PathLike) else list(paths)


def _display_labels(manifest_path: PathLike, clip_ids: Iterable[str]) -> dict[str, str]:
    """``{clip_id: display label}`` for ``clip_ids``; a clip the manifest lacks is an error."""
    labels = read_clip_labels(manifest_path)
    wanted = set(clip_ids)
    missing = sorted(wanted - labels.keys())
    if missing:
        raise ValueError(
            f"{manifest_path}: no manifest row for {len(missing)} generation clip(s), e.g. "
            f"{missing[:5]}; is it the manifest of the same dataset?"
        )
    return {clip_id: labels[clip_id].display for clip_id in wanted}


def _optimise(
    vqgan: torch.nn.Module,
    image_encoder: Any,
    targets: AudioTargets,
    labels: dict[str, str],
    cfg: GenerateConfig,
    device: torch.device,
    progress_dir: Path | None,
    log: Callable[[str], None],
) -> list[GenerationResult]:
    """The VQGAN optimisation towards every target, each clip with its own seed."""
    if not targets.clip_ids:
        log("WARNING: no clip has usable audio; nothing generated")
        return []
    return generate(
        vqgan,
        image_encoder,
        targets.vectors,
        cfg,
        clip_ids=targets.clip_ids,
        labels=[labels[c] for c in targets.clip_ids],
        seeds=[clip_seed(cfg.seed, c) for c in targets.clip_ids],
        device=device,
        target_norms=targets.norms,
        progress_dir=progress_dir,
        log=log,
    )


__all__ = [
    "WORKFLOW_ONLY_KEYS",
    "build_vqgan",
    "clip_seed",
    "generate_for_clips",
    "load_audio_model",
    "run_generation",
]
