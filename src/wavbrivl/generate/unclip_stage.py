"""The unCLIP generation stage: media clips -> g(audio) -> Stable unCLIP images + records.

``run_unclip_generation`` is the workflow's call (``generate.method: unclip``);
``unclip_for_clips`` does the work on a loaded pipeline and image encoder. Checks come
before any denoising: the pipeline folder (every component), the run's image space against
the pipeline's (fingerprint and dimension), the audio model's against the run's. Clips whose
audio is unusable are skipped with their reason, as on the VQGAN path
(:mod:`wavbrivl.generate.stage`); the folder is the same (:mod:`wavbrivl.generate.records`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from wavbrivl.devices import pick_device
from wavbrivl.extract.media import collect_clip_audio, decode_frame, iter_media_rows
from wavbrivl.generate.stage import _as_list, _display_labels, clip_seed, load_audio_model
from wavbrivl.generate.targets import targets_for_clips
from wavbrivl.generate.unclip import (
    UnclipConfig,
    UnclipPipeline,
    check_same_space,
    generate_unclip,
    load_unclip_pipeline,
    reference_norm,
    unclip_record,
    write_unclip_folder,
)

PathLike = str | os.PathLike


def run_unclip_generation(
    *,
    model_path: PathLike,
    media_paths: Sequence[PathLike],
    manifest_path: PathLike,
    out_dir: PathLike,
    generate_block: dict[str, Any],
    embed_block: dict[str, Any],
    wavlm: str | None,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Load the configured pipeline and image encoder, then :func:`unclip_for_clips`."""
    from wavbrivl.encoders.from_config import encoder_from_config

    device = pick_device(generate_block.get("device", "auto"))
    cfg = UnclipConfig.from_generate_block(generate_block)
    pipeline = load_unclip_pipeline(cfg.pipeline, dtype=cfg.dtype, device=device)
    encoder = encoder_from_config({**embed_block, "device": str(device)})
    log(f"generating with {pipeline.name} ({cfg.dtype}) and {encoder.name} on {device}")
    return unclip_for_clips(
        model_path,
        list(media_paths),
        manifest_path,
        out_dir,
        pipeline,
        encoder,
        cfg,
        clip_ids=generate_block.get("clip_ids"),
        wavlm=wavlm,
        log=log,
    )


def unclip_for_clips(
    model_path: PathLike,
    media_paths: PathLike | Sequence[PathLike],
    manifest_path: PathLike,
    out_dir: PathLike,
    pipeline: UnclipPipeline,
    image_encoder: Any,
    cfg: UnclipConfig,
    *,
    clip_ids: Sequence[str] | None = None,
    wavlm: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """An image for every ok clip of ``media_paths`` (or only ``clip_ids``); the record."""
    check_same_space(image_encoder, pipeline)
    media_paths = _as_list(media_paths)
    model, audio_fingerprint = load_audio_model(model_path, image_encoder, pipeline.device, wavlm)
    fingerprints = {
        "unclip": pipeline.fingerprint,
        "image_encoder": image_encoder.fingerprint,
        "audio_model": audio_fingerprint,
    }
    audio, skipped = collect_clip_audio(media_paths, clip_ids)
    labels = _display_labels(manifest_path, audio)
    targets, unusable = targets_for_clips(model, audio, device=pipeline.device, log=log)
    skipped |= unusable
    del model

    if cfg.embed_norm is not None:
        embed_norm = {"value": float(cfg.embed_norm), "source": "generate.unclip.embed_norm"}
    elif targets.clip_ids:
        frames = clip_frames(media_paths, targets.clip_ids)
        scale = reference_norm(pipeline, [frames[c] for c in targets.clip_ids])
        source = f"mean over the real frames of {len(frames)} generated clip(s)"
        embed_norm = {"value": scale, "source": source}
    else:
        embed_norm = {"value": None, "source": "no clip to generate"}
    if not targets.clip_ids:
        log("WARNING: no clip has usable audio; nothing generated")
        results = []
    else:
        log(f"image embeddings scaled to {embed_norm['value']:.4g} ({embed_norm['source']})")
        results = generate_unclip(
            pipeline,
            image_encoder,
            targets.vectors,
            targets.norms,
            cfg,
            clip_ids=targets.clip_ids,
            labels=[labels[c] for c in targets.clip_ids],
            seeds=[clip_seed(cfg.seed, c) for c in targets.clip_ids],
            scale=embed_norm["value"],
            log=log,
        )
    record = unclip_record(cfg, fingerprints, pipeline, image_encoder, results, skipped, embed_norm)
    write_unclip_folder(Path(out_dir), results, targets, labels, fingerprints, record)
    return record


def clip_frames(media_paths: Sequence[PathLike], clip_ids: Sequence[str]) -> dict[str, Any]:
    """``{clip_id: PIL frame}`` of ``clip_ids`` from the media shards (ok rows)."""
    wanted = set(clip_ids)
    frames = {}
    for path in media_paths:
        for rows in iter_media_rows(path, ["frame"], ok_only=True):
            for clip_id, jpeg in rows[["clip_id", "frame"]].itertuples(index=False):
                if clip_id in wanted and jpeg:
                    frames[clip_id] = decode_frame(jpeg)
    missing = sorted(wanted - frames.keys())
    if missing:
        raise ValueError(
            f"no real frame for clip(s) {missing[:5]} in {list(map(str, media_paths))}"
        )
    return frames


__all__ = ["clip_frames", "run_unclip_generation", "unclip_for_clips"]
