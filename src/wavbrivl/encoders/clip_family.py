"""What the CLIP-family encoders share: differentiable preprocessing, the encoder interface, and
one-line errors for weights that are not on this machine.

A CLIP-family encoder (:mod:`wavbrivl.encoders.clip` for HF-format CLIP,
:mod:`wavbrivl.encoders.open_clip` for OpenCLIP checkpoints) embeds images two ways:

- PIL images / uint8 arrays go through the **library's own** preprocessing (the HF image
  processor saved with the model, OpenCLIP's validation transform), so cached embeddings are
  exactly what the library would give;
- a (B, 3, H, W) tensor of RGB in [0, 1] goes through :class:`ClipPreprocess`, the same
  resize / centre crop / normalise written with differentiable torch ops, so guided generation
  can optimise pixels through it. It equals the library's pixels up to resampling differences
  (the libraries round to uint8 or resample with PIL).

Augmented views (``aug_seeds``) get BriVL's training colour augmentation after the resize and
crop, before normalisation, as the BriVL encoder does (docs/stages.md, "Frozen image spaces").
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from wavbrivl.encoders.preprocess import ImageLike, brivl_train_augment
from wavbrivl.weights_check import hub_advice

Images = Sequence[ImageLike] | torch.Tensor

#: Resize modes: ``shortest`` scales the short side to ``size`` (aspect kept, the long side
#: truncated to an integer as torchvision and transformers do); ``squash`` resizes to
#: ``size`` x ``size`` whatever the aspect.
RESIZE_MODES = ("shortest", "squash")
#: Centre-crop offsets: transformers floors ``(H - h) / 2``, torchvision rounds it.
CROP_OFFSETS = ("floor", "round")

#: Config entries that say where or with which library version a model was saved, not what it
#: computes; left out of fingerprints so a moved folder keeps its cache.
VOLATILE_KEYS = frozenset(
    {
        "_name_or_path",
        "transformers_version",
        "_commit_hash",
        "_attn_implementation_autoset",
        "_attn_implementation_internal",
        "attn_implementation",
    }
)


class LocalWeightsError(FileNotFoundError):
    """A model's files are not where the config says (or a hub name was given): one line."""


def hub_name_error(key: str, name: str) -> LocalWeightsError:
    """The refusal of a hub name: nothing is downloaded here, where to put the files instead."""
    return LocalWeightsError(f"{key}: {name}: {hub_advice(name)} (weights/README.md)")


def without_volatile(value: Any) -> Any:
    """A JSON-like config with :data:`VOLATILE_KEYS` removed at every depth."""
    if isinstance(value, dict):
        return {k: without_volatile(v) for k, v in value.items() if k not in VOLATILE_KEYS}
    if isinstance(value, list | tuple):
        return [without_volatile(v) for v in value]
    return value


def identity_json(identity: dict[str, Any]) -> str:
    """An identity dict as sorted-key JSON (non-JSON values by their ``str``)."""
    return json.dumps(identity, sort_keys=True, default=str)


def fingerprint_of(identity: dict[str, Any]) -> str:
    """SHA-256 of :func:`identity_json`."""
    return hashlib.sha256(identity_json(identity).encode()).hexdigest()


def as_rgb_image(image: ImageLike) -> Image.Image:
    """A PIL image (any mode) or uint8 (H, W, 3) array -> an RGB PIL image."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(
                f"numpy images must be uint8 (H, W, 3) RGB, got {image.dtype} {image.shape}"
            )
        return Image.fromarray(image)  # uint8 (H, W, 3): RGB
    raise TypeError(f"expected a PIL image or a numpy array, got {type(image).__name__}")


@dataclass(frozen=True)
class ClipPreprocess:
    """Resize, centre crop, normalise: a CLIP-family model's preprocessing on tensors."""

    size: int  # shortest: the short side after resizing; squash: both sides
    crop: int  # side of the square centre crop = the model's input side
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize_mode: str = "shortest"
    interpolation: str = "bicubic"
    crop_offset: str = "floor"

    def __post_init__(self) -> None:
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize mode {self.resize_mode!r}; supported: {RESIZE_MODES}")
        if self.crop_offset not in CROP_OFFSETS:
            raise ValueError(f"crop offset {self.crop_offset!r}; supported: {CROP_OFFSETS}")
        if self.crop > self.size:
            raise ValueError(f"crop {self.crop} is larger than the resized side {self.size}")

    @property
    def img_size(self) -> int:
        """The side of the model's (square) input."""
        return self.crop

    def settings(self) -> dict[str, Any]:
        """Everything that changes the pixels the model sees (for fingerprints)."""
        return {
            "size": self.size,
            "crop": self.crop,
            "mean": list(self.mean),
            "std": list(self.std),
            "resize_mode": self.resize_mode,
            "interpolation": self.interpolation,
            "crop_offset": self.crop_offset,
        }

    def resized_shape(self, height: int, width: int) -> tuple[int, int]:
        """(H, W) after the resize."""
        if self.resize_mode == "squash":
            return self.size, self.size
        if height <= width:
            return self.size, int(self.size * width / height)
        return int(self.size * height / width), self.size

    def crop_start(self, length: int) -> int:
        """First row (column) of the centre crop of a side of ``length``."""
        offset = (length - self.crop) / 2
        return int(offset) if self.crop_offset == "floor" else round(offset)

    def from_tensor(
        self, images: torch.Tensor, aug_seeds: Sequence[int] | None = None
    ) -> torch.Tensor:
        """(B, 3, H, W) RGB in [0, 1] -> (B, 3, S, S) model input; keeps the autograd graph."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
        h, w = self.resized_shape(images.shape[2], images.shape[3])
        resized = F.interpolate(
            images, size=(h, w), mode=self.interpolation, align_corners=False, antialias=True
        )
        # Bicubic overshoots; the libraries clip to the pixel range (uint8 or PIL), so do we.
        resized = resized.clamp(0.0, 1.0)
        top, left = self.crop_start(h), self.crop_start(w)
        cropped = resized[:, :, top : top + self.crop, left : left + self.crop]
        return self.normalize(augment(cropped, aug_seeds))

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) in [0, 1] -> normalised with the model's mean and std."""
        mean, std = self._stats(images)
        return (images - mean) / std

    def denormalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`normalize`."""
        mean, std = self._stats(pixels)
        return pixels * std + mean

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std as (3, 1, 1), in ``like``'s dtype and on its device."""
        mean = torch.tensor(self.mean, dtype=like.dtype, device=like.device)
        std = torch.tensor(self.std, dtype=like.dtype, device=like.device)
        return mean[:, None, None], std[:, None, None]


