"""Train the demo's tiny VQGAN on the demo's training frames (demo only).

A VQGAN with random weights decodes every latent grid to coloured noise, so guided generation
can only find noise that the frozen encoder happens to score well. Trained for a few CPU
minutes on the demo's training frames (a red field, a checkerboard, grey static, ...), its
decoder can only draw what those frames look like, and the image generated from a clip's
audio takes its class's look. See docs/stages.md (train_demo_vqgan).

The training is a plain VQ-VAE (van den Oord et al.) on the VQGAN architecture: per step::

    z    = encode(x)                                  (B, D, h, w)
    z_q  = codebook[nearest(z)]                        (B, D, h, w)
    x'   = decode(z + sg(z_q - z))                     straight-through to the encoder
    loss = |x' - x|^2 + |sg(z) - z_q|^2 + beta |z - sg(z_q)|^2

without taming's perceptual and adversarial terms, which need weights (LPIPS) or far more
steps than a demo has. The codebook starts from encoder outputs, and a code that no latent
chose during ``restart_every`` steps is moved onto a random latent of the current batch, so
the small codebook stays in use. The result is written as taming writes it (a Lightning-style
``{"state_dict": ...}`` and a model YAML), the files ``generate.vqgan_ckpt`` /
``vqgan_yaml`` name, so generation loads it with :func:`wavbrivl.vqgan.load_vqgan`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

from wavbrivl.atomic import atomic_path, write_text_atomic
from wavbrivl.configs import config_schema, from_mapping
from wavbrivl.extract.media import decode_frame, iter_media_rows
from wavbrivl.vqgan.checkpoint import TAMING_TARGET
from wavbrivl.vqgan.model import VQGAN, VQGANConfig

PathLike = str | os.PathLike

# The demo's VQGAN: TINY_VQGAN's layout with one width (32) at every level, so that a CPU
# trains it in minutes and decodes 64 px images fast; f = 4, attention at 8 x 8.
DEMO_VQGAN = VQGANConfig(
    embed_dim=16,
    n_embed=64,
    ch=32,
    ch_mult=(1, 1, 1),
    num_res_blocks=1,
    attn_resolutions=(8,),
    z_channels=32,
    resolution=32,
)


def _schema_default(key: str) -> Any:
    """The schema's default of ``demo.vqgan.<key>`` (the one place defaults are written)."""
    return config_schema()["properties"]["demo"]["properties"]["vqgan"]["properties"][key][
        "default"
    ]


@dataclass(frozen=True)
class DemoVQGANConfig:
    """Settings of the demo's VQGAN training (the config's ``demo.vqgan`` block)."""

    steps: int = _schema_default("steps")  # Adam steps
    batch_size: int = _schema_default("batch_size")  # frames per step, drawn with replacement
    lr: float = _schema_default("lr")  # Adam
    image_size: int = _schema_default("image_size")  # frames are resized to this square
    beta: float = _schema_default("beta")  # commitment weight
    restart_every: int = _schema_default("restart_every")  # steps between dead-code restarts
    seed: int = _schema_default("seed")

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "image_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"demo.vqgan.{name} must be at least 1")
        if self.lr <= 0:
            raise ValueError("demo.vqgan.lr must be positive")
        if self.beta < 0 or self.restart_every < 0:
            raise ValueError("demo.vqgan.beta and demo.vqgan.restart_every must not be negative")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DemoVQGANConfig:
        return from_mapping(cls, values, "demo.vqgan config")


# -- frames -----------------------------------------------------------------------------------


def frames_to_tensor(images: Sequence[Image.Image], size: int) -> torch.Tensor:
    """RGB images -> (N, 3, size, size) float32 in [-1, 1] (bicubic resize)."""
    arrays = [
        np.asarray(image.convert("RGB").resize((size, size), Image.BICUBIC), dtype=np.float32)
        for image in images
    ]
    pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)  # (N, H, W, 3) -> (N, 3, H, W)
    return pixels / 127.5 - 1.0


