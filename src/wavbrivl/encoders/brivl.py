"""The BriVL image encoder (released BriVL-1.0), written to match the public model exactly.

Pipeline for a batch of B images, each with up to N boxes (pixel coordinates of the resized
``img_size`` x ``img_size`` input):

    backbone.forward_features        (B, 3, S, S)        -> (B, C, h, w)
    RoI grid sampling per box        (B, C, h, w), boxes -> (B*N, C, g, g)
    1x1 conv + g x g average pool    (B*N, C, g, g)      -> (B, N, C)     ["max_pool"]
    L2 norm per region               (B, N, C)
    transformer encoder, pad masked  (B, N, C)           -> (B, N, C)     ["imgAtt"]
    masked mean over valid regions   (B, N, C)           -> (B, C)
    Linear-ReLU-Linear               (B, C)              -> (B, D)        ["imgFC"]
    L2 norm                          (B, D)

Parameter names equal the public ``ImgLearnableEncoder`` (``backbone.*``,
``learnable.imgFC.*``, ``learnable.imgAtt.*``, ``learnable.max_pool.0.*``) so the official
checkpoint's ``imgencoder.*`` entries load strictly. Two public quirks are kept on purpose
because the released weights were trained with them: the box -> sampling-grid mapping
normalises by ``size - 1`` while sampling uses ``align_corners=False``, and the "max_pool"
module is an average pool.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch import nn

from wavbrivl.configs import from_mapping
from wavbrivl.nn_blocks import MLP


@dataclass(frozen=True)
class BriVLImageConfig:
    """Architecture of the BriVL image encoder; defaults are the released BriVL-1.0 (B5)."""

    # timm architecture; the public config names "tf_efficientnet_b5_ns", which is the same
    # network (the suffix only picks pretrained weights, and ours come from the checkpoint).
    backbone: str = "tf_efficientnet_b5"
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)  # extra timm kwargs
    img_size: int = 456  # input side; boxes are in these pixel coordinates
    roi_grid: int = 4  # g: samples per box side (GRID_SIZE)
    feature_dim: int = 2048  # C: backbone channels = transformer width (IMG_FEATURE_DIM)
    n_layers: int = 4  # IMG_TRANSFORMER_LAYER
    n_heads: int = 4  # IMG_TRANSFORMER_HEAD
    ff_dim: int = 2048  # transformer feed-forward width (torch default in the public code)
    dropout: float = 0.1  # torch default in the public code; inactive in eval mode
    max_boxes: int = 37  # MAX_IMG_LEN: 36 detector/grid boxes + the whole image
    out_dim: int = 2048  # D: embedding size (imgFC hidden and output width)

    def to_dict(self) -> dict[str, Any]:
        """Plain types only, for JSON fingerprints and weights-only checkpoints."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> BriVLImageConfig:
        return from_mapping(cls, values, "BriVLImageConfig")


#: The released BriVL-1.0 image encoder (checkpoint BriVL-1.0-5500w.pth).
BRIVL_1_0 = BriVLImageConfig()

#: The same architecture at toy size for tests and the demo (untrained; ~0.5 M parameters).
#: timm's ``test_efficientnet`` at half width gives 128 channels on a 4 x 4 map at 128 px.
TINY_BRIVL = BriVLImageConfig(
    backbone="test_efficientnet",
    backbone_kwargs={"channel_multiplier": 0.5},
    img_size=128,
    feature_dim=128,
    n_layers=2,
    ff_dim=256,
    out_dim=128,
)


def boxes_to_theta(boxes: torch.Tensor, img_size: int, height: int, width: int) -> torch.Tensor:
    """Affine matrices mapping a sampling grid onto each box, BriVL's convention.

    boxes: (M, 4) ``[x1, y1, x2, y2]`` in input pixels -> theta (M, 2, 3) for ``affine_grid``.
    Pixels are mapped to the feature map by one stride, ``img_size / height``, on both axes
    (inputs are square), and normalised by ``size - 1``.
    """
    stride = img_size / height
    x1, y1, x2, y2 = (boxes / stride).unbind(-1)  # feature-map coordinates
    zeros = torch.zeros_like(x1)
    # No rotation: scale = half the box extent, shift = box centre, both in [-1, 1] units.
    row_x = torch.stack([(x2 - x1) / (width - 1), zeros, (x1 + x2 - width + 1) / (width - 1)], -1)
    row_y = torch.stack(
        [zeros, (y2 - y1) / (height - 1), (y1 + y2 - height + 1) / (height - 1)], -1
    )
    return torch.stack([row_x, row_y], dim=-2).float()


def roi_grid_sample(
    feature_map: torch.Tensor, boxes: torch.Tensor, img_size: int, grid: int
) -> torch.Tensor:
    """Bilinearly sample a ``grid`` x ``grid`` patch of features inside every box.

    feature_map: (B, C, h, w); boxes: (B, N, 4) in input pixels -> (B, N, C, grid, grid).
    Points outside the map read zeros (``grid_sample`` defaults, as in the public code).
    """
    b, c, h, w = feature_map.shape
    n = boxes.shape[1]
    theta = boxes_to_theta(boxes.detach().reshape(b * n, 4), img_size, h, w)  # (B*N, 2, 3)
    points = F.affine_grid(theta, [b * n, c, grid, grid], align_corners=False)  # (B*N, g, g, 2)
    # Stack each image's boxes into one tall "image" of sample points so the feature map is
    # sampled in place instead of being copied once per box.
    points = points.reshape(b, n * grid, grid, 2)
    patches = F.grid_sample(feature_map, points.to(feature_map.dtype), align_corners=False)
    # (B, C, N*g, g) -> (B, N, C, g, g)
    return patches.reshape(b, c, n, grid, grid).permute(0, 2, 1, 3, 4)


