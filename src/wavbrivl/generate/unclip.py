"""Stable unCLIP generation from g(audio): ``generate.method: unclip`` (docs/generation-unclip.md).

diffusers' ``StableUnCLIPImg2ImgPipeline`` is loaded from a local folder in diffusers' layout
(``model_index.json`` + nine component folders; nothing is fetched) and conditioned through
``image_embeds=`` on each clip's g(audio), rescaled to the length the pipeline's own image
encoder gives real pictures::

    target  t = g(audio) / |g(audio)|                    (N, D) unit rows (wavbrivl.generate.targets)
    scale   s = mean |image_encoder(frame)|               over the generated clips' real frames
                (or generate.unclip.embed_norm)
    embeds  e = s * t                                    (N, D); a silent clip (no direction): 0
    image     = pipeline(image=None, prompt="", image_embeds=e, seeded generator per clip)

No input image is given: this pipeline uses its ``image`` only to compute the image
embedding (it never starts the latents from it), and ``image_embeds`` replaces that step, so
the latents start from each clip's own seeded noise.

The run must live in the pipeline's image space: :func:`image_space_fingerprint` hashes the
vision tower (``vision_model.*`` and ``visual_projection.*`` in float32) and its output size,
which a CLIP folder's ``CLIPModel`` and the pipeline's ``CLIPVisionModelWithProjection``
share when they hold the same weights; a mismatch is refused naming both.

The run folder is the VQGAN path's (:mod:`wavbrivl.generate.records`): PNGs with metadata,
``targets.parquet``, ``generation.json``; ``trace.tsv`` has one row per clip, at the last
denoising step, with the saved image's cosine to its target.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from wavbrivl.atomic import write_text_atomic
from wavbrivl.checkpoints import state_dict_sha256
from wavbrivl.configs import check_block, default_field, from_mapping
from wavbrivl.encoders.clip_family import fingerprint_of
from wavbrivl.generate.loop import MIN_TARGET_NORM, GenerationResult
from wavbrivl.generate.png import generated_png_name
from wavbrivl.generate.records import (
    GENERATION_FORMAT,
    write_generation_folder,
)
from wavbrivl.generate.unclip_folder import KEY, check_pipeline_folder

PathLike = str | os.PathLike
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
VISION_PREFIXES = ("vision_model.", "visual_projection.")
FRAME_BATCH = 16  # real frames per image-encoder call when measuring the norm


@dataclass(frozen=True)
class UnclipConfig:
    """The ``generate.unclip`` block, with the generation's base ``seed``."""

    pipeline: str | None = default_field("unclip", "pipeline")
    steps: int = default_field("unclip", "steps")
    guidance_scale: float = default_field("unclip", "guidance_scale")
    noise_level: int = default_field("unclip", "noise_level")
    embed_norm: float | None = default_field("unclip", "embed_norm")
    batch_clips: int = default_field("unclip", "batch_clips")
    dtype: str = default_field("unclip", "dtype")
    seed: int = default_field("generate", "seed")

    def __post_init__(self) -> None:
        try:
            check_block(self, "unclip")
        except ValueError as err:  # name the key as the config spells it
            raise ValueError(str(err).replace("'unclip.", "'generate.unclip.")) from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_generate_block(cls, block: dict[str, Any]) -> UnclipConfig:
        """The workflow's ``generate`` block -> settings (``unclip`` keys and ``seed``)."""
        values = dict(block.get("unclip") or {})
        values["seed"] = block.get("seed", 0)
        return from_mapping(cls, values, "generate.unclip")


def pipeline_dtype(name: str, device: torch.device | str) -> torch.dtype:
    """The torch dtype of ``generate.unclip.dtype``; half types only on CUDA."""
    if name not in DTYPES:
        raise ValueError(f"generate.unclip.dtype: unknown {name!r}; known: {sorted(DTYPES)}")
    if name != "fp32" and torch.device(device).type != "cuda":
        raise ValueError(
            f"generate.unclip.dtype: {name} runs on CUDA only, this job runs on "
            f"{torch.device(device)}; use fp32 there"
        )
    return DTYPES[name]


# --- the pipeline folder -----------------------------------------------------------------


def image_space_fingerprint(model: torch.nn.Module) -> tuple[str, int]:
    """``(fingerprint, dim)`` of a CLIP vision tower with its projection (a ``CLIPModel`` or a
    ``CLIPVisionModelWithProjection``): equal weights give equal fingerprints."""
    state = {k: v for k, v in model.state_dict().items() if k.startswith(VISION_PREFIXES)}
    if "visual_projection.weight" not in state:
        raise ValueError(f"{type(model).__name__} has no CLIP vision tower with a projection")
    dim = int(state["visual_projection.weight"].shape[0])  # (D, hidden)
    vision = {k: state[k].float() for k in sorted(state)}
    identity = {"vision_weights_sha256": state_dict_sha256(vision), "dim": dim}
    return fingerprint_of(identity), dim


