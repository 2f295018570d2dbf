"""Load the image tower of an official BriVL checkpoint (``BriVL-1.0-5500w.pth`` format).

The file is ``{"learnable": state_dict, ...}`` where the state dict holds the whole model:
``imgencoder.*`` (what we want), ``imgencoder_mom.*`` (MoCo momentum copy) and
``textencoder*``. Reading, checking and errors are the shared ones of
``wavbrivl.checkpoints`` (weights-only: nothing in the file is executed).
"""

from __future__ import annotations

import os

import torch
from torch import nn

from wavbrivl.checkpoints import (
    SHOW,
    CheckpointError,
    check_state_fits,
    read_checkpoint,
    state_dict_entry,
)
from wavbrivl.hashing import sha256_of

IMAGE_PREFIX = "imgencoder."


def load_brivl_image_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The image encoder's state dict from an official BriVL checkpoint, prefix stripped.

    Only ``imgencoder.*`` entries are kept (``imgencoder_mom.*`` and ``textencoder*`` are
    dropped); ``imgencoder.backbone.conv_stem.weight`` becomes ``backbone.conv_stem.weight``.
    """
    learnable = state_dict_entry(read_checkpoint(path), "learnable", path, "a BriVL checkpoint")
    state = {
        key[len(IMAGE_PREFIX) :]: value
        for key, value in learnable.items()
        if key.startswith(
            IMAGE_PREFIX
        )  # "imgencoder_mom." does not match: no dot after "imgencoder"
    }
    if not state:
        raise CheckpointError(
            f"{path}: 'learnable' has no '{IMAGE_PREFIX}*' entries; first keys: {list(learnable)[:SHOW]}"
        )
    return state


def load_brivl_image_weights(model: nn.Module, path: str | os.PathLike) -> str:
    """Load an official checkpoint's image encoder into ``model``, strictly.

    Returns the file's SHA-256 (for fingerprints). Raises a :class:`CheckpointError`
    subclass naming the file on any problem; the model is untouched in that case.
    """
    state = load_brivl_image_state(path)
    check_state_fits(model, state, path)
    model.load_state_dict(state, strict=True)
    return sha256_of(path)
