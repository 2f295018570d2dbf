"""Frozen image encoders behind one interface, built by name.

An encoder carries its own preprocessing (so the two never drift apart) and a fingerprint:
the SHA-256 of everything that changes its embeddings (weights, architecture, preprocessing,
box mode). Embedding caches store the fingerprint and are recomputed when it changes.

Builders are registered in :data:`ENCODERS`: BriVL, its tiny twin and the demo's trained tiny
tower here, HF-format CLIP
(:mod:`wavbrivl.encoders.clip`) and OpenCLIP (:mod:`wavbrivl.encoders.open_clip`), which also
offer ``encode_text``. Others can be added with a builder function returning an object that
satisfies :class:`ImageEncoder`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch

from wavbrivl.checkpoints import state_dict_sha256
from wavbrivl.encoders.boxes import BOX_MODES, boxes_for_batch
from wavbrivl.encoders.brivl import BRIVL_1_0, TINY_BRIVL, BriVLImageConfig, BriVLImageEncoder
from wavbrivl.encoders.brivl_text import (
    BRIVL_TEXT_1_0,
    TINY_BRIVL_TEXT,
    BriVLText,
    LazyText,
    build_brivl_text,
    build_random_text,
    check_text_folder,
)
from wavbrivl.encoders.checkpoint import load_brivl_image_weights
from wavbrivl.encoders.clip import build_clip
from wavbrivl.encoders.open_clip import build_open_clip
from wavbrivl.encoders.preprocess import BriVLPreprocess, ImageLike

Images = Sequence[ImageLike] | torch.Tensor


class ImageEncoder(Protocol):
    """What the embedding and generation stages rely on."""

    name: str  # human-readable, says what the weights are
    dim: int  # D, embedding size
    preprocess: Any  # the preprocessing the encoder applies to PIL images / tensors
    fingerprint: str  # hex SHA-256 of weights + architecture + preprocessing + box mode
    device: torch.device

    def encode_images(
        self, images: Images, aug_seeds: Sequence[int] | None = None
    ) -> torch.Tensor: ...

    def metadata(self) -> dict[str, str]: ...


class BriVLEncoder:
    """A frozen :class:`BriVLImageEncoder` + its preprocessing + a fixed box layout.

    With ``text`` (the text tower of the same checkpoint) it also has ``encode_text``;
    without, it has no such attribute (zero-shot then raises ``wavbrivl.api.NoTextSide``).
    The text side does not enter the fingerprint: it is the same space, whose image
    embeddings (and caches) do not change when a text side is added.
    """

    def __init__(
        self,
        model: BriVLImageEncoder,
        *,
        name: str,
        box_mode: str,
        weights_id: dict[str, Any],
        device: str | torch.device = "cpu",
        text: BriVLText | LazyText | None = None,
    ) -> None:
        if box_mode not in BOX_MODES:
            raise ValueError(f"unknown box mode {box_mode!r}; known: {sorted(BOX_MODES)}")
        self.device = torch.device(device)
        self.model = model.freeze().to(self.device)
        self.name = name
        self.dim = model.cfg.out_dim
        self.box_mode = box_mode
        self.preprocess = BriVLPreprocess(img_size=model.cfg.img_size)
        self._identity = {
            "family": "brivl",
            **weights_id,
            "config": model.cfg.to_dict(),
            "preprocess": self.preprocess.settings(),
            "box_mode": box_mode,
        }
        self.fingerprint = hashlib.sha256(
            json.dumps(self._identity, sort_keys=True).encode()
        ).hexdigest()
        if text is not None:
            if text.dim != self.dim:
                raise ValueError(f"text tower gives {text.dim}-d rows, image tower {self.dim}-d")
            self.text = text
            self.encode_text = text.encode_text  # (N,) texts -> (N, D) unit rows

    def encode_images(self, images: Images, aug_seeds: Sequence[int] | None = None) -> torch.Tensor:
        """Embed images -> (B, D) float32 unit vectors on ``self.device``.

        ``images`` is a list of PIL images / uint8 (H, W, 3) arrays (embedded without
        gradients), or a (B, 3, H, W) float tensor of RGB in [0, 1] (resized and normalised
        here, with the autograd graph kept so generation can optimise the pixels).
        ``aug_seeds`` (one per image) applies BriVL's training colour augmentation.
        """
        if isinstance(images, torch.Tensor):
            pixels = self.preprocess.from_tensor(images.to(self.device), aug_seeds)
            return self._encode(pixels)
        with torch.no_grad():
            pixels = self.preprocess.batch(images, aug_seeds).to(self.device)
            return self._encode(pixels)

    def _encode(self, pixels: torch.Tensor) -> torch.Tensor:
        cfg = self.model.cfg
        boxes, n_boxes = boxes_for_batch(
            self.box_mode, pixels.shape[0], cfg.img_size, cfg.max_boxes
        )
        out = self.model.encode_image(pixels, boxes.to(self.device), n_boxes.to(self.device))
        return out.float()  # (B, D)

    def metadata(self) -> dict[str, str]:
        """String facts for embedding files (``wavbrivl.embed.store`` prefixes the keys)."""
        return {
            "encoder": self.name,
            "fingerprint": self.fingerprint,
            "dim": str(self.dim),
            "image_size": str(self.preprocess.img_size),
            "box_mode": self.box_mode,
            "preprocessing": json.dumps(self.preprocess.settings(), sort_keys=True),
            "identity": json.dumps(self._identity, sort_keys=True),  # what the fingerprint hashes
        }


def build_brivl(
    weights: str | os.PathLike,
    box_mode: str = "whole",
    device: str | torch.device = "cpu",
    config: BriVLImageConfig = BRIVL_1_0,
    text_folder: str | os.PathLike | None = None,
) -> BriVLEncoder:
    """The BriVL image encoder with weights from an official checkpoint (loaded strictly);
    with ``text_folder`` (local hfl/chinese-roberta-wwm-ext: config.json + vocab.txt) also
    the checkpoint's text tower, so the encoder has ``encode_text`` (loaded on its first call)."""
    model = BriVLImageEncoder(config)
    weights_sha256 = load_brivl_image_weights(model, weights)
    text = None
    if text_folder is not None:
        head = BRIVL_TEXT_1_0 if config == BRIVL_1_0 else TINY_BRIVL_TEXT
        head = dataclasses.replace(head, out_dim=config.out_dim)
        check_text_folder(text_folder)  # a wrong folder fails now; the weights load on first use
        text = LazyText(
            functools.partial(build_brivl_text, weights, text_folder, head=head, device=device),
            dim=head.out_dim,
        )
    label = "brivl-1.0" if config == BRIVL_1_0 else f"brivl[{config.backbone}]"
    return BriVLEncoder(
        model,
        name=f"{label}(box_mode={box_mode})",
        box_mode=box_mode,
        weights_id={"weights_sha256": weights_sha256},
        device=device,
        text=text,
    )