class BriVLImageEncoder(nn.Module):
    """BriVL image tower: images + boxes -> unit-norm embeddings (B, out_dim).

    ``frozen=True`` (the default) sets ``requires_grad=False`` on every parameter and pins the
    module in eval mode (``.train()`` on a parent model does not switch BatchNorm or dropout
    back on). Gradients still flow to the *input* images, as guided generation needs.
    """

    def __init__(self, cfg: BriVLImageConfig = BRIVL_1_0, frozen: bool = True) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = timm.create_model(cfg.backbone, pretrained=False, **cfg.backbone_kwargs)
        if self.backbone.num_features != cfg.feature_dim:
            raise ValueError(
                f"backbone {cfg.backbone!r} gives {self.backbone.num_features} channels but "
                f"feature_dim is {cfg.feature_dim}; they must be equal"
            )
        c = cfg.feature_dim
        layer = nn.TransformerEncoderLayer(
            d_model=c,
            nhead=cfg.n_heads,
            dim_feedforward=cfg.ff_dim,
            dropout=cfg.dropout,
            batch_first=True,  # (B, N, C); parameter names do not depend on the layout
        )
        # Insertion order = the public module's, so state_dict() lists keys in the same order.
        self.learnable = nn.ModuleDict(
            {
                "imgFC": MLP(c, cfg.out_dim, cfg.out_dim),  # the public ``FakeTransformer``
                "imgAtt": nn.TransformerEncoder(
                    layer, num_layers=cfg.n_layers, enable_nested_tensor=False
                ),
                # Named max_pool in the checkpoint, but it averages: g x g -> 1 x 1.
                "max_pool": nn.Sequential(
                    nn.Conv2d(c, c, kernel_size=1), nn.AvgPool2d(cfg.roi_grid, stride=1)
                ),
            }
        )
        self.frozen = False
        if frozen:
            self.freeze()

    def freeze(self) -> BriVLImageEncoder:
        """No parameter gradients, and eval mode that survives a parent's ``.train()``."""
        self.requires_grad_(False)
        self.frozen = True
        return self.train(False)

    def train(self, mode: bool = True) -> BriVLImageEncoder:
        # A frozen encoder must not update BatchNorm statistics or apply dropout.
        return super().train(mode and not self.frozen)

    def pool_regions(self, feature_map: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w), (B, N, 4) -> one feature per box (B, N, C)."""
        b, n = boxes.shape[:2]
        patches = roi_grid_sample(feature_map, boxes, self.cfg.img_size, self.cfg.roi_grid)
        patches = patches.reshape(b * n, *patches.shape[2:])  # (B*N, C, g, g)
        pooled = self.learnable["max_pool"](patches)  # (B*N, C, 1, 1)
        return pooled.reshape(b, n, -1)

    def encode_image(
        self, images: torch.Tensor, boxes: torch.Tensor, n_boxes: torch.Tensor
    ) -> torch.Tensor:
        """Embed normalised images.

        images: (B, 3, S, S) ImageNet-normalised, S = cfg.img_size; boxes: (B, N, 4)
        ``[x1, y1, x2, y2]`` in pixels of S, the first ``n_boxes[b]`` rows valid (N may be
        anything up to max_boxes; padding rows are ignored); n_boxes: (B,) integers >= 1.
        Returns (B, out_dim) unit vectors.
        """
        self._check_inputs(images, boxes, n_boxes)
        n_boxes = n_boxes.to(boxes.device)
        # Padding boxes never influence valid ones (masked keys, excluded from the mean), so
        # drop the columns no image uses: same result, less work in "whole" mode.
        boxes = boxes[:, : int(n_boxes.max())]
        padding = torch.arange(boxes.shape[1], device=boxes.device)[None] >= n_boxes[:, None]

        feature_map = self.backbone.forward_features(images)  # (B, C, h, w)
        regions = F.normalize(self.pool_regions(feature_map, boxes), dim=-1)  # (B, N, C)
        regions = self.learnable["imgAtt"](regions, src_key_padding_mask=padding)  # (B, N, C)
        keep = (~padding).to(regions.dtype).unsqueeze(-1)  # (B, N, 1)
        pooled = (regions * keep).sum(dim=1) / keep.sum(dim=1)  # (B, C)
        return F.normalize(self.learnable["imgFC"](pooled), dim=-1)  # (B, D)

    forward = encode_image

    def _check_inputs(self, images: torch.Tensor, boxes: torch.Tensor, n_boxes: torch.Tensor):
        s = self.cfg.img_size
        if images.dim() != 4 or images.shape[1:] != (3, s, s):
            raise ValueError(f"images must be (B, 3, {s}, {s}), got {tuple(images.shape)}")
        b = images.shape[0]
        if boxes.dim() != 3 or boxes.shape[0] != b or boxes.shape[2] != 4:
            raise ValueError(f"boxes must be ({b}, N, 4), got {tuple(boxes.shape)}")
        if not 1 <= boxes.shape[1] <= self.cfg.max_boxes:
            raise ValueError(f"N={boxes.shape[1]} boxes per image; allowed 1..{self.cfg.max_boxes}")
        if n_boxes.shape != (b,) or n_boxes.is_floating_point():
            raise ValueError(
                f"n_boxes must be ({b},) integers, got {n_boxes.dtype} {tuple(n_boxes.shape)}"
            )
        if bool((n_boxes < 1).any()) or bool((n_boxes > boxes.shape[1]).any()):
            raise ValueError(f"n_boxes must be in 1..{boxes.shape[1]}, got {n_boxes.tolist()}")
