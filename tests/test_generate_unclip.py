"""wavbrivl.generate.unclip (+ unclip_folder, unclip_stage): Stable unCLIP from g(audio).

A tiny random pipeline in diffusers' layout (tests/unclip_models.py) whose image encoder is
the vision tower of a tiny HF CLIP folder (tests/clip_models.py): 24-d embeddings, 32 x 32
images, 2 denoising steps. The folders are built once per session; every test calls our code.
"""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import torch
from PIL import Image
from test_generate import save_tiny_audio_model
from unclip_models import cached_clip_and_unclip

from wavbrivl.encoders.clip import build_clip
from wavbrivl.encoders.clip_family import LocalWeightsError
from wavbrivl.generate.png import read_png_metadata
from wavbrivl.generate.unclip import (
    UnclipConfig,
    check_same_space,
    conditioning,
    denoise,
    generate_unclip,
    image_space_fingerprint,
    load_unclip_pipeline,
    pipeline_dtype,
    reference_norm,
)
from wavbrivl.generate.unclip_folder import (
    COMPONENTS,
    check_pipeline_folder,
    missing_components,
    pipeline_folder_problem,
)
from wavbrivl.generate.unclip_stage import run_unclip_generation, unclip_for_clips

SR = 16000
QUIET = lambda line: None  # noqa: E731
DIM = 24  # tests/clip_models.py: projection_dim


def cfg(**kw) -> UnclipConfig:
    return UnclipConfig(**({"steps": 2, "guidance_scale": 3.0, "batch_clips": 2} | kw))


@pytest.fixture(scope="session")
def built():
    torch.set_num_threads(1)  # tiny models: threads only contend (2 cores shared)
    return cached_clip_and_unclip()


@pytest.fixture(scope="session")
def folders(built) -> tuple[Path, Path]:
    return built[0], built[1]


@pytest.fixture(scope="session")
def other_pipeline(built) -> Path:
    """A pipeline whose image encoder has random weights: another image space."""
    return built[2]


@pytest.fixture
def encoder(folders):
    return build_clip(folders[0])


def unit_rows(n: int, seed: int = 0) -> torch.Tensor:
    x = torch.randn(n, DIM, generator=torch.Generator().manual_seed(seed))
    return x / x.norm(dim=1, keepdim=True)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


# -- the folder -----------------------------------------------------------------------------


def test_a_complete_folder_passes_and_names_all_nine_components(folders):
    assert check_pipeline_folder(folders[1]) == folders[1]
    assert pipeline_folder_problem(str(folders[1])) is None
    assert missing_components(folders[1]) == []
    assert sorted(COMPONENTS) == sorted(
        ["feature_extractor", "image_encoder", "image_normalizer", "image_noising_scheduler"]
        + ["tokenizer", "text_encoder", "unet", "scheduler", "vae"]
    )


@pytest.mark.parametrize(
    ("remove", "named"),
    [
        ("vae", "vae (vae/config.json)"),
        ("unet/diffusion_pytorch_model.safetensors", "unet (unet/*.safetensors or *.bin)"),
        ("tokenizer/tokenizer.json", "tokenizer (tokenizer/tokenizer.json or vocab.json"),
        ("feature_extractor", "feature_extractor (feature_extractor/preprocessor_config.json)"),
        ("image_noising_scheduler", "image_noising_scheduler (image_noising_scheduler/sch"),
        ("image_encoder/config.json", "image_encoder (image_encoder/config.json)"),
    ],
)
def test_a_missing_component_is_one_line_naming_the_folder_and_component(
    folders, tmp_path, remove, named
):
    copy = shutil.copytree(folders[1], tmp_path / "pipe")
    target = copy / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(LocalWeightsError) as err:
        check_pipeline_folder(copy)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"generate.unclip.pipeline: {copy}: missing component(s) ")
    assert named in message
    if remove == "vae":
        assert message.endswith(
            "missing component(s) vae (vae/config.json); vae (vae/*.safetensors or *.bin)"
        )
    assert [m.split(" ")[0] for m in missing_components(copy)] == [remove.split("/")[0]] * (
        2 if remove == "vae" else 1
    )


