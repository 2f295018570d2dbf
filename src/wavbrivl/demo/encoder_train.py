"""Train the demo's tiny image encoder on the demo's training frames (demo only).

The tiny BriVL tower with random weights already tells the demo's classes apart (mean cosine
0.80 between two frames of a class, 0.44 between classes), but it scores a rainbow gradient
well for any target, so guided generation drifts to the same look for every clip. Trained for
a few CPU minutes, it is what a real frozen encoder is to real photos: a model that has seen
such pictures. See docs/stages.md (train_demo_image_encoder) for the measured effect.

The training is SimCLR's (Chen et al. 2020), without labels: each step draws ``batch_size``
frames and two views of each, cut as guided generation cuts its images (a random square crop,
a flip, pixel noise: :func:`wavbrivl.generate.cutouts.make_cutouts`, from the frame resized to
the generation size), and minimises the symmetric InfoNCE loss that makes a frame's two views
each other's nearest neighbour among the batch. The encoder so learns to give all cutouts of a
picture one embedding, which is what the generation loop asks of it.

The result is written as the official BriVL checkpoint is (``{"learnable": {"imgencoder.*"}}``),
so the workflow loads it with the BriVL loader: ``embed.encoder: demo``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from wavbrivl.atomic import atomic_path, write_text_atomic
from wavbrivl.configs import config_schema, from_mapping
from wavbrivl.demo.vqgan_train import read_training_frames
from wavbrivl.encoders.boxes import boxes_for_batch
from wavbrivl.encoders.brivl import TINY_BRIVL, BriVLImageEncoder
from wavbrivl.encoders.checkpoint import IMAGE_PREFIX
from wavbrivl.encoders.preprocess import BriVLPreprocess
from wavbrivl.generate.cutouts import CutoutRng, CutoutSettings, make_cutouts

PathLike = str | os.PathLike

#: The file ``embed.encoder: demo`` reads; rule train_demo_image_encoder writes it.
DEMO_ENCODER_PATH = "results/demo/image_encoder/demo_brivl.pth"


def _schema_default(key: str) -> Any:
    """The schema's default of ``demo.image_encoder.<key>``."""
    block = config_schema()["properties"]["demo"]["properties"]["image_encoder"]
    return block["properties"][key]["default"]


