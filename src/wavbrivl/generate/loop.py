"""Audio-guided image generation: the VQGAN-CLIP optimisation, with a target from audio.

For each clip, a VQGAN latent grid ``z`` is optimised so that the frozen image encoder maps
cutouts of the decoded image close to the clip's target embedding g(audio)::

    z  <- codebook[random tokens]                   (b, C, h, w)  seeded per clip
    each step:
        z_q   = quantize_st(z)                       nearest codebook entry, straight-through
        image = clamp((decode(z_q) + 1) / 2, 0, 1)   (b, 3, H, W), clamp passes inward gradients
        cuts  = make_cutouts(image)                  (b * n, 3, S, S) at the encoder's input size
        emb   = encoder(cuts)                        (b * n, D) unit vectors
        loss  = sum over clips of mean over cutouts of 2 * arcsin(|emb - t| / 2) ** 2
        Adam step on z; then clamp z to the codebook's per-dimension range

Clips in a batch do not interact: the loss is a *sum* over clips (each clip's gradient is its
own), Adam works per element, and every random draw comes from the clip's own seed. So a
clip's image does not depend on which clips share its batch.

The trace records, per step, the mean cosine similarity of the cutouts to the target (what
the loss saw at that step, before the update). ``final_similarity`` is the cosine of the
*saved* image (8-bit, whole, no augmentation) embedded by the encoder, i.e. what a reader of
the PNG would measure.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from wavbrivl.configs import check_block, default_field, from_mapping
from wavbrivl.generate.cutouts import CutoutRng, CutoutSettings, make_cutouts
from wavbrivl.generate.png import progress_png_path, save_png

#: Below this norm a target has no direction: the image is left unguided (and we say so).
MIN_TARGET_NORM = 1e-8


@dataclass(frozen=True)
class GenerateConfig:
    """Settings of the guided generation (defaults: VQGAN-CLIP as Wav2CLIP ran it)."""

    # Keys of the workflow's `generate` block; defaults and ranges come from the config schema.
    steps: int = default_field("generate", "steps")
    lr: float = default_field("generate", "lr")  # Adam on the latent grid
    cutouts: int = default_field("generate", "cutouts")  # per clip per step
    cut_pow: float = default_field("generate", "cut_pow")
    min_cut_size: int | None = default_field("generate", "min_cut_size")  # None: encoder size
    cut_flip: bool = default_field("generate", "cut_flip")
    cut_noise: float = default_field("generate", "cut_noise")
    seed: int = default_field("generate", "seed")  # each clip's seed derives from it and its id
    size: tuple[int, int] = default_field("generate", "size")  # (H, W); multiples of the f
    batch_clips: int = default_field("generate", "batch_clips")  # clips optimised together
    save_every: int = default_field("generate", "save_every")  # progress frame every k; 0 = none
    init: str = default_field("generate", "init")

    def __post_init__(self) -> None:
        check_block(self, "generate")
        # YAML and JSON give lists; keep the dataclass hashable and comparable.
        object.__setattr__(self, "size", tuple(int(v) for v in self.size))
        if self.init not in INITS:  # the schema's enum and the implemented inits must agree
            raise ValueError(f"unknown init {self.init!r}; known: {sorted(INITS)}")
        self.cutout_settings()  # validates the cutout fields

    def cutout_settings(self) -> CutoutSettings:
        return CutoutSettings(
            n=self.cutouts,
            cut_pow=self.cut_pow,
            min_size=self.min_cut_size,
            flip=self.cut_flip,
            noise=self.cut_noise,
        )

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["size"] = list(self.size)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> GenerateConfig:
        return from_mapping(cls, values, "GenerateConfig")


@dataclass
class GenerationResult:
    """One clip's outcome."""

    clip_id: str
    label: str
    seed: int
    image: Image.Image  # RGB, cfg.size
    trace: list[float]  # per step: mean cosine of the cutouts to the target, before the update
    final_similarity: float  # cosine of the saved (8-bit) image's embedding to the target
    target_norm: float  # norm of the target before normalisation
    steps: int = 0
    notes: list[str] = field(default_factory=list)


# -- the pieces of one step ----------------------------------------------------------------


class _ClampInward(torch.autograd.Function):
    """Clamp to [lo, hi]; backward passes a gradient unless it pushes further outside.

    A plain clamp would zero the gradient of every saturated pixel for good; this lets the
    optimiser pull a saturated pixel back into range.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.lo, ctx.hi = lo, hi
        return x.clamp(lo, hi)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        outside = x - x.clamp(ctx.lo, ctx.hi)  # > 0 above, < 0 below, 0 inside
        # Descent moves x by -grad: keep grad when that moves x towards the range.
        keep = grad * outside >= 0
        return grad * keep, None, None


def clamp_inward(x: torch.Tensor, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
    return _ClampInward.apply(x, lo, hi)


def spherical_distance_sq(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``2 * arcsin(|a - b| / 2) ** 2`` over the last axis (unit vectors: half the squared
    great-circle angle); broadcasts, e.g. (b, n, D) with (b, 1, D) -> (b, n)."""
    chord = (a - b).norm(dim=-1).div(2).clamp(max=1.0)
    return chord.arcsin().pow(2).mul(2)


