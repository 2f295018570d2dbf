"""A tiny random WavLM saved in the official Hugging Face format, for the demo and tests.

No weights can be downloaded here, so the loading code is exercised on a model with the real
architecture and file layout (``config.json``, ``model.safetensors``,
``preprocessor_config.json``) at toy size. The conv stack keeps the real kernels and strides,
so clip lengths, frame counts (50 per second) and the 400-sample receptive field are the
real ones; only the widths shrink.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMModel

from wavbrivl.extract.media import SAMPLE_RATE

_TINY_COMMON: dict[str, Any] = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "conv_dim": (16,) * 7,
    "conv_kernel": (10, 3, 3, 3, 3, 2, 2),  # the real WavLM conv stack geometry
    "conv_stride": (5, 2, 2, 2, 2, 2, 2),
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 2,
    "num_buckets": 32,
    "max_bucket_distance": 64,
}

#: ``base``: GroupNorm conv stack, post-norm encoder, raw waveform (like WavLM Base/Base+).
#: ``large``: LayerNorm conv stack, pre-norm encoder, normalised waveform (like WavLM Large).
TINY_WAVLM_VARIANTS: dict[str, dict[str, Any]] = {
    "base": {"feat_extract_norm": "group", "do_stable_layer_norm": False},
    "large": {"feat_extract_norm": "layer", "do_stable_layer_norm": True},
}

#: :class:`~wavbrivl.audio.encoder.AudioEncoderConfig` kwargs for the tiny preset (add
#: ``wavlm``); n_heads divides the tiny WavLM's hidden size (32).
TINY_AUDIO: dict[str, Any] = {
    "n_layers": 2,
    "n_heads": 2,
    "ff_dim": 64,
    "dropout": 0.1,
    "mlp_hidden": 64,
    "out_dim": 32,
}

#: :class:`~wavbrivl.train.moco.MoCoConfig` kwargs matching the tiny BriVL image encoder
#: (``TINY_BRIVL.out_dim`` = 128) with a queue small enough for the demo.
TINY_MOCO: dict[str, Any] = {
    "image_dim": 128,
    "head_hidden": 64,
    "queue_size": 256,
}


def tiny_wavlm_config(variant: str = "base") -> WavLMConfig:
    if variant not in TINY_WAVLM_VARIANTS:
        raise ValueError(
            f"unknown tiny WavLM variant {variant!r}; known: {sorted(TINY_WAVLM_VARIANTS)}"
        )
    return WavLMConfig(**_TINY_COMMON, **TINY_WAVLM_VARIANTS[variant])


def save_tiny_wavlm(path: str | os.PathLike, seed: int = 0, *, variant: str = "base") -> Path:
    """Write a tiny random WavLM (``save_pretrained`` format) to the directory ``path``.

    Same ``seed`` -> same weights. The directory is assembled under a temporary name and
    renamed into place, so an interrupted call leaves no half model; an existing non-empty
    ``path`` is refused, never overwritten.
    """
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise FileExistsError(f"{path} exists and is not an empty directory")
    config = tiny_wavlm_config(variant)
    with torch.random.fork_rng(devices=[]):  # seed the init without touching global RNG
        torch.manual_seed(seed)
        model = WavLMModel(config)
    extractor = Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=SAMPLE_RATE,
        padding_value=0.0,
        do_normalize=variant == "large",
        return_attention_mask=variant == "large",
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        model.save_pretrained(tmp)
        extractor.save_pretrained(tmp)
        os.replace(tmp, path)  # replaces an empty directory atomically
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


__all__ = [
    "TINY_AUDIO",
    "TINY_MOCO",
    "TINY_WAVLM_VARIANTS",
    "save_tiny_wavlm",
    "tiny_wavlm_config",
]