@dataclass
class UnclipPipeline:
    """A loaded pipeline with the facts the stage checks and records."""

    pipe: Any  # diffusers.StableUnCLIPImg2ImgPipeline on its device and dtype
    folder: Path
    space_fingerprint: str  # image_space_fingerprint of its image encoder
    dim: int  # the image encoder's embedding size
    fingerprint: str  # of every component's weights (float32)
    device: torch.device
    dtype: torch.dtype

    @property
    def name(self) -> str:
        return f"unclip({self.folder.resolve().name})"


def load_unclip_pipeline(
    folder: PathLike | None,
    *,
    dtype: str = "fp32",
    device: torch.device | str = "cpu",
    key: str = KEY,
) -> UnclipPipeline:
    """Load the folder's pipeline (local files only), check it, move it to ``device``."""
    from diffusers import StableUnCLIPImg2ImgPipeline

    path = check_pipeline_folder(folder, key)
    device = torch.device(device)
    torch_dtype = pipeline_dtype(dtype, device)
    pipe = StableUnCLIPImg2ImgPipeline.from_pretrained(
        path, local_files_only=True, dtype=torch.float32
    )
    space, dim = image_space_fingerprint(pipe.image_encoder)
    expected = pipe.unet.config.projection_class_embeddings_input_dim
    if expected != 2 * dim:  # image embedding + its noise-level embedding, concatenated
        raise ValueError(
            f"{key}: {path}: the unet takes {expected}-d class embeddings, the image encoder "
            f"gives {dim}-d ones ({2 * dim} expected): the folder mixes two models"
        )
    weights = {
        name: state_dict_sha256({k: v.float() for k, v in module.state_dict().items()})
        for name, module in sorted(pipe.components.items())
        if isinstance(module, torch.nn.Module)
    }
    if torch_dtype != torch.float32 or device.type != "cpu":
        pipe = pipe.to(device=device, dtype=torch_dtype)
    pipe.set_progress_bar_config(disable=True)  # the stage logs per batch
    return UnclipPipeline(
        pipe=pipe,
        folder=path,
        space_fingerprint=space,
        dim=dim,
        fingerprint=fingerprint_of(weights),
        device=device,
        dtype=torch_dtype,
    )


def check_same_space(image_encoder: Any, pipeline: UnclipPipeline) -> None:
    """Refuse a run whose image encoder is not the pipeline's (fingerprint or dimension)."""
    model = getattr(image_encoder, "model", None)
    try:
        space, dim = image_space_fingerprint(model)
    except (ValueError, AttributeError):
        space, dim = "none (not an HF CLIP vision tower)", int(image_encoder.dim)
    if space != pipeline.space_fingerprint or dim != pipeline.dim:
        raise ValueError(
            f"the run's image encoder {image_encoder.name} (image space {space}, {dim}-d) is not "
            f"the unCLIP pipeline's {pipeline.folder}/image_encoder (image space "
            f"{pipeline.space_fingerprint}, {pipeline.dim}-d); train the run with embed.encoder "
            "clip on a folder with the pipeline's vision tower (docs/generation-unclip.md)"
        )


# --- conditioning and denoising ----------------------------------------------------------


@torch.no_grad()
def reference_norm(pipeline: UnclipPipeline, frames: Sequence[Any]) -> float:
    """Mean length of the pipeline's image-encoder embeddings of ``frames`` (PIL images)."""
    if not frames:
        raise ValueError(
            "no real frame to measure the image-embedding norm on; set generate.unclip.embed_norm"
        )
    pipe = pipeline.pipe
    norms = []
    for start in range(0, len(frames), FRAME_BATCH):
        batch = list(frames[start : start + FRAME_BATCH])
        pixels = pipe.feature_extractor(images=batch, return_tensors="pt").pixel_values
        pixels = pixels.to(device=pipeline.device, dtype=pipeline.dtype)
        embeds = pipe.image_encoder(pixels).image_embeds.float()  # (b, D)
        norms.append(embeds.norm(dim=-1).cpu())
    return float(torch.cat(norms).mean())


def conditioning(
    vectors: torch.Tensor, norms: Sequence[float], scale: float
) -> tuple[torch.Tensor, list[list[str]]]:
    """``(N, D)`` image embeddings ``scale * unit target`` and each clip's notes; a target
    without direction (silence) gives zeros, the pipeline's own unconditional embedding."""
    embeds = vectors.float().clone() * scale
    notes: list[list[str]] = []
    for i, norm in enumerate(norms):
        if norm < MIN_TARGET_NORM:
            embeds[i] = 0.0
            notes.append([f"target norm {norm:.3g}: no direction, the image is not guided"])
        else:
            notes.append([])
    return embeds, notes