def test_a_tokenizer_as_vocab_and_merges_is_accepted(folders, tmp_path):
    copy = shutil.copytree(folders[1], tmp_path / "pipe")
    (copy / "tokenizer" / "tokenizer.json").unlink()
    (copy / "tokenizer" / "vocab.json").write_text("{}")
    lacking = ["tokenizer (tokenizer/tokenizer.json or vocab.json + merges.txt)"]
    assert missing_components(copy) == lacking
    (copy / "tokenizer" / "merges.txt").write_text("")
    assert missing_components(copy) == []
    (copy / "tokenizer" / "vocab.json").unlink()
    assert missing_components(copy) == lacking


def test_an_empty_component_folder_lacks_its_weights(folders, tmp_path):
    copy = shutil.copytree(folders[1], tmp_path / "pipe")
    shutil.rmtree(copy / "text_encoder")
    (copy / "text_encoder").mkdir()
    (copy / "text_encoder" / "config.json").write_text("{}")
    (copy / "text_encoder" / "notes.txt").write_text("")
    assert missing_components(copy) == ["text_encoder (text_encoder/*.safetensors or *.bin)"]
    (copy / "text_encoder" / "pytorch_model.bin").write_bytes(b"x")
    assert missing_components(copy) == []


def test_folder_refusals_say_what_is_wrong(folders, tmp_path):
    with pytest.raises(LocalWeightsError, match=r"^generate.unclip.pipeline is not set"):
        check_pipeline_folder(None)
    with pytest.raises(LocalWeightsError, match="hub name"):
        check_pipeline_folder("stabilityai/stable-diffusion-2-1-unclip")
    with pytest.raises(LocalWeightsError, match=f"^my.key: {tmp_path / 'nope'}: no such folder$"):
        check_pipeline_folder(tmp_path / "nope", key="my.key")
    copy = shutil.copytree(folders[1], tmp_path / "pipe")
    index = json.loads((copy / "model_index.json").read_text())
    (copy / "model_index.json").write_text(
        json.dumps(index | {"_class_name": "StableUnCLIPPipeline"})
    )
    assert pipeline_folder_problem(str(copy)) == (
        "model_index.json names 'StableUnCLIPPipeline', not 'StableUnCLIPImg2ImgPipeline'"
    )
    (copy / "model_index.json").write_text("[1, 2")
    assert pipeline_folder_problem(str(copy)) == "model_index.json is not a JSON object"
    (copy / "model_index.json").write_text("[1, 2]")
    assert pipeline_folder_problem(str(copy)) == "model_index.json is not a JSON object"
    (copy / "model_index.json").write_bytes(b"\xff\xfe\x00")
    assert pipeline_folder_problem(str(copy)) == "model_index.json is not a JSON object"
    index["_note"] = "café"  # not ASCII; JSON files are UTF-8 whatever the locale
    (copy / "model_index.json").write_bytes(json.dumps(index, ensure_ascii=False).encode())
    assert pipeline_folder_problem(str(copy)) is None
    (copy / "model_index.json").unlink()
    assert pipeline_folder_problem(str(copy)) == (
        "no model_index.json (not a diffusers pipeline folder)"
    )


def test_check_weights_reports_an_incomplete_pipeline_before_jobs_start(folders, tmp_path):
    from wavbrivl.weights_check import problems, required_weights

    copy = shutil.copytree(folders[1], tmp_path / "pipe")
    shutil.rmtree(copy / "scheduler")
    config = {
        "embed": {"encoder": "tiny"},
        "audio": {"wavlm": "tiny"},
        "datasets": {"gen": {"role": "generation"}},
        "generate": {"method": "unclip", "vqgan": "taming", "unclip": {"pipeline": str(copy)}},
    }
    weights = required_weights(config)
    assert [(w.key, w.kind) for w in weights] == [("generate.unclip.pipeline", "unclip_pipeline")]
    (found,) = problems(weights)
    assert found.startswith(f"generate.unclip.pipeline: {copy}: missing component(s) scheduler")
    config["generate"]["unclip"]["pipeline"] = str(folders[1])
    assert problems(required_weights(config)) == []


# -- settings -------------------------------------------------------------------------------


