"""Random augmented cutouts of the generated image: what the frozen encoder sees each step.

The VQGAN-CLIP loop never shows the encoder the whole image alone: it embeds many random
square crops, so the image must match the target at every scale and position, which keeps
the optimisation from fitting a single adversarial view. A crop's side is
``min + u ** cut_pow * (max - min)`` with ``u ~ U(0, 1)`` (``cut_pow > 1`` favours small
crops), its offset uniform; it is resized to the encoder's input size, then flipped with
probability 1/2 and given additive pixel noise of a random strength.

Randomness comes from one :class:`CutoutRng` per clip, never from the global RNG, so a clip
gets the same cutouts whether it is optimised alone or in a batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F


class CutoutRng:
    """A clip's random streams: crop geometry on the CPU, pixel noise on the image's device.

    Geometry is drawn on the CPU so sizes and offsets are the same on every device; noise is
    drawn where the pixels live so a large image does not cross the bus each step.
    """

    def __init__(self, seed: int, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.geometry = torch.Generator().manual_seed(seed)
        self.noise = torch.Generator(device=self.device).manual_seed(seed)


@dataclass(frozen=True)
class CutoutSettings:
    """How cutouts are drawn (see the module docstring)."""

    n: int = 32  # cutouts per image per step
    cut_pow: float = 1.0  # exponent on the uniform draw of the crop size
    min_size: int | None = None  # smallest crop side (px); None: min(encoder size, image side)
    flip: bool = True  # horizontal flip with probability 1/2
    noise: float = 0.1  # additive Gaussian noise, std ~ U(0, noise) per cutout

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"cutouts must be >= 1, got {self.n}")
        if self.cut_pow <= 0:
            raise ValueError(f"cut_pow must be > 0, got {self.cut_pow}")
        if self.min_size is not None and self.min_size < 1:
            raise ValueError(f"min_cut_size must be >= 1 or None, got {self.min_size}")
        if self.noise < 0:
            raise ValueError(f"cut_noise must be >= 0, got {self.noise}")


def crop_boxes(
    height: int, width: int, out_size: int, settings: CutoutSettings, rng: CutoutRng
) -> list[tuple[int, int, int]]:
    """``settings.n`` square crops ``(top, left, side)`` inside a ``height`` x ``width`` image."""
    max_size = min(height, width)
    min_size = min(settings.min_size or out_size, max_size)
    gen = rng.geometry
    boxes = []
    for _ in range(settings.n):
        u = float(torch.rand((), generator=gen))
        side = int(min_size + u**settings.cut_pow * (max_size - min_size))
        top = int(torch.randint(0, height - side + 1, (), generator=gen))
        left = int(torch.randint(0, width - side + 1, (), generator=gen))
        boxes.append((top, left, side))
    return boxes


def make_cutouts(
    images: torch.Tensor,
    out_size: int,
    settings: CutoutSettings,
    rngs: Sequence[CutoutRng],
) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] -> (B * n, 3, out_size, out_size), image-major; differentiable.

    Row ``b * n + i`` is cutout ``i`` of image ``b``; ``rngs[b]`` draws image ``b``'s cutouts.
    """
    b, _, height, width = images.shape
    if len(rngs) != b:
        raise ValueError(f"{len(rngs)} cutout RNGs for {b} images")
    cuts = []
    for image, rng in zip(images, rngs, strict=True):
        for top, left, side in crop_boxes(height, width, out_size, settings, rng):
            crop = image[None, :, top : top + side, left : left + side]  # (1, 3, s, s)
            # Antialiased: a large crop shrunk to the encoder size must not alias.
            cuts.append(
                F.interpolate(crop, size=(out_size, out_size), mode="bilinear", antialias=True)
            )
    out = torch.cat(cuts)  # (B * n, 3, S, S)
    return _augment(out, settings, rngs)


def _augment(
    cuts: torch.Tensor, settings: CutoutSettings, rngs: Sequence[CutoutRng]
) -> torch.Tensor:
    """Flips and pixel noise, drawn per image from its own RNG: (B * n, 3, S, S) -> same."""
    n = settings.n
    parts = []
    for k, rng in enumerate(rngs):
        part = cuts[k * n : (k + 1) * n]  # (n, 3, S, S)
        if settings.flip:
            flip = torch.rand(n, generator=rng.geometry) < 0.5  # (n,)
            flipped = part.flip(-1)
            part = torch.where(flip.to(part.device)[:, None, None, None], flipped, part)
        if settings.noise > 0:
            std = torch.rand(n, generator=rng.geometry) * settings.noise  # (n,)
            noise = torch.randn(
                part.shape, generator=rng.noise, device=rng.device, dtype=part.dtype
            )
            part = part + std.to(part.device, part.dtype)[:, None, None, None] * noise
        parts.append(part)
    return torch.cat(parts)


__all__ = ["CutoutRng", "CutoutSettings", "crop_boxes", "make_cutouts"]
