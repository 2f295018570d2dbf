"""OpenCLIP checkpoints as a frozen image space, with their text side, from local files only.

Two layouts, both read offline:

- a checkpoint **file** (``.pt``/``.bin``/``.safetensors``, e.g. ``open_clip_pytorch_model.bin``)
  with its architecture named by ``model_name``, one of ``open_clip.list_models()``
  (``ViT-B-32``, ``ViT-H-14``...): ``open_clip.create_model_and_transforms(model_name,
  pretrained=<file>)``;
- an OpenCLIP model **folder** (what an OpenCLIP hub repository holds: ``open_clip_config.json``
  + ``open_clip_model.safetensors`` or ``open_clip_pytorch_model.bin``), read through OpenCLIP's
  ``local-dir:`` schema; ``model_name`` stays unset.

Weights load strictly (``require_pretrained``, ``weights_only=True``). A pretrained *tag*
(``openai``, ``laion2b_s32b_b79k``), an ``hf-hub:`` name or a text tower / tokenizer that would
come from the Hugging Face hub is refused with one line: those are downloads, and nothing is
downloaded here (docs/stages.md, "Frozen image spaces").
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from wavbrivl.checkpoints import CheckpointMismatchError, state_dict_sha256, untrusted_error
from wavbrivl.encoders.clip_family import (
    ClipFamilyEncoder,
    ClipPreprocess,
    LocalWeightsError,
    freeze,
    hub_name_error,
)
from wavbrivl.weights_check import OPEN_CLIP_WEIGHTS, looks_like_hub_name

KEY = "embed.weights"
NAME_KEY = "embed.model_name"
WHAT = "the OpenCLIP checkpoint"
CONFIG_FILE = "open_clip_config.json"


def open_clip_source(
    weights: str | os.PathLike | None, model_name: str | None
) -> tuple[str, str | None, dict[str, Any]]:
    """``(model_name for OpenCLIP, pretrained file or None, model config)`` once the files are
    checked to be here; one-line :class:`LocalWeightsError` / ``ValueError`` otherwise."""
    import open_clip

    if model_name and model_name.startswith("hf-hub:"):
        raise hub_name_error(NAME_KEY, model_name.removeprefix("hf-hub:"))
    if weights is None:
        raise LocalWeightsError(
            f"{KEY} is not set: encoder `open_clip` needs a local checkpoint file (with "
            f"{NAME_KEY}) or an OpenCLIP model folder (weights/README.md)"
        )
    weights = os.fspath(weights)
    if weights.startswith("hf-hub:") or looks_like_hub_name(weights):
        raise hub_name_error(KEY, weights.removeprefix("hf-hub:"))
    if os.path.isdir(weights):
        if model_name:
            raise ValueError(
                f"{NAME_KEY}: {model_name!r} is set, but {KEY} is a folder, whose "
                f"{CONFIG_FILE} names the architecture; unset {NAME_KEY}"
            )
        folder = Path(weights)
        missing = [] if (folder / CONFIG_FILE).is_file() else [CONFIG_FILE]
        if not any((folder / name).is_file() for name in OPEN_CLIP_WEIGHTS):
            missing.append(" or ".join(OPEN_CLIP_WEIGHTS[:3]))
        if missing:
            raise LocalWeightsError(
                f"{KEY}: {weights}: not a complete OpenCLIP model folder, missing "
                f"{'; '.join(missing)} (weights/README.md)"
            )
        try:
            config = json.loads((folder / CONFIG_FILE).read_text())["model_cfg"]
        except (ValueError, KeyError, TypeError):
            raise ValueError(
                f"{KEY}: {folder / CONFIG_FILE}: not an OpenCLIP config (JSON with model_cfg)"
            ) from None
        return f"local-dir:{weights}", None, _offline_config(config, weights, folder)
    if not os.path.isfile(weights):
        raise LocalWeightsError(
            f"{KEY}: {weights}: no such file or folder; put {WHAT} there (a pretrained tag "
            "such as `openai` is not accepted: OpenCLIP would download it; weights/README.md)"
        )
    if not model_name:
        raise ValueError(
            f"{NAME_KEY} is not set: the checkpoint file {weights} needs its architecture "
            "name, one of open_clip.list_models() (e.g. ViT-B-32)"
        )
    config = open_clip.get_model_config(model_name)
    if config is None:
        raise ValueError(
            f"{NAME_KEY}: {model_name!r} is not an OpenCLIP architecture; known: "
            "open_clip.list_models() (e.g. ViT-B-32, ViT-H-14)"
        )
    return model_name, weights, _offline_config(config, model_name, None)


def _offline_config(config: dict[str, Any], source: str, folder: Path | None) -> dict[str, Any]:
    """The model config, once checked not to need the hub for its text tower or tokenizer."""
    text = config.get("text_cfg", {})
    for key in ("hf_tokenizer_name", "hf_model_name"):
        name = text.get(key)
        if not name or os.path.isdir(name):
            continue
        if key == "hf_tokenizer_name" and folder is not None:
            continue  # OpenCLIP reads the tokenizer from the folder itself
        raise ValueError(
            f"{source}: its text side needs {name!r} from the Hugging Face hub ({key}); "
            "nothing is downloaded here: use an OpenCLIP model folder that holds it"
        )
    return config


def preprocess_from_cfg(cfg: dict[str, Any]) -> ClipPreprocess:
    """The tensor-path twin of OpenCLIP's validation transform (``get_model_preprocess_cfg``)."""
    size = cfg["size"]
    side = size if isinstance(size, int) else size[0]
    if not isinstance(size, int) and len(set(size)) != 1:
        raise ValueError(f"a non-square OpenCLIP input ({size}) is not supported")
    mode = cfg.get("resize_mode") or "shortest"
    return ClipPreprocess(
        size=side,
        crop=side,
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
        resize_mode=mode,  # "longest" (pad) is refused by ClipPreprocess
        interpolation="bilinear" if cfg.get("interpolation") == "bilinear" else "bicubic",
        crop_offset="round",  # torchvision CenterCrop: round((H - h) / 2)
    )