def test_half_types_are_refused_on_the_cpu_and_mapped_on_cuda():
    assert pipeline_dtype("fp32", "cpu") is torch.float32
    for name in ("fp16", "bf16"):
        with pytest.raises(ValueError, match=f"dtype: {name} runs on CUDA only.*cpu; use fp32"):
            pipeline_dtype(name, "cpu")
    assert pipeline_dtype("fp16", "cuda") is torch.float16
    assert pipeline_dtype("bf16", torch.device("cuda", 0)) is torch.bfloat16
    with pytest.raises(ValueError, match="unknown 'fp8'"):
        pipeline_dtype("fp8", "cuda")


def test_the_config_comes_from_the_generate_block_with_its_seed():
    got = UnclipConfig.from_generate_block({"seed": 7, "unclip": {"steps": 3, "dtype": "bf16"}})
    assert (got.seed, got.steps, got.dtype, got.guidance_scale, got.noise_level) == (
        7,
        3,
        "bf16",
        10.0,
        0,
    )
    assert (got.batch_clips, got.embed_norm, got.pipeline) == (4, None, None)
    assert UnclipConfig.from_generate_block({}).seed == 0
    assert UnclipConfig.from_generate_block({"unclip": None, "seed": 5}).seed == 5
    with pytest.raises(ValueError, match=r"'generate.unclip.steps'"):
        UnclipConfig(steps=0)
    with pytest.raises(ValueError, match=r"unknown generate.unclip key\(s\) \['stpes'\]"):
        UnclipConfig.from_generate_block({"unclip": {"stpes": 3}})
    assert UnclipConfig(seed=3).to_dict()["seed"] == 3


# -- the image space ------------------------------------------------------------------------


def test_the_same_vision_weights_give_the_same_image_space(folders, other_pipeline):
    from transformers import CLIPModel, CLIPVisionModelWithProjection

    clip = CLIPModel.from_pretrained(folders[0], local_files_only=True)
    tower = CLIPVisionModelWithProjection.from_pretrained(folders[1] / "image_encoder")
    other = CLIPVisionModelWithProjection.from_pretrained(other_pipeline / "image_encoder")
    space, dim = image_space_fingerprint(clip)
    assert (space, dim) == image_space_fingerprint(tower) and dim == DIM
    assert image_space_fingerprint(other)[0] != space
    assert len(space) == 64 and int(space, 16) >= 0
    # The text tower is not the image space; one vision weight is.
    with torch.no_grad():
        clip.text_projection.weight.add_(1.0)
    assert image_space_fingerprint(clip)[0] == space
    with torch.no_grad():
        clip.visual_projection.weight[0, 0] += 1e-3
    assert image_space_fingerprint(clip)[0] != space
    with pytest.raises(ValueError, match="no CLIP vision tower"):
        image_space_fingerprint(torch.nn.Linear(2, 2))


def test_load_checks_and_records_the_pipeline(folders):
    pipeline = load_unclip_pipeline(folders[1])
    assert pipeline.dim == DIM and pipeline.dtype is torch.float32
    assert pipeline.device == torch.device("cpu") and pipeline.folder == folders[1]
    assert pipeline.name == "unclip(unclip)"
    assert pipeline.space_fingerprint == image_space_fingerprint(pipeline.pipe.image_encoder)[0]
    assert pipeline.fingerprint == load_unclip_pipeline(str(folders[1])).fingerprint
    assert len(pipeline.fingerprint) == 64
    with pytest.raises(ValueError, match="runs on CUDA only"):
        load_unclip_pipeline(folders[1], dtype="fp16")


def test_the_pipeline_fingerprint_covers_every_components_weights(folders, tmp_path):
    from safetensors.torch import load_file, save_file

    before = load_unclip_pipeline(folders[1]).fingerprint
    copy = shutil.copytree(folders[1], tmp_path / "pipe")
    path = copy / "vae" / "diffusion_pytorch_model.safetensors"
    state = load_file(path)
    key = sorted(state)[0]
    state[key] = state[key] + 0.5
    save_file(state, path)
    assert load_unclip_pipeline(copy).fingerprint != before


