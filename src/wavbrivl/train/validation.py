"""Embedding held-out clips with the model being trained, and scoring them by retrieval.

:func:`embed_batches` is also what the evaluation stage embeds the test split with.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from wavbrivl.train.log import cell


def _instance_r1(metrics: dict, direction: str, field: str = "value") -> float | None:
    """Instance-level R@1 (or its chance level) of one direction from
    :func:`~wavbrivl.evaluate.retrieval.retrieval_metrics`' nested dict."""
    node: Any = metrics
    for key in (direction, "instance", "R@1", field):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return float(node)


@torch.no_grad()
def embed_batches(
    model: torch.nn.Module,
    batches: Iterator[dict[str, Any]],
    *,
    device: torch.device,
    stop: Callable[[], bool] = lambda: False,
) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """``(audio (N, D), image (N, D), clip_ids, labels)``: the downstream audio embedding
    (``embed_audio``: g(audio), L2-normalised, image space) beside the clips' image embeddings."""
    was_training = model.training
    model.eval()
    audio, image, ids, labels = [], [], [], []
    try:
        for batch in batches:
            if stop():
                break
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
                emb = model.embed_audio(batch["waveforms"].to(device), batch["lengths"].to(device))
            audio.append(emb.float().cpu().numpy())
            image.append(F.normalize(batch["image_emb"].float(), dim=-1).numpy())
            ids += batch["clip_id"]
            labels += batch["label"]
    finally:
        model.train(was_training)
    if not audio:
        return np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32), [], []
    return np.concatenate(audio), np.concatenate(image), ids, labels


def validate(
    model: torch.nn.Module,
    data: Any,
    *,
    max_clips: int,
    device: torch.device,
    stop: Callable[[], bool] = lambda: False,
) -> dict | None:
    """Retrieval metrics on the validation subset of ``data`` (a
    :class:`~wavbrivl.train.loop.BatchSource`); None when there is no val clip."""
    if data.split_size("val") == 0:
        return None
    from wavbrivl.evaluate.retrieval import retrieval_metrics

    audio, image, _, labels = embed_batches(
        model, data.eval_batches("val", max_clips=max_clips), device=device, stop=stop
    )
    if len(labels) < 2:
        return None
    return retrieval_metrics(audio, image, labels)


def val_row(step: int, metrics: dict) -> dict[str, Any]:
    """The training log's row of one validation."""
    return {
        "kind": "val",
        "step": step,
        "val_r1_a2i": _instance_r1(metrics, "audio_to_image"),
        "val_r1_i2a": _instance_r1(metrics, "image_to_audio"),
        "val_r1_chance": _instance_r1(metrics, "audio_to_image", "chance"),
    }


def describe_validation(row: dict[str, Any], metrics: dict) -> str:
    return (
        f"step {row['step']}: validation R@1 audio->image {cell(row['val_r1_a2i'])}, image->audio "
        f"{cell(row['val_r1_i2a'])} (chance {cell(row['val_r1_chance'])}, {metrics['n_clips']} clips)"
    )
