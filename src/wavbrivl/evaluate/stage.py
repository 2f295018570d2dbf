"""The evaluation stage as the workflow runs it: a trained model and the test split in,
retrieval metrics out.

The test clips' image embeddings must come from the image encoder the model was trained
against: ``audio_encoder.pt`` records its fingerprint, every embedding file carries its own.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from wavbrivl.devices import pick_device
from wavbrivl.embed.store import FingerprintMismatch, read_common_header
from wavbrivl.evaluate.report import write_retrieval_report
from wavbrivl.evaluate.retrieval import retrieval_metrics
from wavbrivl.train.checkpoint import build_trained_model, read_audio_encoder
from wavbrivl.train.config import TrainConfig
from wavbrivl.train.data import TrainData
from wavbrivl.train.validation import embed_batches


def run_evaluation(
    *,
    model_path: str | Path,
    manifest: str | Path,
    shards: Sequence[tuple[str | Path, str | Path]],
    out_dir: str | Path,
    train_block: dict[str, Any],
    wavlm: str,
    log: Callable[[str], None],
) -> dict:
    """Retrieval on the test split with g(audio) (the downstream embedding) against the
    clean frames' image embeddings; writes metrics.json, metrics.tsv and retrieval.png."""
    cfg = TrainConfig.from_block(train_block)
    device = pick_device(train_block.get("device", "auto"))
    state = read_audio_encoder(model_path)
    fingerprint = trained_fingerprint(state, model_path, [e for e, _ in shards], log)
    model = build_trained_model(state, device=device, wavlm=wavlm)
    data = TrainData(
        manifest,
        shards,
        cfg.data,
        fingerprint=fingerprint,
        image_dim=model.cfg.image_dim,
        check_train=False,  # evaluation needs test clips, not a full training batch
    )
    audio_emb, image_emb, clip_ids, labels = embed_batches(
        model, data.eval_batches("test"), device=device
    )
    metrics = retrieval_metrics(audio_emb, image_emb, labels)
    metrics["split"] = cfg.data.test_split
    metrics["model"] = str(model_path)
    write_retrieval_report(metrics, out_dir)
    log(json.dumps({k: metrics[k] for k in ("n_clips", "n_classes")}))
    return metrics


def trained_fingerprint(
    state: dict[str, Any], model_path: str | Path, embeddings: Sequence[str | Path], log
) -> str | None:
    """The image encoder fingerprint recorded in the model, once the embedding files are
    checked against it (and against each other); None for a model that records none."""
    header = read_common_header(embeddings)
    expected = state.get("image_encoder_fingerprint")
    if expected is None:
        log(
            f"WARNING: {model_path} records no image encoder fingerprint (trained before it was "
            "recorded): the embeddings are checked against each other only"
        )
    elif header.fingerprint != expected:
        raise FingerprintMismatch(
            f"{model_path} was trained against image encoder {expected[:16]}..., but "
            f"{header.path} holds embeddings of image encoder {header.fingerprint[:16] or '(none)'}...; "
            "retrain on these embeddings, or evaluate with the embeddings it was trained on"
        )
    return expected