def test_a_unet_of_another_embedding_size_is_refused(folders, tmp_path):
    copy = shutil.copytree(folders[1], tmp_path / "pipe")
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(copy / "unet")
    config = dict(unet.config) | {"projection_class_embeddings_input_dim": 2 * DIM + 2}
    UNet2DConditionModel.from_config(config).save_pretrained(copy / "unet")
    with pytest.raises(ValueError, match=r"unet takes 50-d class embeddings.*24-d ones \(48 exp"):
        load_unclip_pipeline(copy)


def test_the_run_must_be_in_the_pipelines_image_space(folders, other_pipeline, encoder):
    check_same_space(encoder, load_unclip_pipeline(folders[1]))  # same weights: accepted
    other = load_unclip_pipeline(other_pipeline)
    with pytest.raises(ValueError) as err:
        check_same_space(encoder, other)
    message = str(err.value)
    own = image_space_fingerprint(encoder.model)[0]
    assert own in message and other.space_fingerprint in message and own != other.space_fingerprint
    assert f"{encoder.name} (image space {own}, 24-d)" in message
    assert f"{other_pipeline}/image_encoder (image space" in message and "\n" not in message


def test_an_encoder_without_a_clip_vision_tower_is_refused(folders):
    from wavbrivl.encoders.registry import build_tiny

    tiny = build_tiny(seed=0)
    with pytest.raises(
        ValueError, match=r"image space none \(not an HF CLIP vision tower\), 128-d"
    ):
        check_same_space(tiny, load_unclip_pipeline(folders[1]))


# -- conditioning and denoising -------------------------------------------------------------


def test_reference_norm_is_the_mean_length_of_the_image_encoders_embeddings(folders):
    from transformers import CLIPImageProcessor, CLIPModel

    pipeline = load_unclip_pipeline(folders[1])
    rng = np.random.default_rng(0)
    frames = [
        Image.fromarray((rng.random((40 + i, 36, 3)) * 255).astype(np.uint8)) for i in range(18)
    ]
    # Independently: the CLIP folder's own model (same weights, another class) on its pixels.
    clip = CLIPModel.from_pretrained(folders[0], local_files_only=True)
    processor = CLIPImageProcessor.from_pretrained(folders[0])
    with torch.no_grad():
        features = clip.get_image_features(
            pixel_values=processor(frames, return_tensors="pt")["pixel_values"]
        )
    features = getattr(features, "pooler_output", features)
    expected = float(features.norm(dim=-1).mean())
    assert reference_norm(pipeline, frames) == pytest.approx(expected, rel=1e-5)
    assert reference_norm(pipeline, frames[:1]) == pytest.approx(
        float(features[0].norm()), rel=1e-5
    )
    with pytest.raises(ValueError, match="no real frame.*generate.unclip.embed_norm"):
        reference_norm(pipeline, [])


def test_conditioning_scales_unit_targets_and_zeroes_a_silent_one():
    vectors = torch.tensor([[0.6, 0.8], [1.0, 0.0], [0.0, 1.0]])
    embeds, notes = conditioning(vectors, [2.0, 1e-9, 1e-8], 5.0)
    assert torch.equal(embeds, torch.tensor([[3.0, 4.0], [0.0, 0.0], [0.0, 5.0]]))
    assert notes == [[], ["target norm 1e-09: no direction, the image is not guided"], []]
    assert torch.equal(vectors, torch.tensor([[0.6, 0.8], [1.0, 0.0], [0.0, 1.0]]))  # untouched


def test_denoise_is_seeded_per_clip_and_independent_of_the_batch(folders):
    pipeline = load_unclip_pipeline(folders[1])
    embeds = unit_rows(2) * 5.0
    pair = denoise(pipeline, embeds, [11, 12], cfg())
    alone = denoise(pipeline, embeds[1:], [12], cfg())
    again = denoise(pipeline, embeds[:1], [11], cfg())
    reseeded = denoise(pipeline, embeds[:1], [99], cfg())
    other_embed = denoise(pipeline, unit_rows(1, seed=5) * 5.0, [11], cfg())
    assert len(pair) == 2 and pair[0].size == (32, 32) and pair[0].mode == "RGB"
    assert np.abs(pixels(pair[1]) - pixels(alone[0])).max() <= 2  # float noise at most
    assert np.array_equal(pixels(pair[0]), pixels(again[0]))
    assert np.abs(pixels(pair[0]) - pixels(reseeded[0])).mean() > 2
    assert np.abs(pixels(pair[0]) - pixels(other_embed[0])).mean() > 0.5


