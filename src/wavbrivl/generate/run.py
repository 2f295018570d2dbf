"""The generation stage: media clips -> audio targets -> guided images + their records.

``generate_for_clips`` is the one call the workflow makes. It writes into ``out_dir``::

    <clip_id>.png          the image, text chunks: clip id, label, seed, steps, similarity,
                           target norm, fingerprints of the three models
    progress/<clip_id>/    frames every ``save_every`` steps (when asked for)
    trace.tsv              clip_id, step, similarity (mean cutout cosine before each update)
    targets.parquet        clip_id, label, embedding (unit, fixed_size_list<float32>[D]),
                           target_norm
    generation.json        config, fingerprints, per-clip label / seed / similarity / norm,
                           and the clips skipped with their reason

Clips whose media row is not ``ok`` or whose audio cannot be decoded or embedded are
skipped and listed with the reason; a configuration error (wrong embedding size, a clip
missing from the manifest) stops before any optimisation.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F

from wavbrivl.atomic import write_table_atomic, write_text_atomic
from wavbrivl.clip_ids import check_clip_id
from wavbrivl.extract.media import decode_audio
from wavbrivl.generate.loop import GenerateConfig, GenerationResult, generate
from wavbrivl.generate.png import save_png
from wavbrivl.hashing import seeded_int, sha256_of
from wavbrivl.status import OK

PathLike = str | os.PathLike
GENERATION_FORMAT = "wavbrivl.generation/1"
SAMPLE_RATE = 16000


def clip_seed(base_seed: int, clip_id: str) -> int:
    """A clip's generation seed: stable across runs, machines and batch composition."""
    return seeded_int("generate", base_seed, clip_id, bits=63)


