"""`generate.method: unclip` in the workflow: its own folder beside the VQGAN one, its
pipeline checked before jobs start, and the rule run by Snakemake on a tiny pipeline."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import torch
import yaml
from conftest import planned_jobs, run_snakemake
from PIL import Image
from unclip_models import cached_clip_and_unclip

from wavbrivl.encoders.clip import build_clip
from wavbrivl.generate.png import read_png_metadata
from wavbrivl.sharding import shard_names
from wavbrivl.toy_guard import toy_keys

SR = 16000


def write_config(tmp_path, clip, pipeline, **generate) -> str:
    cfg = {
        "allow_toy_models": True,
        "datasets": {
            "vgg": {"format": "vggsound", "csv": "in/vgg.csv", "n_shards": 1},
            "gen": {
                "format": "vggsound",
                "csv": "in/gen.csv",
                "n_shards": 1,
                "role": "generation",
            },
        },
        "embed": {"encoder": "clip", "weights": str(clip)},
        "audio": {"wavlm": "in/wavlm"},
        "train": {"device": "cpu"},
        "generate": {
            "method": "unclip",
            "device": "cpu",
            "unclip": {"pipeline": str(pipeline), "steps": 2, "batch_clips": 2},
        }
        | generate,
    }
    (tmp_path / "in").mkdir(exist_ok=True)
    (tmp_path / "in" / "vgg.csv").write_text("abcdefghijk,0,dog barking,train\n")
    (tmp_path / "in" / "gen.csv").write_text("bcdefghijkl,0,dog barking,test\n")
    (tmp_path / "in" / "wavlm").mkdir(exist_ok=True)
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    return str(tmp_path / "cfg.yaml")


def test_unclip_plans_its_own_folder_and_the_vqgan_one_stays(tmp_path):
    clip, pipeline, _ = cached_clip_and_unclip()
    config = write_config(tmp_path, clip, pipeline)
    result = run_snakemake(tmp_path, "-n", "--configfile", config)
    jobs = planned_jobs(result)
    assert jobs["generate_images_unclip"] == 1 and "generate_images" not in jobs, jobs
    assert "results/generation/demo+unclip/gen" in result.stdout
    # Both folders can be asked for at once: no rule ambiguity, two different jobs.
    both = run_snakemake(
        tmp_path, "-n", "--configfile", config,
        "--", "results/generation/demo+unclip/gen", "results/generation/demo/gen",
    )  # fmt: skip
    jobs = planned_jobs(both)
    assert jobs["generate_images_unclip"] == 1 and jobs["generate_images"] == 1, jobs


def test_an_incomplete_pipeline_is_named_before_any_job(tmp_path):
    clip, pipeline, _ = cached_clip_and_unclip()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model_index.json").write_text(
        (pipeline / "model_index.json").read_text(encoding="utf-8")
    )
    config = write_config(tmp_path, clip, broken)
    result = run_snakemake(tmp_path, "--cores", "1", "--configfile", config, "--", "check_weights")
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert f"generate.unclip.pipeline: {broken}: missing component(s) feature_extractor" in out
    assert not (tmp_path / "results" / "generation").exists()


def test_unclip_reads_no_vqgan_so_a_tiny_one_is_no_toy():
    config = {
        "datasets": {"gen": {"role": "generation"}},
        "embed": {"encoder": "clip", "architecture": "brivl-1.0"},
        "audio": {"wavlm": "weights/wavlm"},
        "generate": {"vqgan": "tiny", "method": "unclip"},
    }
    assert toy_keys(config) == []
    config["generate"]["method"] = "vqgan"
    assert toy_keys(config) == ["generate.vqgan=tiny (random tiny VQGAN)"]


def flac_bytes(samples: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples.astype(np.float32), SR, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def jpeg_bytes(colour) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 40), colour).save(buf, format="JPEG")
    return buf.getvalue()


def prepare_inputs(tmp_path, clip) -> None:
    """What the upstream rules would have left: a manifest, a media shard, a trained run."""
    from wavbrivl.audio.encoder import AudioEncoderConfig, build_audio_encoder
    from wavbrivl.audio.tiny import TINY_AUDIO, TINY_MOCO, save_tiny_wavlm
    from wavbrivl.train.checkpoint import save_audio_encoder
    from wavbrivl.train.moco import CrossModalMoCo, MoCoConfig

    wavlm = tmp_path / "in" / "wavlm"
    save_tiny_wavlm(wavlm, seed=0)
    encoder = build_clip(clip)
    torch.manual_seed(0)
    model = CrossModalMoCo(
        build_audio_encoder(AudioEncoderConfig(wavlm=str(wavlm), **TINY_AUDIO)),
        MoCoConfig(**(TINY_MOCO | {"image_dim": encoder.dim, "queue_size": 8})),
    )
    run = tmp_path / "results" / "models" / "demo"
    run.mkdir(parents=True)
    save_audio_encoder(
        run / "audio_encoder.pt",
        model,
        step=0,
        train_config={},
        image_encoder_fingerprint=encoder.fingerprint,
    )
    t = np.arange(SR) / SR
    (shard,) = shard_names(1)
    media = tmp_path / "results" / "media" / "gen"
    media.mkdir(parents=True)
    pq.write_table(
        pa.table(
            {
                "clip_id": ["bark_0", "hum_0"],
                "status": ["ok", "ok"],
                "reason": ["", ""],
                "audio": [flac_bytes(0.3 * np.sin(2 * np.pi * f * t)) for f in (300, 90)],
                "frame": [jpeg_bytes((200, 40, 40)), jpeg_bytes((40, 40, 200))],
            }
        ),
        media / f"{shard}.parquet",
    )
    manifest = tmp_path / "results" / "manifest"
    manifest.mkdir(parents=True)
    pq.write_table(
        pa.table(
            {
                "clip_id": ["bark_0", "hum_0"],
                "url": ["file:///a.mp4", "file:///b.mp4"],
                "start_s": [0.0, 0.0],
                "end_s": [1.0, 1.0],
                "labels": [["dog"], ["hum"]],
                "label_names": [["Dog"], ["Hum"]],
                "split": ["test", "test"],
                "shard": [shard, shard],
            }
        ),
        manifest / "gen.parquet",
    )


@pytest.mark.slow
def test_snakemake_runs_the_unclip_rule_on_a_tiny_pipeline(tmp_path):
    clip, pipeline, _ = cached_clip_and_unclip()
    config = write_config(tmp_path, clip, pipeline, seed=3)
    prepare_inputs(tmp_path, clip)
    target = "results/generation/demo+unclip/gen"
    result = run_snakemake(
        tmp_path, "--cores", "1", "--configfile", config,
        "--allowed-rules", "check_weights", "generate_images_unclip", "--", target,
    )  # fmt: skip
    log = tmp_path / "logs" / "generate_images_unclip" / "demo" / "gen.log"
    assert result.returncode == 0, (result.stderr[-3000:], log.read_text() if log.exists() else "")
    out = tmp_path / target
    record = json.loads((out / "generation.json").read_text())
    assert record["method"] == "unclip" and record["config"]["seed"] == 3
    assert [c["clip_id"] for c in record["clips"]] == ["bark_0", "hum_0"]
    assert record["config"]["steps"] == 2 and record["embed_norm"]["value"] > 0
    meta = read_png_metadata(out / "hum_0.png")
    assert meta["method"] == "unclip" and meta["label"] == "Hum"
    assert Image.open(out / "bark_0.png").size == (32, 32)
    assert not (tmp_path / "results" / "generation" / "demo" / "gen").exists()
    # Nothing left to do; a changed unCLIP setting reruns the unCLIP job only.
    again = run_snakemake(tmp_path, "-n", "--configfile", config, "--", target)
    assert planned_jobs(again) == {}, again.stdout[-2000:]
    changed = write_config(tmp_path, clip, pipeline, seed=3, unclip={"pipeline": str(pipeline)})
    rerun = planned_jobs(
        run_snakemake(
            tmp_path,
            "-n",
            "--configfile",
            changed,
            "--allowed-rules",
            "check_weights",
            "generate_images_unclip",
            "--",
            target,
        )  # fmt: skip
    )
    assert rerun == {"generate_images_unclip": 1}, rerun