def test_the_settings_reach_the_pipeline(folders):
    pipeline = load_unclip_pipeline(folders[1])
    embeds = unit_rows(1) * 5.0
    base = pixels(denoise(pipeline, embeds, [3], cfg())[0])
    for changed in (cfg(steps=3), cfg(guidance_scale=1.0), cfg(noise_level=500)):
        assert np.abs(base - pixels(denoise(pipeline, embeds, [3], changed)[0])).mean() > 0.5


def test_generate_unclip_measures_each_saved_image_against_its_target(folders, encoder):
    pipeline = load_unclip_pipeline(folders[1])
    vectors = unit_rows(3, seed=2)
    lines = []
    results = generate_unclip(
        pipeline, encoder, vectors, [1.0, 0.0, 2.0], cfg(batch_clips=2),
        clip_ids=["a_0", "b_0", "c_0"], labels=["A", "B", "C"], seeds=[1, 2, 3], scale=4.0,
        log=lines.append,
    )  # fmt: skip
    assert [r.clip_id for r in results] == ["a_0", "b_0", "c_0"]
    assert [(r.label, r.seed, r.steps, r.target_norm) for r in results] == [
        ("A", 1, 2, 1.0),
        ("B", 2, 2, 0.0),
        ("C", 3, 2, 2.0),
    ]
    assert results[1].notes and not results[0].notes and not results[2].notes
    assert any("b_0" in line and "not guided" in line for line in lines)
    assert any(line == "unclip: 3/3 images" for line in lines)
    for result, vector in zip(results, vectors, strict=True):
        seen = encoder.encode_images([result.image])[0]
        expected = float(seen @ vector)
        assert result.final_similarity == pytest.approx(expected, abs=1e-5)
        assert result.trace == [result.final_similarity]
    with pytest.raises(ValueError, match="shorter|longer"):  # one id per target
        generate_unclip(
            pipeline, encoder, vectors, [1.0, 0.0, 2.0], cfg(), clip_ids=["a_0", "b_0"],
            labels=["A", "B"], seeds=[1, 2], scale=4.0, log=QUIET,
        )  # fmt: skip
    # One clip at a time gives the same images (each clip its own generator).
    single = generate_unclip(
        pipeline, encoder, vectors, [1.0, 0.0, 2.0], cfg(batch_clips=1),
        clip_ids=["a_0", "b_0", "c_0"], labels=["A", "B", "C"], seeds=[1, 2, 3], scale=4.0,
        log=QUIET,
    )  # fmt: skip
    for a, b in zip(results, single, strict=True):
        assert np.abs(pixels(a.image) - pixels(b.image)).max() <= 2
    # The silent clip was conditioned on zeros: the same image whatever its (unit) target.
    zero = denoise(pipeline, torch.zeros(1, DIM), [2], cfg())[0]
    assert np.abs(pixels(results[1].image) - pixels(zero)).max() <= 2


# -- the stage ------------------------------------------------------------------------------


def flac_bytes(samples: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples.astype(np.float32), SR, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def jpeg_bytes(colour: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 40), colour).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def write_inputs(tmp_path: Path) -> tuple[Path, Path]:
    t = np.arange(SR) / SR
    rows = [
        ("tone_0", "ok", "", flac_bytes(0.5 * np.sin(2 * np.pi * 440 * t)), (255, 0, 0)),
        ("silent_0", "ok", "", flac_bytes(np.zeros(SR)), (0, 0, 255)),
        ("gone_0", "unavailable", "video removed", None, None),
        ("broken_0", "ok", "", b"not a flac file", (0, 255, 0)),
    ]
    media = tmp_path / "media.parquet"
    pq.write_table(
        pa.table(
            {
                "clip_id": [r[0] for r in rows],
                "status": [r[1] for r in rows],
                "reason": [r[2] for r in rows],
                "audio": pa.array([r[3] for r in rows], pa.binary()),
                "frame": pa.array([r[4] and jpeg_bytes(r[4]) for r in rows], pa.binary()),
            }
        ),
        media,
    )
    manifest = tmp_path / "manifest.parquet"
    pq.write_table(
        pa.table(
            {
                "clip_id": ["tone_0", "silent_0", "gone_0", "broken_0"],
                "labels": [["/m/tone"], ["/m/silence"], ["/m/x"], ["/m/y"]],
                "label_names": [["Sine wave"], [], ["X"], ["Y"]],
            }
        ),
        manifest,
    )
    return media, manifest