class OpenClipEncoder(ClipFamilyEncoder):
    """A frozen OpenCLIP model with its validation transform and tokenizer."""

    family = "open_clip"

    def __init__(
        self,
        model: Any,
        transform: Any,
        tokenizer: Any,
        *,
        name: str,
        model_cfg: dict[str, Any],
        device: str | torch.device,
    ) -> None:
        import open_clip

        preprocess_cfg = open_clip.get_model_preprocess_cfg(model)
        identity = {
            "weights_sha256": state_dict_sha256(model.state_dict()),
            "config": model_cfg,
            "preprocess_cfg": preprocess_cfg,
            "transform": repr(transform),
        }
        self.model = freeze(model).to(device)
        self.transform = transform
        self.tokenizer = tokenizer
        super().__init__(
            name=name,
            dim=int(model_cfg["embed_dim"]),
            preprocess=preprocess_from_cfg(preprocess_cfg),
            identity=identity,
            device=device,
        )

    def _library_pixels(self, images: list[Image.Image]) -> torch.Tensor:
        return torch.stack([self.transform(image) for image in images])

    def _image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixels)

    def _text_features(self, texts: list[str]) -> torch.Tensor:
        return self.model.encode_text(self.tokenizer(texts).to(self.device))


def build_open_clip(
    weights: str | os.PathLike | None,
    model_name: str | None = None,
    device: str | torch.device = "cpu",
) -> OpenClipEncoder:
    """The OpenCLIP model from a local checkpoint file (+ ``model_name``) or model folder."""
    import open_clip

    name, pretrained, config = open_clip_source(weights, model_name)
    try:
        model, _, transform = open_clip.create_model_and_transforms(
            name, pretrained=pretrained, require_pretrained=True, weights_only=True
        )
    except pickle.UnpicklingError:  # weights_only refused a global: code, not weights
        raise untrusted_error(os.fspath(weights), []) from None
    except (RuntimeError, AssertionError, KeyError) as err:  # OpenCLIP's strict load failing
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CheckpointMismatchError(
            f"{KEY}: {os.fspath(weights)}: does not load into the OpenCLIP architecture "
            f"{name} ({first})"
        ) from None
    tokenizer = open_clip.get_tokenizer(name)
    label = Path(os.fspath(weights)).name
    shown = f"{model_name}, {label}" if pretrained else label
    return OpenClipEncoder(
        model, transform, tokenizer, name=f"open_clip({shown})", model_cfg=config, device=device
    )
