"""HF-format CLIP as a frozen image space, with its text side, from a local folder only.

The folder is what ``save_pretrained`` writes (or ``hf download <org/name> --local-dir ...``
fetches): ``config.json`` + weights (``model.safetensors``, sharded safetensors or
``pytorch_model.bin``) for ``transformers.CLIPModel``, ``preprocessor_config.json`` for
``CLIPImageProcessor`` and the tokenizer files (``tokenizer.json``, or ``vocab.json`` +
``merges.txt``) for ``CLIPTokenizer``. Everything is read with ``local_files_only=True``:
nothing is ever fetched from the hub; a hub name such as ``openai/clip-vit-base-patch32`` is
refused with one line saying where to put the files (docs/stages.md, "Frozen image spaces").

Images through the PIL path get the saved image processor's pixels exactly; the model's
``get_image_features`` / ``get_text_features`` give the embeddings, L2-normalised here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from wavbrivl.checkpoints import state_dict_sha256
from wavbrivl.encoders.clip_family import (
    ClipFamilyEncoder,
    ClipPreprocess,
    LocalWeightsError,
    freeze,
    hub_name_error,
    without_volatile,
)
from wavbrivl.weights_check import HF_CLIP_WEIGHTS, looks_like_hub_name

KEY = "embed.weights"
WHAT = "the HF-format CLIP model folder"
#: PIL resampling codes the tensor path can follow: 2 bilinear, 3 bicubic.
RESAMPLE = {2: "bilinear", 3: "bicubic"}


def clip_folder_problems(folder: str | os.PathLike) -> list[str]:
    """What an HF CLIP folder lacks (file names); empty when everything is there."""
    path = Path(folder)
    missing = [n for n in ("config.json", "preprocessor_config.json") if not (path / n).is_file()]
    if not any((path / n).is_file() for n in HF_CLIP_WEIGHTS):
        missing.append(" or ".join(HF_CLIP_WEIGHTS))
    has_tokenizer = (path / "tokenizer.json").is_file() or all(
        (path / n).is_file() for n in ("vocab.json", "merges.txt")
    )
    if not has_tokenizer:
        missing.append("tokenizer.json (or vocab.json + merges.txt)")
    return missing


def check_clip_folder(folder: str | os.PathLike | None, key: str = KEY) -> Path:
    """The folder as a Path, or a one-line :class:`LocalWeightsError` naming what is wrong."""
    if folder is None:
        raise LocalWeightsError(
            f"{key} is not set: encoder `clip` needs a local folder of an HF-format CLIP model "
            "(weights/README.md)"
        )
    folder = os.fspath(folder)
    if looks_like_hub_name(folder):
        raise hub_name_error(key, folder)
    if not os.path.isdir(folder):
        raise LocalWeightsError(
            f"{key}: {folder}: no such folder; put {WHAT} there (config.json, weights, "
            "preprocessor_config.json, tokenizer files; weights/README.md)"
        )
    missing = clip_folder_problems(folder)
    if missing:
        raise LocalWeightsError(
            f"{key}: {folder}: not a complete HF CLIP folder, missing {'; '.join(missing)} "
            "(weights/README.md)"
        )
    return Path(folder)


def preprocess_from_processor(processor: Any) -> ClipPreprocess:
    """The tensor-path twin of a ``CLIPImageProcessor``; refuses settings it cannot follow."""
    size, crop = processor.size, processor.crop_size
    unsupported = [
        f"{flag}=False"
        for flag in ("do_resize", "do_center_crop", "do_rescale", "do_normalize")
        if not getattr(processor, flag)
    ]
    if processor.resample not in RESAMPLE:
        unsupported.append(f"resample={processor.resample}")
    if unsupported:
        raise ValueError(
            f"image processor settings the tensor path cannot follow: {', '.join(unsupported)} "
            "(it follows resize, centre crop, rescale and normalise, bilinear or bicubic)"
        )
    if crop.height != crop.width:
        raise ValueError(f"a non-square crop ({crop.height} x {crop.width}) is not supported")
    if size.shortest_edge:
        side, mode = size.shortest_edge, "shortest"
    elif size.height and size.height == size.width:
        side, mode = size.height, "squash"
    else:
        raise ValueError(f"image processor size {processor.to_dict()['size']} is not supported")
    return ClipPreprocess(
        size=side,
        crop=crop.height,
        mean=tuple(processor.image_mean),
        std=tuple(processor.image_std),
        resize_mode=mode,
        interpolation=RESAMPLE[processor.resample],
        crop_offset="floor",  # transformers: int((H - h) / 2)
    )


class HFClipEncoder(ClipFamilyEncoder):
    """A frozen ``transformers.CLIPModel`` with its image processor and tokenizer."""

    family = "hf_clip"

    def __init__(self, model: Any, processor: Any, tokenizer: Any, *, name: str, device="cpu"):
        text_cfg = model.config.text_config
        # CLIP pools the text at the end-of-text token; with a mismatched id (2 is transformers'
        # legacy "take the argmax id" setting) every prompt would be pooled at position 0.
        if text_cfg.eos_token_id != 2 and text_cfg.eos_token_id != tokenizer.eos_token_id:
            raise ValueError(
                f"{name}: the model's eos_token_id {text_cfg.eos_token_id} is not the "
                f"tokenizer's ({tokenizer.eos_token_id}); the folder mixes two models"
            )
        identity = {
            "weights_sha256": state_dict_sha256(model.state_dict()),
            "config": without_volatile(model.config.to_dict()),
            "image_processor": without_volatile(processor.to_dict()),
        }
        self.model = freeze(model).to(device)
        self.processor = processor
        self.tokenizer = tokenizer
        self.max_tokens = int(text_cfg.max_position_embeddings)
        super().__init__(
            name=name,
            dim=int(model.config.projection_dim),
            preprocess=preprocess_from_processor(processor),
            identity=identity,
            device=device,
        )

    def _library_pixels(self, images: list[Image.Image]) -> torch.Tensor:
        return self.processor(images=images, return_tensors="pt")["pixel_values"]

    def _image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return _features(self.model.get_image_features(pixel_values=pixels))

    def _text_features(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self.max_tokens,
            return_tensors="pt",
        ).to(self.device)
        return _features(
            self.model.get_text_features(
                input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
            )
        )


def _features(output: Any) -> torch.Tensor:
    """transformers 5 returns a model output whose ``pooler_output`` is the projection."""
    return output.pooler_output


def build_clip(weights: str | os.PathLike | None, device: str | torch.device = "cpu"):
    """The HF-format CLIP model in the local folder ``weights`` (nothing is downloaded)."""
    from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

    folder = check_clip_folder(weights)
    model = CLIPModel.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
    processor = CLIPImageProcessor.from_pretrained(folder, local_files_only=True)
    tokenizer = CLIPTokenizer.from_pretrained(folder, local_files_only=True)
    return HFClipEncoder(
        model, processor, tokenizer, name=f"hf-clip({folder.resolve().name})", device=device
    )
