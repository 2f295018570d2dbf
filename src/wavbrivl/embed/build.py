"""The configured encoder's identity (to be replaced by reading embedding headers)."""

from __future__ import annotations

from typing import Any

from wavbrivl.encoders.from_config import encoder_from_config


def encoder_fingerprint_and_dim(cfg: dict[str, Any]) -> tuple[str, int]:
    """The configured encoder's fingerprint and embedding size, built on the CPU.

    Training and evaluation check every embedding file against this fingerprint, so a file
    made by another encoder, other weights or other preprocessing is never mixed in.
    """
    encoder = encoder_from_config({**cfg, "device": "cpu"})
    return encoder.fingerprint, encoder.dim