def test_unclip_for_clips_writes_the_vqgan_paths_folder(folders, encoder, tmp_path):
    from wavbrivl.train.checkpoint import load_trained_model

    pipeline = load_unclip_pipeline(folders[1])
    model_path = save_tiny_audio_model(tmp_path, DIM, encoder.fingerprint)
    media, manifest = write_inputs(tmp_path)
    out = tmp_path / "out"
    lines = []
    record = unclip_for_clips(
        model_path, media, manifest, out, pipeline, encoder, cfg(seed=4), log=lines.append
    )
    clips = {c["clip_id"]: c for c in record["clips"]}
    assert sorted(clips) == ["silent_0", "tone_0"]
    skipped = {s["clip_id"]: s["reason"] for s in record["skipped"]}
    assert "video removed" in skipped["gone_0"] and "not usable" in skipped["broken_0"]
    assert clips["tone_0"]["label"] == "Sine wave" and clips["tone_0"]["png"] == "tone_0.png"
    assert record["method"] == "unclip" and record["format"] == "wavbrivl.generation/1"
    assert record["pipeline"] == "unclip(unclip)" and record["image_encoder"] == encoder.name
    assert record["image_space"] == pipeline.space_fingerprint
    assert record["config"]["steps"] == 2 and record["config"]["seed"] == 4

    # The scale: the mean image-encoder norm of the two generated clips' real frames.
    red, blue = (
        Image.open(io.BytesIO(jpeg_bytes(c))).convert("RGB") for c in [(255, 0, 0), (0, 0, 255)]
    )
    expected = (reference_norm(pipeline, [red]) + reference_norm(pipeline, [blue])) / 2
    assert record["embed_norm"]["value"] == pytest.approx(expected, rel=1e-5)
    assert "2 generated clip(s)" in record["embed_norm"]["source"]

    # Targets are the model's g(audio); seeds derive from the base seed and the clip id.
    from wavbrivl.generate.stage import clip_seed

    model = load_trained_model(model_path)
    rows = {r["clip_id"]: r for r in pq.read_table(out / "targets.parquet").to_pylist()}
    assert set(rows) == {"tone_0", "silent_0"} and len(rows["tone_0"]["embedding"]) == DIM
    for clip_id in ("tone_0", "silent_0"):
        assert clips[clip_id]["seed"] == clip_seed(4, clip_id)
        assert rows[clip_id]["target_norm"] == pytest.approx(clips[clip_id]["target_norm"])
    wave = torch.from_numpy(
        sf.read(io.BytesIO(pq.read_table(media).column("audio")[0].as_py()), dtype="float32")[0]
    )
    unit = model.embed_audio(wave[None], torch.tensor([len(wave)]))[0]
    np.testing.assert_allclose(rows["tone_0"]["embedding"], unit.detach().numpy(), atol=1e-5)

    meta = read_png_metadata(out / "tone_0.png")
    assert meta["method"] == "unclip" and meta["steps"] == "2" and meta["noise_level"] == "0"
    assert meta["guidance_scale"] == "3" and meta["seed"] == str(clips["tone_0"]["seed"])
    assert meta["unclip_fingerprint"] == pipeline.fingerprint == record["fingerprints"]["unclip"]
    assert meta["image_encoder_fingerprint"] == encoder.fingerprint
    assert float(meta["final_similarity"]) == pytest.approx(clips["tone_0"]["final_similarity"])
    seen = encoder.encode_images([Image.open(out / "tone_0.png").convert("RGB")])[0]
    assert clips["tone_0"]["final_similarity"] == pytest.approx(
        float(seen @ torch.tensor(rows["tone_0"]["embedding"])), abs=1e-5
    )
    trace = (out / "trace.tsv").read_text().splitlines()
    assert trace[0] == "clip_id\tstep\tsimilarity" and len(trace) == 3
    assert trace[1].split("\t")[:2] == ["silent_0", "2"]
    assert float(trace[1].split("\t")[2]) == pytest.approx(
        clips["silent_0"]["final_similarity"], abs=1e-6
    )
    assert json.loads((out / "generation.json").read_text()) == record
    assert any("image embeddings scaled to" in line for line in lines)