@torch.no_grad()
def audio_targets(
    model: torch.nn.Module, waveforms: torch.Tensor, lengths: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """g(audio) before and after normalisation: -> (unit targets (B, D), norms (B,)).

    ``CrossModalMoCo.embed_audio`` returns only the unit vector; the norm says whether the
    audio gave the target a direction at all (silence can give a near-zero g(audio)). This
    mirrors ``embed_audio`` from the model's parts (a test checks they agree).
    """
    was_training = model.training
    model.train(False)
    try:
        audio = F.normalize(model.audio_encoder.encode_audio(waveforms, lengths).float(), dim=-1)
        raw = model.g(audio).float()  # (B, D)
    finally:
        model.train(was_training)
    return F.normalize(raw, dim=-1), raw.norm(dim=-1)


def read_labels(manifest_path: PathLike) -> dict[str, str]:
    """clip_id -> display label (label names joined by "; ", else the label ids)."""
    table = pq.read_table(manifest_path, columns=["clip_id", "labels", "label_names"])
    labels = {}
    for clip_id, ids, names in zip(
        *(table[c].to_pylist() for c in table.column_names), strict=True
    ):
        labels[clip_id] = "; ".join(names or ids or [])
    return labels


def read_generation_audio(
    media_paths: Sequence[PathLike], clip_ids: Sequence[str] | None
) -> tuple[dict[str, bytes], dict[str, str]]:
    """(clip_id -> FLAC bytes of ok clips, clip_id -> reason for the others) from media shards."""
    audio: dict[str, bytes] = {}
    skipped: dict[str, str] = {}
    wanted = None if clip_ids is None else set(clip_ids)
    for path in media_paths:
        table = pq.read_table(path, columns=["clip_id", "status", "reason", "audio"])
        for clip_id, status, reason, flac in zip(
            *(table[c].to_pylist() for c in table.column_names), strict=True
        ):
            if wanted is not None and clip_id not in wanted:
                continue
            if clip_id in audio or clip_id in skipped:
                raise ValueError(f"clip {clip_id!r} appears twice in the media shards ({path})")
            if status == OK and flac:
                audio[clip_id] = flac
            else:
                skipped[clip_id] = (
                    f"media status {status}: {reason}" if status != OK else "no audio"
                )
    for clip_id in sorted((wanted or set()) - audio.keys() - skipped.keys()):
        skipped[clip_id] = "not in the media shards"
    return audio, skipped


def generate_for_clips(
    model_path: PathLike,
    media_paths: PathLike | Sequence[PathLike],
    manifest_path: PathLike,
    out_dir: PathLike,
    vqgan: torch.nn.Module,
    image_encoder: Any,
    cfg: GenerateConfig,
    *,
    vqgan_fingerprint: str | None = None,
    clip_ids: Sequence[str] | None = None,
    device: torch.device | str = "cpu",
    wavlm: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Generate an image for every ok clip of ``media_paths`` (or only ``clip_ids``).

    ``model_path`` is the trained ``audio_encoder.pt`` (``wavlm`` overrides its WavLM folder);
    ``vqgan`` and ``image_encoder`` are built by the caller (``image_encoder`` on ``device``),
    ``vqgan_fingerprint`` identifies the VQGAN weights (default: ``vqgan.fingerprint``, set by
    ``wavbrivl.vqgan``'s loaders). Returns the generation.json record.
    """
    from wavbrivl.train.checkpoint import load_trained_model

    device = torch.device(device)
    out_dir = Path(out_dir)
    vqgan_fingerprint = vqgan_fingerprint or getattr(vqgan, "fingerprint", None)
    if not vqgan_fingerprint:
        raise ValueError(
            "the VQGAN has no fingerprint (build it with wavbrivl.vqgan.load_vqgan or "
            "build_tiny_vqgan, or pass vqgan_fingerprint=)"
        )
    media_paths = [media_paths] if isinstance(media_paths, str | os.PathLike) else media_paths
    model = load_trained_model(model_path, device=device, wavlm=wavlm)
    if model.cfg.image_dim != image_encoder.dim:
        raise ValueError(
            f"{model_path}: the audio model embeds into {model.cfg.image_dim} dimensions, the "
            f"image encoder {image_encoder.name!r} into {image_encoder.dim}; generate with the "
            "image encoder the model was trained against"
        )
    fingerprints = {
        "vqgan": vqgan_fingerprint,
        "image_encoder": image_encoder.fingerprint,
        "audio_model": sha256_of(model_path),
    }

    # Inputs: audio of the ok clips and their labels.
    audio, skipped = read_generation_audio(media_paths, clip_ids)
    labels = read_labels(manifest_path)
    missing = sorted(set(audio) - labels.keys())
    if missing:
        raise ValueError(
            f"{manifest_path}: no manifest row for {len(missing)} generation clip(s), e.g. "
            f"{missing[:5]}; is it the manifest of the same dataset?"
        )

    # Targets, one clip at a time (exact lengths, and one bad clip costs only itself).
    ids: list[str] = []
    targets: list[torch.Tensor] = []
    norms: list[float] = []
    for clip_id in sorted(audio):
        check_clip_id(clip_id)  # it becomes a file name
        try:
            wave = torch.from_numpy(decode_audio(audio[clip_id], expect_rate=SAMPLE_RATE))
            target, norm = audio_targets(
                model, wave[None].to(device), torch.tensor([len(wave)], device=device)
            )
        except (ValueError, RuntimeError) as exc:  # undecodable or too short for WavLM
            skipped[clip_id] = f"audio not usable: {exc}"
            log(f"WARNING: skipping {clip_id}: {exc}")
            continue
        ids.append(clip_id)
        targets.append(target[0].cpu())
        norms.append(float(norm[0]))
    del model  # free its memory before the optimisation

    seeds = [clip_seed(cfg.seed, clip_id) for clip_id in ids]
    results = (
        generate(
            vqgan,
            image_encoder,
            torch.stack(targets),
            cfg,
            clip_ids=ids,
            labels=[labels[c] for c in ids],
            seeds=seeds,
            device=device,
            target_norms=norms,
            progress_dir=out_dir / "progress" if cfg.save_every else None,
            log=log,
        )
        if ids
        else []
    )
    if not ids:
        log("WARNING: no clip has usable audio; nothing generated")

    out_dir.mkdir(parents=True, exist_ok=True)
    for result in results:
        save_png(
            result.image,
            out_dir / f"{result.clip_id}.png",
            metadata=png_metadata(result, fingerprints),
        )
    write_trace(out_dir / "trace.tsv", results)
    write_targets(
        out_dir / "targets.parquet",
        ids,
        [labels[c] for c in ids],
        targets,
        norms,
        dim=image_encoder.dim,
        fingerprints=fingerprints,
    )
    record = generation_record(cfg, fingerprints, vqgan, image_encoder, results, skipped)
    write_text_atomic(
        out_dir / "generation.json", json.dumps(record, indent=1, sort_keys=True) + "\n"
    )
    return record


# -- writers ----------------------------------------------------------------------------------


def png_metadata(result: GenerationResult, fingerprints: dict[str, str]) -> dict[str, str]:
    """The text chunks of a generated PNG."""
    return {
        "clip_id": result.clip_id,
        "label": result.label,
        "seed": str(result.seed),
        "steps": str(result.steps),
        "final_similarity": f"{result.final_similarity:.6f}",
        "target_norm": f"{result.target_norm:.6g}",
        **{f"{name}_fingerprint": value for name, value in fingerprints.items()},
    }


def write_trace(path: Path, results: Sequence[GenerationResult]) -> None:
    """trace.tsv: one row per clip and step."""
    lines = ["clip_id\tstep\tsimilarity"]
    for result in results:
        lines += [f"{result.clip_id}\t{step}\t{sim:.6f}" for step, sim in enumerate(result.trace)]
    write_text_atomic(path, "\n".join(lines) + "\n")


def write_targets(
    path: Path,
    clip_ids: Sequence[str],
    labels: Sequence[str],
    targets: Sequence[torch.Tensor],
    norms: Sequence[float],
    *,
    dim: int,
    fingerprints: dict[str, str],
) -> None:
    """targets.parquet: the unit target per clip, for the sheets' automatic score."""
    flat = np.zeros((len(targets), dim), np.float32)  # (N, D); N may be 0
    for row, target in zip(flat, targets, strict=True):
        row[:] = target.numpy()
    table = pa.table(
        {
            "clip_id": pa.array(list(clip_ids), pa.string()),
            "label": pa.array(list(labels), pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(
                pa.array(flat.reshape(-1), pa.float32()), dim
            ),
            "target_norm": pa.array(list(norms), pa.float64()),
        }
    )
    meta = {f"wavbrivl.{k}_fingerprint": v for k, v in fingerprints.items()} | {
        "wavbrivl.dim": str(dim)
    }
    write_table_atomic(path, table.replace_schema_metadata(meta))


def generation_record(
    cfg: GenerateConfig,
    fingerprints: dict[str, str],
    vqgan: torch.nn.Module,
    image_encoder: Any,
    results: Sequence[GenerationResult],
    skipped: dict[str, str],
) -> dict[str, Any]:
    """generation.json's content."""
    return {
        "format": GENERATION_FORMAT,
        "config": cfg.to_dict(),
        "fingerprints": fingerprints,
        "vqgan": getattr(vqgan, "name", type(vqgan).__name__),
        "image_encoder": image_encoder.name,
        "clips": [
            {
                "clip_id": r.clip_id,
                "label": r.label,
                "seed": r.seed,
                "png": f"{r.clip_id}.png",
                "final_similarity": r.final_similarity,
                "initial_similarity": r.trace[0],
                "target_norm": r.target_norm,
                "notes": r.notes,
            }
            for r in results
        ],
        "skipped": [{"clip_id": c, "reason": skipped[c]} for c in sorted(skipped)],
    }


__all__ = [
    "GENERATION_FORMAT",
    "audio_targets",
    "clip_seed",
    "generate_for_clips",
    "generation_record",
    "png_metadata",
    "read_generation_audio",
    "read_labels",
    "write_targets",
    "write_trace",
]