def augment(images: torch.Tensor, aug_seeds: Sequence[int] | None) -> torch.Tensor:
    """(B, 3, S, S) in [0, 1] -> BriVL's colour augmentation per image (seeded), or unchanged."""
    if aug_seeds is None:
        return images
    if len(aug_seeds) != images.shape[0]:
        raise ValueError(f"{len(aug_seeds)} aug_seeds for {images.shape[0]} images")
    return torch.stack(
        [brivl_train_augment(s)(img) for s, img in zip(aug_seeds, images, strict=True)]
    )


class ClipFamilyEncoder:
    """The :class:`~wavbrivl.encoders.registry.ImageEncoder` interface plus ``encode_text``.

    Subclasses set ``model`` and implement ``_library_pixels`` (the library's preprocessing of
    PIL images), ``_image_features`` (normalised pixels -> (B, D)) and ``_text_features``.
    """

    family = "clip-family"
    model: torch.nn.Module

    def __init__(
        self,
        *,
        name: str,
        dim: int,
        preprocess: ClipPreprocess,
        identity: dict[str, Any],
        device: str | torch.device,
    ) -> None:
        self.name = name
        self.dim = dim
        self.preprocess = preprocess
        self.device = torch.device(device)
        self._identity = {"family": self.family, **identity, "tensor_path": preprocess.settings()}
        self.fingerprint = fingerprint_of(self._identity)

    def encode_images(self, images: Images, aug_seeds: Sequence[int] | None = None) -> torch.Tensor:
        """Embed images -> (B, D) float32 unit vectors on ``self.device``.

        A list of PIL images / uint8 (H, W, 3) arrays goes through the library's own
        preprocessing, without gradients; a (B, 3, H, W) float tensor of RGB in [0, 1] through
        :class:`ClipPreprocess`, keeping the autograd graph. ``aug_seeds`` (one per image)
        applies BriVL's training colour augmentation after the resize and crop.
        """
        if isinstance(images, torch.Tensor):
            pixels = self.preprocess.from_tensor(images.to(self.device), aug_seeds)
            return self._unit(self._image_features(pixels))
        if len(images) == 0:
            raise ValueError("no images to embed")
        with torch.no_grad():
            pixels = self._library_pixels([as_rgb_image(img) for img in images])
            if aug_seeds is not None:
                plain = augment(self.preprocess.denormalize(pixels), aug_seeds)
                pixels = self.preprocess.normalize(plain)
            return self._unit(self._image_features(pixels.to(self.device)))

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Embed prompts into the same space -> (N, D) float32 unit vectors."""
        if isinstance(texts, str) or len(texts) == 0:
            raise ValueError("encode_text takes a non-empty list of strings")
        with torch.no_grad():
            return self._unit(self._text_features(list(texts)))

    @staticmethod
    def _unit(features: torch.Tensor) -> torch.Tensor:
        return F.normalize(features.float(), dim=-1)

    def _library_pixels(self, images: list[Image.Image]) -> torch.Tensor:
        raise NotImplementedError

    def _image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _text_features(self, texts: list[str]) -> torch.Tensor:
        raise NotImplementedError

    def metadata(self) -> dict[str, str]:
        """String facts for embedding files (``wavbrivl.embed.store`` prefixes the keys)."""
        return {
            "encoder": self.name,
            "fingerprint": self.fingerprint,
            "dim": str(self.dim),
            "image_size": str(self.preprocess.img_size),
            "box_mode": "none",
            "preprocessing": json.dumps(self.preprocess.settings(), sort_keys=True),
            "identity": identity_json(self._identity),  # what the fingerprint hashes
        }


def freeze(model: torch.nn.Module) -> torch.nn.Module:
    """No parameter gradients, eval mode (gradients still reach the input pixels)."""
    model.requires_grad_(False)
    return model.eval()
