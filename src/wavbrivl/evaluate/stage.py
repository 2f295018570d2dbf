"""The evaluation stage as the workflow runs it: a trained model and the test split in,
retrieval metrics out."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from wavbrivl.devices import pick_device
from wavbrivl.evaluate.retrieval import retrieval_metrics, write_retrieval_report
from wavbrivl.train.checkpoint import load_trained_model
from wavbrivl.train.data import TrainData
from wavbrivl.train.loop import embed_batches
from wavbrivl.train.stage import train_config


def run_evaluation(
    *,
    model_path: str | Path,
    manifest: str | Path,
    shards: Sequence[tuple[str | Path, str | Path]],
    out_dir: str | Path,
    train_block: dict[str, Any],
    wavlm: str,
    fingerprint: str,
    log: Callable[[str], None],
) -> dict:
    """Retrieval on the test split with g(audio) (the downstream embedding) against the
    clean frames' image embeddings; writes metrics.json, metrics.tsv and retrieval.png."""
    cfg = train_config(train_block)
    device = pick_device(train_block.get("device", "auto"))
    model = load_trained_model(model_path, device=device, wavlm=wavlm)
    image_dim = model.cfg.image_dim
    data = TrainData(
        manifest,
        shards,
        cfg.data_config(),
        fingerprint=fingerprint,
        image_dim=image_dim,
        check_train=False,  # evaluation needs test clips, not a full training batch
    )
    audio_emb, image_emb, clip_ids, labels = embed_batches(
        model, data.eval_batches("test"), device=device
    )
    metrics = retrieval_metrics(audio_emb, image_emb, labels)
    metrics["split"] = cfg.test_split
    metrics["model"] = str(model_path)
    write_retrieval_report(metrics, out_dir)
    log(json.dumps({k: metrics[k] for k in ("n_clips", "n_classes")}))
    return metrics