def read_training_frames(
    media_paths: Iterable[PathLike], clip_ids: Iterable[str], size: int
) -> tuple[torch.Tensor, list[str]]:
    """The ``ok`` frames of ``clip_ids`` from media shards: ((N, 3, size, size), their ids).

    Clips are sorted by id, so the tensor does not depend on the shards' order. A clip that
    is missing or not ``ok`` is left out; none at all is an error naming the shards.
    """
    wanted = set(clip_ids)
    paths = [str(p) for p in media_paths]
    found: dict[str, Image.Image] = {}
    for path in paths:
        for rows in iter_media_rows(path, ["frame"], ok_only=True):
            for clip_id, jpeg in zip(rows["clip_id"], rows["frame"], strict=True):
                if clip_id in wanted:
                    found[clip_id] = decode_frame(jpeg)
    if not found:
        raise ValueError(f"no ok training frame in the media shards {paths}")
    ids = sorted(found)
    return frames_to_tensor([found[i] for i in ids], size), ids


# -- one step ---------------------------------------------------------------------------------


@dataclass
class StepOutput:
    loss: torch.Tensor  # the scalar that is minimised
    recon: float  # mean squared pixel error (pixels in [-1, 1])
    codebook: float  # |sg(z) - z_q|^2
    indices: torch.Tensor  # (B, h, w) chosen codes


def vq_step(model: VQGAN, x: torch.Tensor, beta: float) -> StepOutput:
    """The VQ-VAE loss of one batch (B, 3, H, W) in [-1, 1]."""
    z = model.encode(x)  # (B, D, h, w)
    indices = model.quantize.nearest_indices(z)  # (B, h, w)
    z_q = model.quantize.lookup(indices)  # (B, D, h, w), gradient to the codebook
    rebuilt = model.decode(z + (z_q - z).detach())  # straight-through to the encoder
    recon = F.mse_loss(rebuilt, x)
    codebook = F.mse_loss(z_q, z.detach())
    commit = F.mse_loss(z, z_q.detach())
    loss = recon + codebook + beta * commit
    return StepOutput(loss, recon.item(), codebook.item(), indices)


@torch.no_grad()
def init_codebook(model: VQGAN, x: torch.Tensor, generator: torch.Generator) -> None:
    """Set every code to a latent of ``x`` (drawn with replacement): no code starts unused."""
    latents = _flat_latents(model, x)  # (M, D)
    pick = torch.randint(len(latents), (model.cfg.n_embed,), generator=generator)
    model.codebook.copy_(latents[pick])


@torch.no_grad()
def restart_dead_codes(
    model: VQGAN, x: torch.Tensor, used: torch.Tensor, generator: torch.Generator
) -> int:
    """Move each code with ``used[k] == 0`` onto a random latent of ``x``; how many moved."""
    dead = (used == 0).nonzero().flatten()
    if len(dead):
        latents = _flat_latents(model, x)
        pick = torch.randint(len(latents), (len(dead),), generator=generator)
        model.codebook[dead] = latents[pick]
    return len(dead)


def _flat_latents(model: VQGAN, x: torch.Tensor) -> torch.Tensor:
    z = model.encode(x)  # (B, D, h, w)
    return z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])  # (B*h*w, D)


# -- the loop ---------------------------------------------------------------------------------


@dataclass
class TrainedVQGAN:
    model: VQGAN
    log_rows: list[dict[str, float]]  # one per step: step, loss, recon, codebook, codes_used


