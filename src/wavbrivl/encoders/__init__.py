"""Frozen image encoders: BriVL (faithful to the released BriVL-1.0) and a tiny test twin.

Typical use::

    from wavbrivl.encoders import build_encoder
    enc = build_encoder("brivl", weights="BriVL-1.0-5500w.pth", box_mode="whole", device="cuda")
    emb = enc.encode_images(pil_images)  # (B, 2048) float32, unit norm
"""

from wavbrivl.checkpoints import CheckpointError, CheckpointMismatchError, UntrustedCheckpointError
from wavbrivl.encoders.boxes import BOX_MODES, BoxSet, grid_boxes, whole_image_boxes
from wavbrivl.encoders.brivl import BRIVL_1_0, TINY_BRIVL, BriVLImageConfig, BriVLImageEncoder
from wavbrivl.encoders.checkpoint import load_brivl_image_state, load_brivl_image_weights
from wavbrivl.encoders.preprocess import BriVLPreprocess, brivl_train_augment, view_seed
from wavbrivl.encoders.registry import (
    ENCODERS,
    BriVLEncoder,
    ImageEncoder,
    build_brivl,
    build_encoder,
    build_tiny,
)

__all__ = [
    "BOX_MODES",
    "BRIVL_1_0",
    "ENCODERS",
    "TINY_BRIVL",
    "BoxSet",
    "BriVLEncoder",
    "BriVLImageConfig",
    "BriVLImageEncoder",
    "BriVLPreprocess",
    "CheckpointError",
    "CheckpointMismatchError",
    "ImageEncoder",
    "UntrustedCheckpointError",
    "brivl_train_augment",
    "build_brivl",
    "build_encoder",
    "build_tiny",
    "grid_boxes",
    "load_brivl_image_state",
    "load_brivl_image_weights",
    "view_seed",
    "whole_image_boxes",
]
