"""Do the demo's generated pictures show the sound? Their class agreement, as a record.

Each generated image is embedded by the frozen image encoder and compared with the centroid
of each class's real frames (the generation clips' own extracted frames, embedded the same
way); :func:`wavbrivl.generate.agreement.class_agreement` gives the share nearest their own
class and the chance level. The demo prints the one-line summary and its report holds the
record (rule ``score_demo_pictures``; docs/stages.md).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from wavbrivl.extract.media import decode_frame, iter_media_rows
from wavbrivl.generate.agreement import class_agreement
from wavbrivl.generate.records import load_generation_run
from wavbrivl.manifest.labels import read_clip_labels
from wavbrivl.sheets.auto2afc import embed_images

PathLike = str | os.PathLike


def real_frame_embeddings(
    encoder: Any, media_paths: Sequence[PathLike], clip_ids: set[str], batch_size: int = 16
) -> tuple[list[str], np.ndarray]:
    """``(ids, (N, D))``: the clean frames of ``clip_ids`` (status ok) embedded by ``encoder``."""
    ids: list[str] = []
    blocks: list[np.ndarray] = []
    for path in media_paths:
        for rows in iter_media_rows(path, ["frame"], ok_only=True, batch_rows=batch_size):
            keep = [
                (c, f) for c, f in zip(rows["clip_id"], rows["frame"], strict=True) if c in clip_ids
            ]
            if not keep:
                continue
            with torch.no_grad():
                emb = encoder.encode_images([decode_frame(f) for _, f in keep])
            blocks.append(emb.detach().float().cpu().numpy())
            ids += [c for c, _ in keep]
    if not ids:
        raise ValueError(
            f"no ok real frame of the generated clips in {[str(p) for p in media_paths]}"
        )
    return ids, np.concatenate(blocks)


def score_pictures(
    run_name: str,
    run_folder: PathLike,
    media_paths: Sequence[PathLike],
    manifest_path: PathLike,
    encoder: Any,
) -> dict[str, Any]:
    """The class-agreement record of one generation run folder."""
    run = load_generation_run(run_name, run_folder)
    labels = read_clip_labels(manifest_path)
    unknown = sorted(c for c in run.clips if c not in labels)
    if unknown:
        raise KeyError(f"{manifest_path}: no labels for generated clip(s) {unknown[:10]}")
    gen = embed_images(encoder, {cid: clip.image_path for cid, clip in run.clips.items()})
    gen_ids = list(gen)
    real_ids, real = real_frame_embeddings(encoder, media_paths, set(gen_ids))
    result = class_agreement(
        np.stack([gen[c] for c in gen_ids]),
        [labels[c].first for c in gen_ids],
        real,
        [labels[c].first for c in real_ids],
    )
    hits = [c for c, p in zip(gen_ids, result.predicted, strict=True) if p == labels[c].first]
    return {
        "run": run_name,
        "folder": str(run_folder),
        "class_agreement": result.share,
        "chance": result.chance,
        "n_images": result.n,
        "n_agreeing": len(hits),
        "n_real_frames": len(real_ids),
        "per_class": result.per_class,
        "nearest_class": dict(zip(gen_ids, result.predicted, strict=True)),
        "encoder": encoder.name,  # every image encoder has both (wavbrivl.encoders)
        "encoder_fingerprint": encoder.fingerprint,
    }


def summary_line(record: dict[str, Any]) -> str:
    """One line for the terminal and the log."""
    return (
        f"demo pictures (run {record['run']}): class agreement {record['class_agreement']:.2f} "
        f"({record['n_agreeing']} of {record['n_images']} generated images nearest their own "
        f"class's real frames; chance {record['chance']:.3f})"
    )


__all__ = ["real_frame_embeddings", "score_pictures", "summary_line"]