def train_demo_vqgan(
    frames: torch.Tensor,
    cfg: DemoVQGANConfig,
    arch: VQGANConfig = DEMO_VQGAN,
    log: Callable[[str], None] = lambda msg: None,
) -> TrainedVQGAN:
    """Train a VQGAN of ``arch`` on ``frames`` (N, 3, S, S) in [-1, 1]; CPU, seeded."""
    generator = torch.Generator().manual_seed(cfg.seed)
    with torch.random.fork_rng(devices=[]):  # leave the caller's RNG untouched
        torch.manual_seed(cfg.seed)
        model = VQGAN(arch)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    used = torch.zeros(arch.n_embed, dtype=torch.long)
    rows: list[dict[str, float]] = []

    def batch() -> torch.Tensor:
        return frames[torch.randint(len(frames), (cfg.batch_size,), generator=generator)]

    init_codebook(model, batch(), generator)
    for step in range(1, cfg.steps + 1):
        # One Adam step on the VQ-VAE loss of a batch drawn with replacement.
        x = batch()
        out = vq_step(model, x, cfg.beta)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        # Count the codes in use; now and then move the unused ones onto live latents.
        used += torch.bincount(out.indices.flatten(), minlength=arch.n_embed)
        rows.append(
            {
                "step": step,
                "loss": out.loss.item(),
                "recon": out.recon,
                "codebook": out.codebook,
                "codes_used": int((used > 0).sum()),
            }
        )
        if cfg.restart_every and step % cfg.restart_every == 0:
            moved = restart_dead_codes(model, x, used, generator)
            log(
                f"step {step}: loss {out.loss.item():.4f}, recon {out.recon:.4f}, {moved} codes restarted"
            )
            used.zero_()
    model.eval().requires_grad_(False)
    return TrainedVQGAN(model, rows)


# -- the files generation reads ---------------------------------------------------------------


def taming_yaml(arch: VQGANConfig) -> str:
    """A taming model YAML for ``arch`` (what :func:`wavbrivl.vqgan.read_taming_yaml` reads)."""
    ddconfig = {k: v for k, v in arch.to_dict().items() if k not in ("embed_dim", "n_embed")}
    doc = {
        "model": {
            "target": TAMING_TARGET,
            "params": {"embed_dim": arch.embed_dim, "n_embed": arch.n_embed, "ddconfig": ddconfig},
        }
    }
    return yaml.safe_dump(doc, sort_keys=False)


def save_taming_checkpoint(model: VQGAN, ckpt_path: PathLike, yaml_path: PathLike) -> None:
    """Write ``{"state_dict": ...}`` and the model YAML, each atomically."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(ckpt_path) as tmp:
        torch.save({"state_dict": state}, tmp)
    write_text_atomic(yaml_path, taming_yaml(model.cfg))


def write_train_log(rows: Sequence[dict[str, float]], path: PathLike) -> None:
    """The per-step log as a TSV (step, loss, recon, codebook, codes_used)."""
    header = ["step", "loss", "recon", "codebook", "codes_used"]
    lines = ["\t".join(header)]
    lines += ["\t".join(_cell(row[k]) for k in header) for row in rows]
    write_text_atomic(path, "\n".join(lines) + "\n")


def _cell(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:.6g}"


def run_demo_vqgan(
    *,
    media_paths: Sequence[PathLike],
    clip_ids: Iterable[str],
    ckpt_path: PathLike,
    yaml_path: PathLike,
    log_path: PathLike,
    block: dict[str, Any],
    log: Callable[[str], None],
) -> TrainedVQGAN:
    """The workflow's call: read the frames, train, write checkpoint, YAML and log."""
    cfg = DemoVQGANConfig.from_dict(block)
    frames, ids = read_training_frames(media_paths, clip_ids, cfg.image_size)
    log(f"training the demo VQGAN on {len(ids)} frames at {cfg.image_size}px, {cfg.steps} steps")
    trained = train_demo_vqgan(frames, cfg, log=log)
    save_taming_checkpoint(trained.model, ckpt_path, yaml_path)
    write_train_log(trained.log_rows, log_path)
    return trained


__all__ = [
    "DEMO_VQGAN",
    "DemoVQGANConfig",
    "TrainedVQGAN",
    "frames_to_tensor",
    "init_codebook",
    "read_training_frames",
    "restart_dead_codes",
    "run_demo_vqgan",
    "save_taming_checkpoint",
    "taming_yaml",
    "train_demo_vqgan",
    "vq_step",
    "write_train_log",
]