def downsample_factor(vqgan: torch.nn.Module) -> int:
    """f: pixels per latent cell, ``2 ** (len(ch_mult) - 1)`` (or the model's own attribute)."""
    f = getattr(vqgan, "downsample_factor", None)
    if f is None:
        cfg = getattr(vqgan, "cfg", None) or getattr(vqgan, "config", None)
        if cfg is None or not hasattr(cfg, "ch_mult"):
            raise TypeError(f"{type(vqgan).__name__} has neither downsample_factor nor cfg.ch_mult")
        f = 2 ** (len(cfg.ch_mult) - 1)
    return int(f)


def latent_grid(vqgan: torch.nn.Module, size: tuple[int, int]) -> tuple[int, int]:
    """(H, W) pixels -> (h, w) latent cells; the size must be a multiple of f."""
    f = downsample_factor(vqgan)
    height, width = size
    if height % f or width % f:
        raise ValueError(f"size {size} is not a multiple of the VQGAN's downsample factor {f}")
    return height // f, width // f


def init_random_tokens(
    codebook: torch.Tensor, grid: tuple[int, int], seeds: Sequence[int]
) -> torch.Tensor:
    """z = codebook[random tokens] per clip: (n_embed, C) -> (b, C, h, w), token draws on CPU."""
    h, w = grid
    tokens = torch.stack(
        [
            torch.randint(codebook.shape[0], (h, w), generator=torch.Generator().manual_seed(s))
            for s in seeds
        ]
    )  # (b, h, w)
    return codebook[tokens.to(codebook.device)].permute(0, 3, 1, 2).contiguous()


#: Latent initialisers by name: (codebook, grid, seeds) -> z (b, C, h, w).
INITS: dict[str, Callable[..., torch.Tensor]] = {"random_tokens": init_random_tokens}


def synthesize(vqgan: torch.nn.Module, z: torch.Tensor) -> torch.Tensor:
    """Latent (b, C, h, w) -> image (b, 3, H, W) in [0, 1], differentiable w.r.t. ``z``."""
    pixels = vqgan.decode(vqgan.quantize_st(z))  # (b, 3, H, W) in ~[-1, 1]
    return clamp_inward(pixels.add(1).div(2))


def to_pil(image: torch.Tensor) -> Image.Image:
    """(3, H, W) in [0, 1] -> 8-bit RGB PIL image (rounded, not truncated)."""
    array = image.detach().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(np.ascontiguousarray(array), mode="RGB")


# -- the optimisation ------------------------------------------------------------------------


