"""Region boxes for the BriVL image encoder when no object detector is run.

BriVL always pools image features over boxes (in pixel coordinates of the resized
``img_size`` x ``img_size`` input) and masks the padding. Without detector boxes the public
code builds one of two layouts, reproduced here:

* ``whole``: only the whole-image box ``[0, 0, S, S]``, then zero boxes up to ``max_boxes``
  (one valid box). This is what the WavBriVL authors' BriVL scripts feed.
* ``grid``: a ``grid`` x ``grid`` tiling (outer loop over x, inner loop over y, as in the
  released feature-extraction example), then the whole-image box (``grid**2 + 1`` valid boxes).

Box order does not change the embedding (no positional encoding, masked mean), but we keep
the public order anyway so that intermediate tensors can be compared one to one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch


class BoxSet(NamedTuple):
    """Boxes of one image: ``boxes`` (max_boxes, 4) float32 ``[x1, y1, x2, y2]``, first
    ``n_valid`` rows real, the rest zero padding."""

    boxes: torch.Tensor
    n_valid: int


def _padded(valid: list[list[float]], max_boxes: int) -> BoxSet:
    if not 1 <= len(valid) <= max_boxes:
        raise ValueError(f"{len(valid)} boxes do not fit in max_boxes={max_boxes}")
    boxes = torch.zeros(max_boxes, 4, dtype=torch.float32)
    boxes[: len(valid)] = torch.tensor(valid, dtype=torch.float64).float()
    return BoxSet(boxes, len(valid))


def whole_image_boxes(img_size: int, max_boxes: int = 37) -> BoxSet:
    """The whole-image box followed by zero boxes: ``n_valid == 1``."""
    return _padded([[0.0, 0.0, float(img_size), float(img_size)]], max_boxes)


def grid_boxes(img_size: int, max_boxes: int = 37, grid: int = 6) -> BoxSet:
    """A ``grid`` x ``grid`` tiling plus the whole image: ``n_valid == grid**2 + 1``."""
    if grid < 1:
        raise ValueError(f"grid must be >= 1, got {grid}")
    cell = img_size / grid  # fractional cells when img_size is not a multiple of grid
    valid = [
        [ix * cell, iy * cell, (ix + 1) * cell, (iy + 1) * cell]
        for ix in range(grid)  # x outer, y inner: the public example's order
        for iy in range(grid)
    ]
    valid.append([0.0, 0.0, float(img_size), float(img_size)])
    return _padded(valid, max_boxes)


BoxMode = Callable[[int, int], BoxSet]

#: Box layouts by name: ``BOX_MODES[mode](img_size, max_boxes) -> BoxSet``.
BOX_MODES: dict[str, BoxMode] = {
    "whole": whole_image_boxes,
    "grid": grid_boxes,
}


def boxes_for_batch(
    mode: str, batch_size: int, img_size: int, max_boxes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same layout for every image: boxes (B, max_boxes, 4) and n_boxes (B,) int64."""
    try:
        make = BOX_MODES[mode]
    except KeyError:
        raise ValueError(f"unknown box mode {mode!r}; known: {sorted(BOX_MODES)}") from None
    one = make(img_size, max_boxes)
    boxes = one.boxes.unsqueeze(0).expand(batch_size, -1, -1).contiguous()
    n_boxes = torch.full((batch_size,), one.n_valid, dtype=torch.long)
    return boxes, n_boxes
