"""The training and evaluation stages as the workflow runs them: config blocks in, artefacts out.

Both stages read the same data (a dataset's manifest plus its media and embedding shards)
and check every embedding file against the configured image encoder's fingerprint.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from wavbrivl.audio.encoder import AudioEncoderConfig, build_audio_encoder
from wavbrivl.audio.tiny import save_tiny_wavlm
from wavbrivl.configs import from_mapping
from wavbrivl.devices import pick_device
from wavbrivl.train.data import TrainData
from wavbrivl.train.loop import TrainConfig, embed_batches, train
from wavbrivl.train.moco import CrossModalMoCo, MoCoConfig

#: Keys of the workflow's ``train`` block that are not TrainConfig fields.
WORKFLOW_ONLY_KEYS = ("run", "dataset", "device", "gpus")

Log = Callable[[str], None]


def train_config(block: dict[str, Any]) -> TrainConfig:
    values = {k: v for k, v in block.items() if k not in WORKFLOW_ONLY_KEYS}
    return from_mapping(TrainConfig, values, "train config")


def prepare_tiny_wavlm(out_dir: str | Path, seed: int) -> Path:
    """The demo's WavLM: a tiny random model saved in the official HF format."""
    return save_tiny_wavlm(out_dir, seed=seed)


def build_model(audio: dict[str, Any], loss: dict[str, Any], *, wavlm: str, image_dim: int):
    audio_values = {k: v for k, v in audio.items() if k not in ("wavlm", "tiny_seed")}
    audio_cfg = from_mapping(AudioEncoderConfig, {**audio_values, "wavlm": wavlm}, "audio config")
    moco_cfg = from_mapping(MoCoConfig, {**loss, "image_dim": image_dim}, "loss config")
    return CrossModalMoCo(build_audio_encoder(audio_cfg), moco_cfg)


def run_training(
    *,
    manifest: str | Path,
    shards: Sequence[tuple[str | Path, str | Path]],
    out_dir: str | Path,
    audio: dict[str, Any],
    loss: dict[str, Any],
    train_block: dict[str, Any],
    wavlm: str,
    image_dim: int,
    fingerprint: str,
    log: Log,
) -> Path:
    """Train the audio encoder; returns ``<out_dir>/audio_encoder.pt``."""
    cfg = train_config(train_block)
    device = pick_device(train_block.get("device", "auto"))
    torch.manual_seed(cfg.seed)
    model = build_model(audio, loss, wavlm=wavlm, image_dim=image_dim)
    data = TrainData(
        manifest,
        shards,
        cfg.data_config(),
        fingerprint=fingerprint,
        image_dim=image_dim,
        pin_memory=device.type == "cuda",
    )
    log(f"device {device}; {data.describe()}")
    return train(model, data, cfg, Path(out_dir), device=device, log=log)


def run_evaluation(
    *,
    model_path: str | Path,
    manifest: str | Path,
    shards: Sequence[tuple[str | Path, str | Path]],
    out_dir: str | Path,
    train_block: dict[str, Any],
    wavlm: str,
    fingerprint: str,
    log: Log,
) -> dict:
    """Retrieval on the test split with g(audio) (the downstream embedding) against the
    clean frames' image embeddings; writes metrics.json, metrics.tsv and retrieval.png."""
    from wavbrivl.evaluate.retrieval import retrieval_metrics, write_retrieval_report
    from wavbrivl.train.checkpoint import load_trained_model

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