def test_a_fixed_embed_norm_is_used_and_recorded(folders, encoder, tmp_path):
    pipeline = load_unclip_pipeline(folders[1])
    model_path = save_tiny_audio_model(tmp_path, DIM, None)
    media, manifest = write_inputs(tmp_path)
    record = unclip_for_clips(
        model_path, media, manifest, tmp_path / "out", pipeline, encoder,
        cfg(embed_norm=2.5), clip_ids=["tone_0"], log=QUIET,
    )  # fmt: skip
    assert record["embed_norm"] == {"value": 2.5, "source": "generate.unclip.embed_norm"}
    assert [c["clip_id"] for c in record["clips"]] == ["tone_0"]


def test_stage_refusals_come_before_any_output(folders, other_pipeline, encoder, tmp_path):
    media, manifest = write_inputs(tmp_path)
    out = tmp_path / "out"
    pipeline = load_unclip_pipeline(folders[1])
    wrong_space = save_tiny_audio_model(tmp_path, DIM, "f" * 64)
    with pytest.raises(
        ValueError, match=f"trained on image encoder {'f' * 64}.*{re.escape(encoder.name)}"
    ):
        unclip_for_clips(wrong_space, media, manifest, out, pipeline, encoder, cfg(), log=QUIET)
    wrong_dim = save_tiny_audio_model(tmp_path, 16, None)
    with pytest.raises(ValueError, match="into 16 dimensions.*into 24"):
        unclip_for_clips(wrong_dim, media, manifest, out, pipeline, encoder, cfg(), log=QUIET)
    good = save_tiny_audio_model(tmp_path, DIM, encoder.fingerprint)
    with pytest.raises(ValueError, match="is not the unCLIP pipeline's"):
        unclip_for_clips(
            good, media, manifest, out, load_unclip_pipeline(other_pipeline), encoder, cfg(),
            log=QUIET,
        )  # fmt: skip
    assert not out.exists()


def test_no_usable_clip_still_writes_empty_records(folders, encoder, tmp_path):
    pipeline = load_unclip_pipeline(folders[1])
    model_path = save_tiny_audio_model(tmp_path, DIM, encoder.fingerprint)
    media, manifest = write_inputs(tmp_path)
    lines = []
    record = unclip_for_clips(
        model_path, media, manifest, tmp_path / "out", pipeline, encoder, cfg(),
        clip_ids=["gone_0", "broken_0"], log=lines.append,
    )  # fmt: skip
    assert record["clips"] == [] and len(record["skipped"]) == 2
    assert record["embed_norm"] == {"value": None, "source": "no clip to generate"}
    assert (tmp_path / "out" / "trace.tsv").read_text() == "clip_id\tstep\tsimilarity\n"
    assert any("nothing generated" in line for line in lines)


def test_a_generated_clip_without_a_real_frame_is_an_error_naming_it(folders, encoder, tmp_path):
    from wavbrivl.generate.unclip_stage import clip_frames

    media, _ = write_inputs(tmp_path)
    frames = clip_frames([media], ["tone_0", "silent_0"])
    assert sorted(frames) == ["silent_0", "tone_0"] and frames["tone_0"].size == (40, 40)
    assert frames["tone_0"].getpixel((20, 20))[0] > 240
    with pytest.raises(ValueError, match=r"no real frame for clip\(s\) \['gone_0'\]"):
        clip_frames([media], ["tone_0", "gone_0"])