def build_tiny(
    seed: int = 0,
    box_mode: str = "whole",
    device: str | torch.device = "cpu",
    text_folder: str | os.PathLike | None = None,
) -> BriVLEncoder:
    """The BriVL architecture at toy size with seeded random weights: NOT a trained model.

    With ``text_folder`` (a BERT config.json + vocab.txt) also a seeded random text tower,
    whose zero-shot answers are at chance."""
    with torch.random.fork_rng(devices=[]):  # leave the caller's RNG untouched
        torch.manual_seed(seed)
        model = BriVLImageEncoder(TINY_BRIVL)
    # With torch's default init the head's biases outweigh the image signal and every image
    # maps to almost the same vector (mean cosine ~0.99); without them embeddings differ.
    for name, param in model.learnable.named_parameters():
        if name.endswith("bias") and ".norm" not in name:
            param.data.zero_()
    return BriVLEncoder(
        model,
        name=f"tiny-random-brivl(seed={seed})",
        box_mode=box_mode,
        # Hash the weights themselves: the same seed under another torch/timm init is another model.
        weights_id={"seed": seed, "weights_sha256": state_dict_sha256(model.state_dict())},
        device=device,
        text=None
        if text_folder is None
        else build_random_text(text_folder, seed=seed, device=device),
    )


def build_demo(
    weights: str | os.PathLike,
    seed: int = 0,
    box_mode: str = "whole",
    device: str | torch.device = "cpu",
    text_folder: str | os.PathLike | None = None,
) -> BriVLEncoder:
    """The tiny BriVL tower trained on the demo's frames (:mod:`wavbrivl.demo.encoder_train`),
    from its BriVL-format checkpoint: a toy, NOT a model of real images.

    With ``text_folder`` also :func:`build_tiny`'s seeded random text tower (the training
    has no text: zero-shot answers stay at chance)."""
    model = BriVLImageEncoder(TINY_BRIVL)
    weights_sha256 = load_brivl_image_weights(model, weights)
    return BriVLEncoder(
        model,
        name="demo-trained-tiny-brivl",
        box_mode=box_mode,
        weights_id={"weights_sha256": weights_sha256, "text_seed": seed},
        device=device,
        text=None
        if text_folder is None
        else build_random_text(text_folder, seed=seed, device=device),
    )


#: Encoder builders by name; ``ENCODERS[name](**kwargs) -> ImageEncoder``.
ENCODERS: dict[str, Callable[..., ImageEncoder]] = {
    "brivl": build_brivl,
    "tiny": build_tiny,
    "demo": build_demo,  # the tiny tower trained on the demo's frames
    "clip": build_clip,  # HF-format CLIP from a local folder (wavbrivl.encoders.clip)
    "open_clip": build_open_clip,  # OpenCLIP from a local file or folder
}


def build_encoder(name: str, **kwargs: Any) -> ImageEncoder:
    """Build a registered encoder, e.g. ``build_encoder("brivl", weights=path, device="cuda")``."""
    try:
        builder = ENCODERS[name]
    except KeyError:
        raise ValueError(f"unknown encoder {name!r}; known: {sorted(ENCODERS)}") from None
    return builder(**kwargs)