@dataclass(frozen=True)
class DemoEncoderConfig:
    """Settings of the demo's image-encoder training (the config's ``demo.image_encoder``)."""

    steps: int = _schema_default("steps")  # Adam steps
    batch_size: int = _schema_default("batch_size")  # frames per step (2 views each)
    lr: float = _schema_default("lr")  # Adam
    temperature: float = _schema_default("temperature")  # of the InfoNCE logits
    image_size: int = _schema_default("image_size")  # frames are resized to this square first
    min_cut_size: int = _schema_default("min_cut_size")  # smallest view, in pixels of image_size
    cut_noise: float = _schema_default("cut_noise")  # pixel noise std ~ U(0, cut_noise)
    seed: int = _schema_default("seed")

    def __post_init__(self) -> None:
        for name in ("steps", "image_size", "min_cut_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"demo.image_encoder.{name} must be at least 1")
        if self.batch_size < 2:
            raise ValueError("demo.image_encoder.batch_size must be at least 2 (negatives)")
        if self.lr <= 0 or self.temperature <= 0:
            raise ValueError("demo.image_encoder.lr and temperature must be positive")
        if self.cut_noise < 0:
            raise ValueError("demo.image_encoder.cut_noise must not be negative")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DemoEncoderConfig:
        return from_mapping(cls, values, "demo.image_encoder config")

    def cutouts(self) -> CutoutSettings:
        """Two views per frame, drawn as generation draws its cutouts."""
        return CutoutSettings(n=2, min_size=self.min_cut_size, noise=self.cut_noise)


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE of unit rows: ``a[i]``'s positive is ``b[i]``, the other rows are
    negatives, in both directions; (B, D), (B, D) -> scalar."""
    logits = a @ b.T / temperature  # (B, B)
    target = torch.arange(len(a), device=a.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def embed_views(model: BriVLImageEncoder, views: torch.Tensor) -> torch.Tensor:
    """(M, 3, S, S) RGB in [0, 1] at the encoder's size -> (M, D) unit rows, with gradients."""
    size = model.cfg.img_size
    pixels = BriVLPreprocess(img_size=size).from_tensor(views)
    boxes, n_boxes = boxes_for_batch("whole", len(views), size, model.cfg.max_boxes)
    return model.encode_image(pixels, boxes, n_boxes)


@dataclass
class TrainedEncoder:
    model: BriVLImageEncoder  # frozen again after training
    losses: list[float]  # one per step


def train_demo_image_encoder(
    frames: torch.Tensor,
    cfg: DemoEncoderConfig,
    log: Callable[[str], None] = lambda msg: None,
) -> TrainedEncoder:
    """Train the tiny BriVL tower on ``frames`` (N, 3, S, S) in [0, 1]; CPU, seeded."""
    if len(frames) < 2:
        raise ValueError(f"{len(frames)} training frame(s): InfoNCE needs at least 2")
    # Initial weights and dropout draw from the global RNG: seed it, and leave the caller's alone.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return _train(frames, cfg, log)


def _train(
    frames: torch.Tensor, cfg: DemoEncoderConfig, log: Callable[[str], None]
) -> TrainedEncoder:
    generator = torch.Generator().manual_seed(cfg.seed)  # batches and views
    model = BriVLImageEncoder(TINY_BRIVL, frozen=False)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    settings = cfg.cutouts()
    batch = min(cfg.batch_size, len(frames))  # without replacement: no frame is its own negative
    losses: list[float] = []
    every = max(1, cfg.steps // 10)
    for step in range(1, cfg.steps + 1):
        pick = torch.randperm(len(frames), generator=generator)[:batch]
        seeds = torch.randint(2**31 - 1, (batch,), generator=generator).tolist()
        views = make_cutouts(
            frames[pick], model.cfg.img_size, settings, [CutoutRng(s) for s in seeds]
        )  # (2B, 3, S, S), image-major: rows 2i and 2i+1 are frame i's views
        emb = embed_views(model, views).view(batch, 2, -1)
        loss = info_nce(emb[:, 0], emb[:, 1], cfg.temperature)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if step % every == 0 or step == cfg.steps:
            log(f"step {step}/{cfg.steps}: InfoNCE {loss.item():.4f}")
    model.freeze()
    return TrainedEncoder(model, losses)


def save_brivl_checkpoint(model: BriVLImageEncoder, path: PathLike) -> None:
    """Write the tower as an official BriVL checkpoint's image part, atomically."""
    state = {
        IMAGE_PREFIX + key: value.detach().cpu().contiguous()
        for key, value in model.state_dict().items()
    }
    with atomic_path(path) as tmp:
        torch.save({"learnable": state}, tmp)


def write_loss_log(losses: Sequence[float], path: PathLike) -> None:
    """The per-step loss as a TSV (step, info_nce)."""
    lines = ["step\tinfo_nce"] + [f"{i}\t{v:.6g}" for i, v in enumerate(losses, start=1)]
    write_text_atomic(path, "\n".join(lines) + "\n")


def run_demo_image_encoder(
    *,
    media_paths: Sequence[PathLike],
    clip_ids: Iterable[str],
    ckpt_path: PathLike,
    log_path: PathLike,
    block: dict[str, Any],
    log: Callable[[str], None],
) -> TrainedEncoder:
    """The workflow's call: read the frames, train, write the checkpoint and the loss log."""
    cfg = DemoEncoderConfig.from_dict(block)
    frames, ids = read_training_frames(media_paths, clip_ids, cfg.image_size)
    log(f"training the demo image encoder on {len(ids)} frames, {cfg.steps} steps")
    trained = train_demo_image_encoder((frames + 1) / 2, cfg, log=log)  # [-1, 1] -> [0, 1]
    save_brivl_checkpoint(trained.model, ckpt_path)
    write_loss_log(trained.losses, log_path)
    return trained


__all__ = [
    "DEMO_ENCODER_PATH",
    "DemoEncoderConfig",
    "TrainedEncoder",
    "embed_views",
    "info_nce",
    "run_demo_image_encoder",
    "save_brivl_checkpoint",
    "train_demo_image_encoder",
    "write_loss_log",
]