def generate(
    vqgan: torch.nn.Module,
    image_encoder: Any,
    targets: torch.Tensor,
    cfg: GenerateConfig,
    *,
    clip_ids: Sequence[str],
    labels: Sequence[str] | None = None,
    seeds: Sequence[int],
    device: torch.device | str = "cpu",
    target_norms: Sequence[float] | None = None,
    progress_dir: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> list[GenerationResult]:
    """Generate one image per target, ``cfg.batch_clips`` clips at a time.

    ``targets`` (B, D) may be unnormalised (they are normalised here); ``target_norms`` gives
    the norms before an earlier normalisation, else the norms of ``targets`` are recorded.
    ``image_encoder`` follows :class:`wavbrivl.encoders.registry.ImageEncoder` and must live
    on ``device``; the VQGAN is moved there and put in eval mode. Neither model's weights get
    gradients. Progress frames go to ``progress_dir/<clip_id>/step_<k>.png``.
    """
    device = torch.device(device)
    b = len(clip_ids)
    labels = list(labels) if labels is not None else [""] * b
    if targets.dim() != 2 or targets.shape[0] != b or len(seeds) != b or len(labels) != b:
        raise ValueError(
            f"targets {tuple(targets.shape)}, {len(clip_ids)} clip ids, {len(seeds)} seeds "
            f"and {len(labels)} labels do not describe the same clips"
        )
    if target_norms is not None and len(target_norms) != b:
        raise ValueError(f"{len(target_norms)} target norms for {b} clips")
    if targets.shape[1] != image_encoder.dim:
        raise ValueError(
            f"target embeddings have {targets.shape[1]} dimensions, the image encoder "
            f"{image_encoder.name!r} embeds into {image_encoder.dim}: the audio model was "
            "trained against another image encoder"
        )
    encoder_device = getattr(image_encoder, "device", device)
    if torch.device(encoder_device).type != device.type:
        raise ValueError(
            f"the image encoder is on {encoder_device}, generation asked for {device}: "
            "build the encoder on the generation device"
        )
    targets = targets.detach().float()
    norms = targets.norm(dim=1).tolist() if target_norms is None else list(target_norms)
    vqgan = vqgan.to(device).eval()
    results: list[GenerationResult] = []
    for start in range(0, b, cfg.batch_clips):
        chunk = slice(start, start + cfg.batch_clips)
        log(f"generating clips {start + 1}-{min(b, start + cfg.batch_clips)} of {b}")
        results += _generate_batch(
            vqgan,
            image_encoder,
            F.normalize(targets[chunk], dim=1).to(device),  # zero rows stay zero
            cfg,
            clip_ids=list(clip_ids[chunk]),
            labels=labels[chunk],
            seeds=list(seeds[chunk]),
            norms=norms[chunk],
            device=device,
            progress_dir=None if progress_dir is None else Path(progress_dir),
            log=log,
        )
    return results


def _generate_batch(
    vqgan: torch.nn.Module,
    encoder: Any,
    targets: torch.Tensor,
    cfg: GenerateConfig,
    *,
    clip_ids: list[str],
    labels: list[str],
    seeds: list[int],
    norms: list[float],
    device: torch.device,
    progress_dir: Path | None,
    log: Callable[[str], None],
) -> list[GenerationResult]:
    """Optimise b clips together; ``targets`` (b, D) unit (or zero) rows on ``device``."""
    b = len(clip_ids)
    settings = cfg.cutout_settings()
    cut_size = int(encoder.preprocess.img_size)
    codebook = vqgan.codebook.detach().to(device)  # (n_embed, C)
    z_min = codebook.min(dim=0).values[None, :, None, None]  # (1, C, 1, 1)
    z_max = codebook.max(dim=0).values[None, :, None, None]

    # Latent grid and per-clip random streams.
    z = INITS[cfg.init](codebook, latent_grid(vqgan, cfg.size), seeds).requires_grad_(True)
    rngs = [CutoutRng(seed, device) for seed in seeds]
    optimizer = torch.optim.Adam([z], lr=cfg.lr)
    traces: list[list[float]] = [[] for _ in range(b)]
    notes = [
        [f"target norm {n:.3g}: no direction, the image is not guided"]
        if n < MIN_TARGET_NORM
        else []
        for n in norms
    ]
    for clip_id, note in zip(clip_ids, notes, strict=True):
        for line in note:
            log(f"WARNING: {clip_id}: {line}")

    for step in range(cfg.steps):
        # Decode and embed cutouts: (b, 3, H, W) -> (b * n, 3, S, S) -> (b, n, D).
        image = synthesize(vqgan, z)
        if cfg.save_every and progress_dir is not None and step % cfg.save_every == 0:
            _save_progress(image, clip_ids, progress_dir, step)
        cuts = make_cutouts(image, cut_size, settings, rngs)
        emb = encoder.encode_images(cuts).view(b, settings.n, -1)

        # Loss: each clip's own mean over cutouts, summed so clips do not scale each other.
        per_clip = spherical_distance_sq(emb, targets[:, None]).mean(dim=1)  # (b,)
        with torch.no_grad():
            similarity = (emb * targets[:, None]).sum(dim=-1).mean(dim=1)  # (b,)
        for trace, value in zip(traces, similarity.tolist(), strict=True):
            trace.append(value)
        # Gradients for z only: the frozen models' weights never get a .grad.
        (grad,) = torch.autograd.grad(per_clip.sum(), [z])
        z.grad = grad
        optimizer.step()
        with torch.no_grad():
            z.copy_(torch.maximum(torch.minimum(z, z_max), z_min))
        if (step + 1) % max(1, cfg.steps // 10) == 0 or step + 1 == cfg.steps:
            log(f"  step {step + 1}/{cfg.steps}: mean cutout similarity {similarity.mean():.4f}")

    # The saved image, and its similarity as a reader of the PNG would measure it.
    with torch.no_grad():
        final = synthesize(vqgan, z)
    images = [to_pil(img) for img in final]
    with torch.no_grad():
        final_emb = encoder.encode_images(images)  # (b, D)
        final_sim = (final_emb.to(device) * targets).sum(dim=-1).tolist()
    return [
        GenerationResult(
            clip_id=clip_ids[i],
            label=labels[i],
            seed=seeds[i],
            image=images[i],
            trace=traces[i],
            final_similarity=float(final_sim[i]),
            target_norm=float(norms[i]),
            steps=cfg.steps,
            notes=notes[i],
        )
        for i in range(b)
    ]


def _save_progress(image: torch.Tensor, clip_ids: list[str], root: Path, step: int) -> None:
    for img, clip_id in zip(image, clip_ids, strict=True):
        meta = {"clip_id": clip_id, "step": str(step)}
        save_png(to_pil(img), progress_png_path(root, clip_id, step), metadata=meta)


__all__ = [
    "INITS",
    "MIN_TARGET_NORM",
    "GenerateConfig",
    "GenerationResult",
    "clamp_inward",
    "downsample_factor",
    "generate",
    "init_random_tokens",
    "latent_grid",
    "spherical_distance_sq",
    "synthesize",
    "to_pil",
]