@torch.no_grad()
def denoise(
    pipeline: UnclipPipeline, embeds: torch.Tensor, seeds: Sequence[int], cfg: UnclipConfig
) -> list[Any]:
    """One PIL image per row of ``embeds`` (B, D), each from its own seeded generator."""
    generators = [torch.Generator(device="cpu").manual_seed(int(seed)) for seed in seeds]
    output = pipeline.pipe(
        image=None,
        prompt=[""] * len(seeds),
        image_embeds=embeds.to(device=pipeline.device, dtype=pipeline.dtype),
        num_inference_steps=cfg.steps,
        guidance_scale=cfg.guidance_scale,
        noise_level=cfg.noise_level,
        generator=generators,
        output_type="pil",
    )
    return list(output.images)


def generate_unclip(
    pipeline: UnclipPipeline,
    image_encoder: Any,
    vectors: torch.Tensor,
    norms: Sequence[float],
    cfg: UnclipConfig,
    *,
    clip_ids: Sequence[str],
    labels: Sequence[str],
    seeds: Sequence[int],
    scale: float,
    log: Callable[[str], None] = print,
) -> list[GenerationResult]:
    """Images for unit targets ``vectors`` (N, D), ``cfg.batch_clips`` at a time."""
    embeds, notes = conditioning(vectors, norms, scale)
    for clip_id, note in zip(clip_ids, notes, strict=True):
        for line in note:
            log(f"WARNING: {clip_id}: {line}")
    results: list[GenerationResult] = []
    for start in range(0, len(clip_ids), cfg.batch_clips):
        part = slice(start, start + cfg.batch_clips)
        images = denoise(pipeline, embeds[part], seeds[part], cfg)
        with torch.no_grad():
            seen = image_encoder.encode_images(images).float().cpu()  # (b, D) unit
        sims = (seen * vectors[part].float()).sum(dim=-1).tolist()
        for i, (image, sim) in enumerate(zip(images, sims, strict=True)):
            k = start + i
            results.append(
                GenerationResult(
                    clip_id=clip_ids[k],
                    label=labels[k],
                    seed=int(seeds[k]),
                    image=image,
                    trace=[float(sim)],
                    final_similarity=float(sim),
                    target_norm=float(norms[k]),
                    steps=cfg.steps,
                    notes=notes[k],
                )
            )
        log(f"unclip: {len(results)}/{len(clip_ids)} images")
    return results


# --- the run folder ----------------------------------------------------------------------


def write_unclip_folder(
    out_dir: PathLike,
    results: Sequence[GenerationResult],
    targets: Any,
    labels: dict[str, str],
    fingerprints: dict[str, str],
    record: dict[str, Any],
) -> None:
    """The VQGAN path's folder (:func:`write_generation_folder`), with the unCLIP settings in
    every PNG and a trace of one row per clip: the similarity after the last step."""
    config = record["config"]
    extra = {
        "method": "unclip",
        "guidance_scale": f"{config['guidance_scale']:g}",
        "noise_level": str(config["noise_level"]),
    }
    write_generation_folder(
        Path(out_dir),
        results,
        targets,
        labels,
        fingerprints,
        record,
        png_extra=extra,
        trace_writer=write_final_trace,
    )


def write_final_trace(path: Path, results: Sequence[GenerationResult]) -> None:
    """trace.tsv with one row per clip, at its last step: denoising has no per-step target."""
    lines = ["clip_id\tstep\tsimilarity"]
    lines += [f"{r.clip_id}\t{r.steps}\t{r.final_similarity:.6f}" for r in results]
    write_text_atomic(path, "\n".join(lines) + "\n")


def unclip_record(
    cfg: UnclipConfig,
    fingerprints: dict[str, str],
    pipeline: UnclipPipeline,
    image_encoder: Any,
    results: Sequence[GenerationResult],
    skipped: dict[str, str],
    embed_norm: dict[str, Any],
) -> dict[str, Any]:
    """generation.json's content: the VQGAN record's keys, with the pipeline's facts."""
    return {
        "format": GENERATION_FORMAT,
        "method": "unclip",
        "config": cfg.to_dict(),
        "fingerprints": fingerprints,
        "pipeline": pipeline.name,
        "image_encoder": image_encoder.name,
        "image_space": pipeline.space_fingerprint,
        "embed_norm": embed_norm,
        "clips": [
            {
                "clip_id": r.clip_id,
                "label": r.label,
                "seed": r.seed,
                "png": generated_png_name(r.clip_id),
                "final_similarity": r.final_similarity,
                "initial_similarity": None,  # a diffusion run has no optimisation trace
                "target_norm": r.target_norm,
                "notes": r.notes,
            }
            for r in results
        ],
        "skipped": [{"clip_id": c, "reason": skipped[c]} for c in sorted(skipped)],
    }


__all__ = [
    "KEY",
    "UnclipConfig",
    "UnclipPipeline",
    "check_pipeline_folder",
    "check_same_space",
    "conditioning",
    "denoise",
    "generate_unclip",
    "image_space_fingerprint",
    "load_unclip_pipeline",
    "pipeline_dtype",
    "reference_norm",
    "unclip_record",
    "write_unclip_folder",
]
