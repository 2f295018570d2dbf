"""BriVL image preprocessing and its training-time colour augmentation.

The public transforms are ``ToTensor -> Resize((S, S)) -> Normalize(ImageNet)`` with the
resize applied to the *tensor*. Under the torchvision of the release (0.9) a tensor resize is
plain bilinear interpolation (``align_corners=False``) without antialiasing; newer torchvision
antialiases by default, so we call ``F.interpolate`` ourselves to keep the old behaviour.
Aspect ratio is not kept. Training adds, between resize and normalise,
``RandomApply([ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8)`` and ``RandomGrayscale(p=0.2)``;
here the random draws come from a seed so a (clip, view) pair always gets the same view.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image

from wavbrivl.hashing import seeded_int

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# BriVL's training augmentation (xybDataset.visual_transforms_box, is_train=True).
JITTER_P = 0.8
JITTER_STRENGTH = (0.4, 0.4, 0.4, 0.1)  # brightness, contrast, saturation, hue
GRAYSCALE_P = 0.2

ImageLike = Image.Image | np.ndarray


@dataclass(frozen=True)
class ColorAugmentParams:
    """One draw of BriVL's colour augmentation."""

    jitter: bool  # RandomApply fired (p=0.8)
    order: tuple[int, ...]  # application order of (brightness, contrast, saturation, hue)
    brightness: float
    contrast: float
    saturation: float
    hue: float
    grayscale: bool  # RandomGrayscale fired (p=0.2)


def sample_augment_params(seed: int) -> ColorAugmentParams:
    """Draw the augmentation from its own generator: same seed, same parameters, no global RNG."""
    gen = torch.Generator().manual_seed(seed)

    def uniform(low: float, high: float) -> float:
        return float(torch.empty(1).uniform_(low, high, generator=gen))

    b, c, s, h = JITTER_STRENGTH
    return ColorAugmentParams(
        jitter=float(torch.rand(1, generator=gen)) < JITTER_P,
        order=tuple(torch.randperm(4, generator=gen).tolist()),
        brightness=uniform(1 - b, 1 + b),
        contrast=uniform(1 - c, 1 + c),
        saturation=uniform(1 - s, 1 + s),
        hue=uniform(-h, h),
        grayscale=float(torch.rand(1, generator=gen)) < GRAYSCALE_P,
    )


def apply_color_augment(image: torch.Tensor, params: ColorAugmentParams) -> torch.Tensor:
    """(..., 3, H, W) RGB in [0, 1] -> same shape, jittered and/or greyed as ``params`` say."""
    if params.jitter:
        steps = (
            partial(TF.adjust_brightness, brightness_factor=params.brightness),
            partial(TF.adjust_contrast, contrast_factor=params.contrast),
            partial(TF.adjust_saturation, saturation_factor=params.saturation),
            partial(TF.adjust_hue, hue_factor=params.hue),
        )
        for i in params.order:
            image = steps[i](image)
    if params.grayscale:
        image = TF.rgb_to_grayscale(image, num_output_channels=3)
    return image


def brivl_train_augment(seed: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """BriVL's training colour augmentation with parameters fixed by ``seed``.

    Returns a function of a (..., 3, H, W) tensor in [0, 1]. Derive the seed with
    :func:`view_seed` so each (clip, view) is reproducible.
    """
    return partial(apply_color_augment, params=sample_augment_params(seed))


def view_seed(clip_id: str, view: int, base_seed: int = 0) -> int:
    """A stable 63-bit seed for one augmented view of one clip (independent of hash salt)."""
    return seeded_int("view", base_seed, clip_id, view, bits=63)


def image_to_tensor(image: ImageLike) -> torch.Tensor:
    """PIL image (any mode) or uint8 (H, W, 3) array -> (3, H, W) float32 in [0, 1]."""
    if isinstance(image, Image.Image):
        array = np.asarray(image.convert("RGB"))
    elif isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(
                f"numpy images must be uint8 (H, W, 3) RGB, got {image.dtype} {image.shape}"
            )
        array = image
    else:
        raise TypeError(f"expected a PIL image or a numpy array, got {type(image).__name__}")
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div(255.0)


@dataclass(frozen=True)
class BriVLPreprocess:
    """Resize (no aspect ratio kept) and normalise, exactly as BriVL's released transforms."""

    img_size: int = 456
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"
    antialias: bool = False  # torchvision 0.9 did not antialias tensor resizes

    def settings(self) -> dict:
        """Everything that changes the pixels the model sees (for cache fingerprints)."""
        return {
            "img_size": self.img_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
            "antialias": self.antialias,
            "align_corners": False,
            "keep_aspect": False,
        }

    def resize(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 3, S, S); differentiable."""
        return F.interpolate(
            images,
            size=(self.img_size, self.img_size),
            mode=self.interpolation,
            align_corners=False,
            antialias=self.antialias,
        )

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) in [0, 1] -> ImageNet-normalised."""
        mean = torch.tensor(self.mean, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
        return (images - mean) / std

    def from_tensor(
        self, images: torch.Tensor, aug_seeds: Sequence[int] | None = None
    ) -> torch.Tensor:
        """(B, 3, H, W) RGB in [0, 1] -> (B, 3, S, S) model input; keeps the autograd graph.

        ``aug_seeds`` (one per image) adds BriVL's training colour augmentation after the
        resize, as the public training transform does.
        """
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
        return self._augment_and_normalize(self.resize(images), aug_seeds)

    def batch(
        self, images: Sequence[ImageLike], aug_seeds: Sequence[int] | None = None
    ) -> torch.Tensor:
        """PIL images / uint8 arrays of any sizes -> (B, 3, S, S) model input."""
        if len(images) == 0:
            raise ValueError("no images to preprocess")
        # Resize one by one (sizes differ), then batch: (B, 3, S, S).
        resized = torch.cat([self.resize(image_to_tensor(img).unsqueeze(0)) for img in images])
        return self._augment_and_normalize(resized, aug_seeds)

    def _augment_and_normalize(
        self, resized: torch.Tensor, aug_seeds: Sequence[int] | None
    ) -> torch.Tensor:
        if aug_seeds is not None:
            if len(aug_seeds) != resized.shape[0]:
                raise ValueError(f"{len(aug_seeds)} aug_seeds for {resized.shape[0]} images")
            resized = torch.stack(
                [brivl_train_augment(s)(img) for s, img in zip(aug_seeds, resized, strict=True)]
            )
        return self.normalize(resized)

    def __call__(self, image: ImageLike, aug_seed: int | None = None) -> torch.Tensor:
        """One image -> (3, S, S)."""
        seeds = None if aug_seed is None else [aug_seed]
        return self.batch([image], seeds)[0]
