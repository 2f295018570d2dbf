"""Tiny random CLIP models saved in their libraries' own formats, for the encoder tests.

- :func:`save_hf_clip`: a transformers ``CLIPModel`` with a tiny ``CLIPConfig``, written by
  ``save_pretrained`` with a ``CLIPImageProcessor`` and a ``CLIPTokenizer`` built from a
  hand-written byte-level vocabulary and four merges;
- :func:`save_open_clip_file` / :func:`save_open_clip_folder`: an OpenCLIP model of a tiny
  custom architecture, as a checkpoint file (state dict, ``torch.save``) or as an OpenCLIP
  model folder (``open_clip_config.json`` + ``open_clip_model.safetensors``).

No weights come from anywhere: every model is random, seeded.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

#: A tiny OpenCLIP architecture (ViT image tower, transformer text tower with the bundled
#: 49408-token BPE vocabulary so OpenCLIP's SimpleTokenizer works offline).
TINY_OPEN_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
TINY_OPEN_CLIP_NAME = "WavbrivlTiny-Test-CLIP"


def byte_alphabet() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for bytes (GPT-2's table)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    extra = [b for b in range(256) if b not in printable]
    return [chr(c) for c in printable] + [chr(256 + i) for i in range(len(extra))]


def save_hf_clip(folder: Path, seed: int = 0, processor_kwargs: dict | None = None) -> Path:
    """A random tiny HF CLIP folder (model, image processor, tokenizer); returns ``folder``."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    chars = byte_alphabet()
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    merges = [("d", "o"), ("do", "g</w>"), ("c", "a"), ("ca", "t</w>")]
    for left, right in merges:
        vocab[left + right] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges)
    config = CLIPConfig(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "max_position_embeddings": 16,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=24,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(config)
    kwargs = {"size": {"shortest_edge": 32}, "crop_size": {"height": 32, "width": 32}}
    processor = CLIPImageProcessor(**{**kwargs, **(processor_kwargs or {})})
    for part in (model, processor, tokenizer):
        part.save_pretrained(folder)
    return folder


def register_tiny_open_clip(tmp_dir: Path) -> str:
    """Make the tiny architecture known to OpenCLIP by name (as a built-in config would be)."""
    import open_clip

    path = tmp_dir / f"{TINY_OPEN_CLIP_NAME}.json"
    path.write_text(json.dumps(TINY_OPEN_CLIP))
    open_clip.add_model_config(path)
    return TINY_OPEN_CLIP_NAME


def tiny_open_clip_model(seed: int = 0):
    import open_clip

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.create_model(TINY_OPEN_CLIP_NAME)
    return model


def save_open_clip_file(path: Path, seed: int = 0) -> Path:
    """The tiny model's state dict as an OpenCLIP checkpoint file (``torch.save``)."""
    torch.save(tiny_open_clip_model(seed).state_dict(), path)
    return path


def save_open_clip_folder(folder: Path, seed: int = 0, preprocess_cfg: dict | None = None) -> Path:
    """An OpenCLIP model folder: ``open_clip_config.json`` + ``open_clip_model.safetensors``."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    config = {"model_cfg": TINY_OPEN_CLIP, "preprocess_cfg": preprocess_cfg or {}}
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    save_file(tiny_open_clip_model(seed).state_dict(), folder / "open_clip_model.safetensors")
    return folder


def pictures() -> list[Image.Image]:
    """Different sizes and aspect ratios (landscape, portrait, odd sides), different content."""
    rng = np.random.default_rng(0)
    left_red = np.zeros((45, 75, 3), np.uint8)
    left_red[:, :30, 0] = 255  # an asymmetric picture: a wrong crop offset shows
    smooth = np.linspace(0, 255, 70 * 41 * 3).reshape(70, 41, 3).astype(np.uint8)
    return [
        Image.fromarray(left_red),
        Image.fromarray(smooth),
        Image.fromarray((rng.random((50, 50, 3)) * 255).astype(np.uint8)),
        Image.new("L", (33, 64), 200),  # greyscale: converted to RGB
    ]


def as_tensor(image: Image.Image) -> torch.Tensor:
    """One picture -> (1, 3, H, W) float RGB in [0, 1], the tensor path's input."""
    array = np.array(image.convert("RGB"))
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).float() / 255.0