def test_run_unclip_generation_builds_everything_from_config_blocks(folders, encoder, tmp_path):
    model_path = save_tiny_audio_model(tmp_path, DIM, encoder.fingerprint)
    media, manifest = write_inputs(tmp_path)
    lines = []
    record = run_unclip_generation(
        model_path=model_path,
        media_paths=[media],
        manifest_path=manifest,
        out_dir=tmp_path / "out",
        generate_block={
            "seed": 1,
            "clip_ids": ["tone_0"],
            "device": "cpu",
            "vqgan": "tiny",
            "unclip": {"pipeline": str(folders[1]), "steps": 2, "batch_clips": 1},
        },
        embed_block={"encoder": "clip", "weights": str(folders[0]), "device": "cpu"},
        wavlm=None,
        log=lines.append,
    )
    assert [c["clip_id"] for c in record["clips"]] == ["tone_0"]
    assert record["config"]["seed"] == 1 and record["config"]["batch_clips"] == 1
    assert record["fingerprints"]["image_encoder"] == encoder.fingerprint
    assert lines[0].startswith("generating with unclip(unclip) (fp32) and hf-clip(clip) on cpu")


def test_real_frames_come_from_ok_rows_only(tmp_path):
    from wavbrivl.extract.media import MEDIA_SCHEMA
    from wavbrivl.generate.unclip_stage import clip_frames

    def jpeg(colour):
        out = io.BytesIO()
        Image.new("RGB", (8, 8), colour).save(out, format="JPEG")
        return out.getvalue()

    rows = [
        {"clip_id": "ok_0", "status": "ok", "reason": "", "frame": jpeg((0, 0, 255))},
        # a row that failed after its frame was taken (audio too short, say)
        {"clip_id": "bad_0", "status": "bad_media", "reason": "x", "frame": jpeg((255, 0, 0))},
    ]
    shard = tmp_path / "000.parquet"
    full = [{name: row.get(name) for name in MEDIA_SCHEMA.names} for row in rows]
    pq.write_table(pa.Table.from_pylist(full, schema=MEDIA_SCHEMA), shard)
    assert clip_frames([shard], ["ok_0"])["ok_0"].getpixel((4, 4))[2] > 200
    with pytest.raises(ValueError, match=r"no real frame for clip\(s\) \['bad_0'\]"):
        clip_frames([shard], ["ok_0", "bad_0"])


def test_run_unclip_generation_hands_the_config_to_each_part(monkeypatch):
    """Which setting reaches which part: the device (``generate.device``, default auto) goes
    to the pipeline and the encoder, the dtype to the pipeline, wavlm and log to the loop."""
    import wavbrivl.encoders.from_config as from_config
    import wavbrivl.generate.unclip_stage as stage

    seen = {}

    class Named:
        def __init__(self, name):
            self.name = name

    def pick(name):
        seen["device asked"] = name
        return "cpu:7"

    def load(folder, **kwargs):
        seen["pipeline"] = (folder, kwargs)
        return Named("pipe")

    def encoder(block):
        seen["encoder"] = block
        return Named("enc")

    def loop(*args, **kwargs):
        seen["loop"] = (args, kwargs)
        return {"done": True}

    monkeypatch.setattr(stage, "pick_device", pick)
    monkeypatch.setattr(stage, "load_unclip_pipeline", load)
    monkeypatch.setattr(from_config, "encoder_from_config", encoder)
    monkeypatch.setattr(stage, "unclip_for_clips", loop)
    lines = []
    block = {"seed": 3, "clip_ids": ["a"], "unclip": {"pipeline": "P", "dtype": "bf16"}}
    record = run_unclip_generation(
        model_path="M",
        media_paths=("S",),
        manifest_path="F",
        out_dir="O",
        generate_block=block,
        embed_block={"encoder": "clip", "device": "cuda"},
        wavlm="W",
        log=lines.append,
    )
    assert record == {"done": True}
    assert seen["device asked"] == "auto"
    assert seen["pipeline"] == ("P", {"dtype": "bf16", "device": "cpu:7"})
    assert seen["encoder"] == {"encoder": "clip", "device": "cpu:7"}
    args, kwargs = seen["loop"]
    assert args[:4] == ("M", ["S"], "F", "O") and args[6].dtype == "bf16" and args[6].seed == 3
    assert kwargs == {"clip_ids": ["a"], "wavlm": "W", "log": lines.append}
    assert lines == ["generating with pipe (bf16) and enc on cpu:7"]
    run_unclip_generation(
        model_path="M", media_paths=[], manifest_path="F", out_dir="O",
        generate_block={**block, "device": "cpu"}, embed_block={}, wavlm=None, log=print,
    )  # fmt: skip
    assert seen["device asked"] == "cpu"
