"""Metrics on a real generation folder: the tiny frozen encoder, the tiny VQGAN, a trained-format
audio model, media shards with frames and audio (silence, a broken clip), as the workflow's
generate_images job runs them (images first, then ``run_metrics`` on the folder)."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from test_generate import QUIET, SR, flac_bytes, save_tiny_audio_model, tiny_cfg

from wavbrivl.encoders.registry import build_tiny
from wavbrivl.generate import generate_for_clips
from wavbrivl.generate.metrics import MetricsConfig, run_metrics
from wavbrivl.vqgan import build_tiny_vqgan


def jpeg(rgb) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), rgb).save(buf, format="JPEG")
    return buf.getvalue()


@pytest.mark.slow  # about 30 s alone, longer on a shared machine
def test_metrics_of_a_generated_folder_with_silence_and_a_broken_clip(tmp_path):
    torch.set_num_threads(2)
    t = np.arange(SR) / SR
    rows = [  # clip, status, frame colour, audio
        ("tone_a", "ok", (250, 20, 20), flac_bytes(0.5 * np.sin(2 * np.pi * 440 * t))),
        ("tone_b", "ok", (240, 40, 30), flac_bytes(0.5 * np.sin(2 * np.pi * 660 * t))),
        ("silent_0", "ok", (20, 20, 240), flac_bytes(np.zeros(SR))),
        ("broken_0", "ok", (20, 240, 20), b"not a flac file"),
    ]
    media = tmp_path / "media.parquet"
    pq.write_table(
        pa.table(
            {
                "clip_id": [r[0] for r in rows],
                "status": [r[1] for r in rows],
                "reason": [""] * len(rows),
                "frame": pa.array([jpeg(r[2]) for r in rows], pa.binary()),
                "audio": pa.array([r[3] for r in rows], pa.binary()),
            }
        ),
        media,
    )
    manifest = tmp_path / "manifest.parquet"
    pq.write_table(
        pa.table(
            {
                "clip_id": [r[0] for r in rows],
                "labels": [["/m/tone"], ["/m/tone"], ["/m/silence"], ["/m/noise"]],
                "label_names": [["Tone"], ["Tone"], ["Silence"], ["Noise"]],
            }
        ),
        manifest,
    )
    encoder = build_tiny(seed=0)
    out = tmp_path / "run"
    generate_for_clips(
        save_tiny_audio_model(tmp_path),
        media,
        manifest,
        out,
        build_tiny_vqgan(seed=0),
        encoder,
        tiny_cfg(steps=2, batch_clips=3),
        log=QUIET,
    )
    metrics = run_metrics(out, [media], manifest, encoder, MetricsConfig(bootstrap_samples=50))

    generated = sorted(p.stem for p in out.glob("*.png"))
    assert generated == ["silent_0", "tone_a", "tone_b"]  # broken_0 was skipped by generation
    assert metrics["n_generated"] == 3
    assert metrics["n_real_frames"] == 4  # every ok frame, the broken clip's too
    scored = set(metrics["ais"]["per_clip"]) | set(metrics["ais"]["unscored"])
    assert scored == set(generated)
    assert set(metrics["iis"]["per_clip"]) == set(generated)
    agree = metrics["class_agreement"]
    assert agree["chance"] == 1 / 3  # Tone, Silence, Noise have real frames
    assert agree["n"] == 3
    for value in metrics["iis"]["per_clip"].values():
        assert -1.0 <= value <= 1.0
    assert metrics["fid_kid"]["fid"] is None
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["ais"]["n"] == metrics["ais"]["n"]
    assert (out / "metrics.tsv").read_text().count("\n") == 6
