"""VQGAN (taming-transformers architecture) for guided image generation.

``load_vqgan(ckpt, yaml)`` reads an official ``vqgan_imagenet_f16_16384`` checkpoint without
the taming package; ``build_tiny_vqgan(seed)`` gives a toy random model for tests and the demo.
"""

from wavbrivl.vqgan.checkpoint import (
    CheckpointError,
    CheckpointMismatchError,
    UntrustedCheckpointError,
    build_tiny_vqgan,
    load_vqgan,
    read_taming_yaml,
    read_vqgan_state,
    vqgan_fingerprint,
)
from wavbrivl.vqgan.model import TINY_VQGAN, VQGAN, VQGAN_IMAGENET_F16_16384, VQGANConfig

__all__ = [
    "TINY_VQGAN",
    "VQGAN",
    "VQGAN_IMAGENET_F16_16384",
    "CheckpointError",
    "CheckpointMismatchError",
    "UntrustedCheckpointError",
    "VQGANConfig",
    "build_tiny_vqgan",
    "load_vqgan",
    "read_taming_yaml",
    "read_vqgan_state",
    "vqgan_fingerprint",
]
