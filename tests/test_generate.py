"""wavbrivl.generate: the audio-guided VQGAN optimisation, its cutouts, PNGs and records.

A tiny setup throughout: the tiny random BriVL image encoder (128-d, 128 px input), a small
fake VQGAN with the interface of ``wavbrivl.vqgan.VQGAN`` (codebook, quantize_st, decode),
64 x 64 images, few steps and cutouts. The real tiny VQGAN gets its own test.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from wavbrivl.encoders.registry import build_tiny
from wavbrivl.extract.media import decode_audio
from wavbrivl.generate import (
    CutoutRng,
    CutoutSettings,
    GenerateConfig,
    generate,
    generate_for_clips,
    make_cutouts,
    read_png_metadata,
    save_png,
)
from wavbrivl.generate.cutouts import crop_boxes
from wavbrivl.generate.loop import clamp_inward, spherical_distance_sq
from wavbrivl.vqgan import build_tiny_vqgan

SR = 16000
QUIET = lambda line: None  # noqa: E731


class FakeVQGAN(nn.Module):
    """The VQGAN interface at toy size: 8-d codebook of 32, decoder upsampling x4."""

    downsample_factor = 4

    def __init__(self, seed: int = 0, n_embed: int = 32, embed_dim: int = 8) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.embedding = nn.Parameter(torch.randn(n_embed, embed_dim, generator=gen))
        self.post = nn.Conv2d(embed_dim, 16, 1)
        self.out = nn.Conv2d(16, 3, 3, padding=1)
        with torch.no_grad():
            for p in (self.post.weight, self.post.bias, self.out.weight, self.out.bias):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)

    @property
    def codebook(self) -> torch.Tensor:
        return self.embedding

    def quantize_st(self, z: torch.Tensor) -> torch.Tensor:
        flat = z.permute(0, 2, 3, 1)  # (B, h, w, C)
        index = torch.cdist(flat.reshape(-1, flat.shape[-1]), self.embedding).argmin(-1)
        z_q = self.embedding[index].view(flat.shape).permute(0, 3, 1, 2)
        return z + (z_q - z).detach()

    def decode(self, z_q: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(torch.relu(self.post(z_q)), scale_factor=4, mode="nearest")
        return torch.tanh(self.out(x))


def tiny_cfg(**kw) -> GenerateConfig:
    return GenerateConfig(**({"steps": 12, "cutouts": 4, "size": (64, 64)} | kw))


def unit_targets(n: int, dim: int = 128, seed: int = 1) -> torch.Tensor:
    return F.normalize(torch.randn(n, dim, generator=torch.Generator().manual_seed(seed)), dim=1)


@pytest.fixture(scope="module")
def encoder():
    torch.set_num_threads(2)
    return build_tiny(seed=0)


@pytest.fixture(scope="module")
def batch_run(encoder):
    """Two clips optimised together."""
    cfg = tiny_cfg(batch_clips=2)
    return generate(
        FakeVQGAN(), encoder, unit_targets(2), cfg, clip_ids=["a_0", "b_0"], seeds=[1, 2], log=QUIET
    )


# -- the optimisation ---------------------------------------------------------------------------


def test_similarity_to_the_target_rises_over_the_steps(batch_run):
    for result in batch_run:
        assert len(result.trace) == 12
        assert result.trace[-1] > result.trace[0] + 0.03, result.trace
        # The saved 8-bit image is closer to the target than the start was.
        assert result.final_similarity > result.trace[0] + 0.03
        assert result.image.size == (64, 64) and result.image.mode == "RGB"


def test_a_seed_fixes_the_result_and_another_seed_changes_it(encoder, batch_run):
    again = generate(
        FakeVQGAN(),
        encoder,
        unit_targets(2)[:1],
        tiny_cfg(),
        clip_ids=["a_0"],
        seeds=[1],
        log=QUIET,
    )[0]
    other = generate(
        FakeVQGAN(),
        encoder,
        unit_targets(2)[:1],
        tiny_cfg(),
        clip_ids=["a_0"],
        seeds=[7],
        log=QUIET,
    )[0]
    first = np.asarray(batch_run[0].image, dtype=float)
    np.testing.assert_allclose(np.asarray(again.image, dtype=float), first, atol=1)
    assert np.abs(np.asarray(other.image, dtype=float) - first).mean() > 5
    assert other.trace[0] != pytest.approx(batch_run[0].trace[0], abs=1e-4)


def test_a_batch_of_clips_equals_the_clips_run_one_by_one(encoder, batch_run):
    targets = unit_targets(2)
    for i, (clip_id, seed) in enumerate([("a_0", 1), ("b_0", 2)]):
        alone = generate(
            FakeVQGAN(),
            encoder,
            targets[i : i + 1],
            tiny_cfg(batch_clips=1),
            clip_ids=[clip_id],
            seeds=[seed],
            log=QUIET,
        )[0]
        together = batch_run[i]
        assert alone.clip_id == together.clip_id
        np.testing.assert_allclose(alone.trace, together.trace, atol=1e-5)
        diff = np.abs(np.asarray(alone.image, float) - np.asarray(together.image, float))
        assert diff.max() <= 1
        assert alone.final_similarity == pytest.approx(together.final_similarity, abs=1e-4)


def test_the_real_tiny_vqgan_is_steered_towards_the_target(encoder):
    # Whole-image cutouts without noise: a smooth objective, so a few steps must gain.
    vqgan = build_tiny_vqgan(seed=0)
    cfg = GenerateConfig(steps=8, lr=0.3, cutouts=2, size=(32, 32), cut_noise=0.0, cut_flip=False)
    params = {k: v.clone() for k, v in vqgan.state_dict().items()}
    result = generate(vqgan, encoder, unit_targets(1), cfg, clip_ids=["a_0"], seeds=[1], log=QUIET)[
        0
    ]
    assert result.trace[-1] > result.trace[0] + 0.03, result.trace
    assert result.final_similarity > result.trace[0] + 0.03
    assert result.image.size == (32, 32)
    assert all(torch.equal(v, params[k]) for k, v in vqgan.state_dict().items())  # frozen


class LatentSpy(FakeVQGAN):
    """Records every latent the loop hands to the quantiser (after each update, and the final)."""

    def __init__(self) -> None:
        super().__init__()
        self.latents: list[np.ndarray] = []

    def quantize_st(self, z: torch.Tensor) -> torch.Tensor:
        self.latents.append(z.detach().cpu().numpy().copy())
        return super().quantize_st(z)


class CutoutSpy:
    """The image encoder, recording the embeddings of every batch of cutouts it is given."""

    def __init__(self, inner) -> None:
        self.inner, self.preprocess, self.dim, self.name = (
            inner,
            inner.preprocess,
            inner.dim,
            inner.name,
        )
        self.cutout_embeddings: list[np.ndarray] = []

    def encode_images(self, images):
        out = self.inner.encode_images(images)
        if isinstance(images, torch.Tensor):  # the cutouts; the final PNGs come as a list
            self.cutout_embeddings.append(out.detach().cpu().numpy().copy())
        return out


def test_latents_stay_inside_the_codebook_range_after_every_step(encoder):
    # Adam moves each element by about lr per step: lr 5 leaves the codebook's range at once.
    vqgan = LatentSpy()
    cfg = tiny_cfg(steps=4, lr=5.0, cutouts=2)
    generate(vqgan, encoder, unit_targets(1), cfg, clip_ids=["a_0"], seeds=[1], log=QUIET)
    codebook = vqgan.embedding.detach().numpy()  # (n_embed, C)
    lo, hi = codebook.min(axis=0)[None, :, None, None], codebook.max(axis=0)[None, :, None, None]
    assert len(vqgan.latents) == cfg.steps + 1
    for z in vqgan.latents:
        assert (z >= lo).all() and (z <= hi).all()
    # the bound was reached, so the clamp (not a timid step) kept z inside
    assert any(np.isclose(z, hi).any() or np.isclose(z, lo).any() for z in vqgan.latents[1:])


def test_the_trace_is_the_mean_similarity_over_all_cutouts(encoder):
    spy = CutoutSpy(encoder)
    targets = unit_targets(2)
    cfg = tiny_cfg(steps=3, cutouts=5, batch_clips=2)
    results = generate(
        FakeVQGAN(), spy, targets, cfg, clip_ids=["a_0", "b_0"], seeds=[1, 2], log=QUIET
    )
    assert len(spy.cutout_embeddings) == cfg.steps
    t = targets.numpy()
    for step, emb in enumerate(spy.cutout_embeddings):
        per_cut = np.einsum("bnd,bd->bn", emb.reshape(2, cfg.cutouts, -1), t)  # (b, n)
        assert np.ptp(per_cut, axis=1).min() > 1e-4  # cutouts differ: the first is not the mean
        for i, result in enumerate(results):
            assert result.trace[step] == pytest.approx(per_cut[i].mean(), abs=1e-5)


def test_a_target_of_the_wrong_size_stops_with_both_sizes(encoder):
    with pytest.raises(ValueError, match=r"64 dimensions.*embeds into 128"):
        generate(
            FakeVQGAN(),
            encoder,
            unit_targets(1, dim=64),
            tiny_cfg(),
            clip_ids=["a_0"],
            seeds=[0],
            log=QUIET,
        )


def test_a_zero_target_still_generates_and_says_it_was_not_guided(encoder):
    lines = []
    result = generate(
        FakeVQGAN(),
        encoder,
        torch.zeros(1, 128),
        tiny_cfg(steps=3),
        clip_ids=["quiet_0"],
        seeds=[0],
        log=lines.append,
    )[0]
    assert result.target_norm == 0.0
    assert result.trace == [0.0, 0.0, 0.0] and result.final_similarity == 0.0
    assert any("not guided" in line for line in lines) and result.notes
    assert np.asarray(result.image).std() > 0  # a real (random-token) image, not NaN/black


def test_unnormalised_targets_are_normalised_and_their_norm_recorded(encoder):
    target = unit_targets(1) * 3.5
    result = generate(
        FakeVQGAN(), encoder, target, tiny_cfg(steps=1), clip_ids=["a_0"], seeds=[1], log=QUIET
    )[0]
    assert result.target_norm == pytest.approx(3.5, rel=1e-5)
    assert -1.0 <= result.trace[0] <= 1.0


def test_progress_frames_every_k_steps(encoder, tmp_path):
    generate(
        FakeVQGAN(),
        encoder,
        unit_targets(1),
        tiny_cfg(steps=5, save_every=2),
        clip_ids=["a_0"],
        seeds=[1],
        progress_dir=tmp_path,
        log=QUIET,
    )
    names = sorted(p.name for p in (tmp_path / "a_0").iterdir())
    assert names == ["step_00000.png", "step_00002.png", "step_00004.png"]


def test_config_is_strict_and_checks_the_size_against_the_vqgan(encoder):
    with pytest.raises(ValueError, match="stepz"):
        GenerateConfig.from_dict({"stepz": 3})
    cfg = GenerateConfig.from_dict({"size": [64, 32], "steps": 2})
    assert cfg.size == (64, 32) and GenerateConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="init"):
        GenerateConfig(init="zeros")
    with pytest.raises(ValueError, match="multiple of the VQGAN's downsample factor 4"):
        generate(
            FakeVQGAN(),
            encoder,
            unit_targets(1),
            tiny_cfg(size=(66, 64)),
            clip_ids=["a_0"],
            seeds=[0],
            log=QUIET,
        )


def test_clamp_passes_only_gradients_that_point_back_into_range():
    x = torch.tensor([-0.5, -0.5, 0.5, 1.5, 1.5], requires_grad=True)
    y = clamp_inward(x)
    assert y.tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]
    # Descent moves x by -grad: below range, a negative grad raises x (kept); above, positive.
    (grad,) = torch.autograd.grad(y, x, torch.tensor([1.0, -1.0, 1.0, 1.0, -1.0]))
    assert grad.tolist() == [0.0, -1.0, 1.0, 1.0, 0.0]


def test_spherical_distance_is_zero_at_the_target_and_grows_with_the_angle():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    t = torch.tensor([1.0, 0.0])
    d = spherical_distance_sq(a, t)
    # 2 * (angle / 2) ** 2 for angles 0, pi/2, pi.
    np.testing.assert_allclose(
        d.tolist(), [0.0, 2 * (np.pi / 4) ** 2, 2 * (np.pi / 2) ** 2], rtol=1e-5
    )


# -- cutouts -------------------------------------------------------------------------------------


def test_cutouts_have_the_encoder_size_and_are_seeded_per_image():
    images = torch.rand(2, 3, 48, 64)
    settings = CutoutSettings(n=5, cut_pow=1.0, min_size=8)
    cuts = make_cutouts(images, 32, settings, [CutoutRng(1), CutoutRng(2)])
    assert cuts.shape == (10, 3, 32, 32)
    again = make_cutouts(images, 32, settings, [CutoutRng(1), CutoutRng(2)])
    assert torch.equal(cuts, again)
    # Image 0's cutouts do not depend on its batch neighbours.
    alone = make_cutouts(images[:1], 32, settings, [CutoutRng(1)])
    assert torch.equal(alone, cuts[:5])
    other = make_cutouts(images[:1], 32, settings, [CutoutRng(3)])
    assert not torch.allclose(other, cuts[:5])


def test_crop_sizes_stay_inside_the_image_and_cut_pow_favours_small_crops():
    def sides(cut_pow: float) -> list[int]:
        settings = CutoutSettings(n=200, cut_pow=cut_pow, min_size=8)
        boxes = crop_boxes(48, 64, 32, settings, CutoutRng(0))
        for top, left, side in boxes:
            assert 8 <= side <= 48 and 0 <= top <= 48 - side and 0 <= left <= 64 - side
        return [side for _, _, side in boxes]

    assert np.mean(sides(3.0)) < np.mean(sides(1.0)) - 5
    # Default minimum: the encoder's size, capped by the image.
    assert {s for *_, s in crop_boxes(48, 64, 128, CutoutSettings(n=10), CutoutRng(0))} == {48}


def test_cutouts_pass_gradients_to_the_pixels():
    images = torch.rand(1, 3, 40, 40, requires_grad=True)
    cuts = make_cutouts(images, 16, CutoutSettings(n=3, min_size=10), [CutoutRng(0)])
    (grad,) = torch.autograd.grad(cuts.sum(), images)
    assert grad.abs().sum() > 0


def test_cutout_settings_reject_bad_values():
    with pytest.raises(ValueError, match="cut_pow"):
        CutoutSettings(cut_pow=0)
    with pytest.raises(ValueError, match="cutouts"):
        GenerateConfig(cutouts=0)


# -- PNG -----------------------------------------------------------------------------------------


def test_png_text_chunks_and_pixels_round_trip(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 255, (8, 12, 3), dtype=np.uint8)
    meta = {"clip_id": "abc_1000", "label": "狗叫; café", "final_similarity": "0.25"}
    path = tmp_path / "x.png"
    save_png(Image.fromarray(pixels), path, metadata=meta)
    got = read_png_metadata(path)
    assert {k: got[k] for k in meta} == meta and got["Software"] == "wavbrivl"
    assert np.array_equal(np.asarray(Image.open(path)), pixels)
    assert not [p for p in tmp_path.iterdir() if p.name != "x.png"]  # no temp file left
    with pytest.raises(ValueError, match="PNG text key"):
        save_png(Image.fromarray(pixels), tmp_path / "y.png", metadata={" bad": "x"})
    assert not (tmp_path / "y.png").exists()


# -- the stage: audio model + media + manifest -> folder ------------------------------------------


def flac_bytes(samples: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples.astype(np.float32), SR, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def save_tiny_audio_model(
    tmp_path: Path, image_dim: int = 128, fingerprint: str | None = None
) -> Path:
    """An untrained tiny audio model into ``image_dim``, recorded as trained on the image
    encoder ``fingerprint`` (None: no record, as in models saved before it was kept)."""
    from wavbrivl.audio.encoder import AudioEncoderConfig, build_audio_encoder
    from wavbrivl.audio.tiny import TINY_AUDIO, TINY_MOCO, save_tiny_wavlm
    from wavbrivl.train.checkpoint import save_audio_encoder
    from wavbrivl.train.moco import CrossModalMoCo, MoCoConfig

    wavlm = tmp_path / f"wavlm{image_dim}"
    if not wavlm.exists():
        save_tiny_wavlm(wavlm, seed=0)
    torch.manual_seed(0)
    model = CrossModalMoCo(
        build_audio_encoder(AudioEncoderConfig(wavlm=str(wavlm), **TINY_AUDIO)),
        MoCoConfig(**(TINY_MOCO | {"image_dim": image_dim, "queue_size": 8})),
    )
    return save_audio_encoder(
        tmp_path / f"audio_encoder_{image_dim}.pt",
        model,
        step=0,
        train_config={},
        image_encoder_fingerprint=fingerprint,
    )


def write_inputs(tmp_path: Path) -> tuple[Path, Path]:
    t = np.arange(SR) / SR
    rows = [
        ("tone_0", "ok", "", flac_bytes(0.5 * np.sin(2 * np.pi * 440 * t))),
        ("silent_0", "ok", "", flac_bytes(np.zeros(SR))),
        ("gone_0", "unavailable", "video removed", None),
        ("broken_0", "ok", "", b"not a flac file"),
    ]
    media = tmp_path / "media.parquet"
    pq.write_table(
        pa.table(
            {
                "clip_id": [r[0] for r in rows],
                "status": [r[1] for r in rows],
                "reason": [r[2] for r in rows],
                "audio": pa.array([r[3] for r in rows], pa.binary()),
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


def test_generate_for_clips_writes_images_trace_targets_and_record(encoder, tmp_path):
    from wavbrivl.train.checkpoint import load_trained_model

    model_path = save_tiny_audio_model(tmp_path)
    media, manifest = write_inputs(tmp_path)
    out = tmp_path / "out"
    cfg = tiny_cfg(steps=3, batch_clips=2, save_every=2)
    vqgan = build_tiny_vqgan(seed=0)
    record = generate_for_clips(
        model_path, media, manifest, out, vqgan, encoder, cfg, log=QUIET
    )  # fmt: skip

    clips = {c["clip_id"]: c for c in record["clips"]}
    assert sorted(clips) == ["silent_0", "tone_0"]
    skipped = {s["clip_id"]: s["reason"] for s in record["skipped"]}
    assert "video removed" in skipped["gone_0"] and "not usable" in skipped["broken_0"]
    assert clips["tone_0"]["label"] == "Sine wave"
    assert clips["silent_0"]["label"] == "/m/silence"  # no display name: the label id
    assert clips["tone_0"]["png"] == "tone_0.png" and (out / clips["tone_0"]["png"]).is_file()

    # Targets: the model's embed_audio, and the norm before normalisation.
    model = load_trained_model(model_path)
    table = pq.read_table(out / "targets.parquet")
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 128)
    rows = {r["clip_id"]: r for r in table.to_pylist()}
    columns = pq.read_table(media, columns=["clip_id", "audio"]).to_pydict()
    audio = dict(zip(columns["clip_id"], columns["audio"], strict=True))
    for clip_id in ("tone_0", "silent_0"):
        wave = torch.from_numpy(decode_audio(audio[clip_id]))
        lengths = torch.tensor([len(wave)])
        expected = model.embed_audio(wave[None], lengths)[0]
        unit, norm = model.embed_audio(wave[None], lengths, return_norm=True)
        assert torch.allclose(unit[0], expected, atol=1e-5)
        np.testing.assert_allclose(rows[clip_id]["embedding"], expected.numpy(), atol=1e-5)
        assert rows[clip_id]["target_norm"] == pytest.approx(float(norm[0]), rel=1e-5)
        assert clips[clip_id]["target_norm"] == pytest.approx(float(norm[0]), rel=1e-5)

    # PNG metadata says what made it.
    meta = read_png_metadata(out / "silent_0.png")
    assert meta["clip_id"] == "silent_0" and meta["steps"] == "3"
    assert float(meta["target_norm"]) == pytest.approx(clips["silent_0"]["target_norm"], rel=1e-4)
    assert meta["image_encoder_fingerprint"] == encoder.fingerprint
    assert meta["vqgan_fingerprint"] == vqgan.fingerprint == record["fingerprints"]["vqgan"]
    assert meta["audio_model_fingerprint"] == record["fingerprints"]["audio_model"]
    assert int(meta["seed"]) == clips["silent_0"]["seed"]

    trace = (out / "trace.tsv").read_text().splitlines()
    assert trace[0] == "clip_id\tstep\tsimilarity" and len(trace) == 1 + 2 * 3
    assert json.loads((out / "generation.json").read_text()) == record
    assert sorted(p.name for p in (out / "progress" / "tone_0").iterdir()) == [
        "step_00000.png",
        "step_00002.png",
    ]


def test_generate_for_clips_refuses_a_model_of_another_image_space(encoder, tmp_path):
    model_path = save_tiny_audio_model(tmp_path, image_dim=64)
    media, manifest = write_inputs(tmp_path)
    with pytest.raises(ValueError, match=r"into 64 dimensions.*into 128"):
        generate_for_clips(
            model_path, media, manifest, tmp_path / "out", FakeVQGAN(), encoder, tiny_cfg(),
            vqgan_fingerprint="x", log=QUIET,
        )  # fmt: skip
    assert not (tmp_path / "out").exists()
    other = save_tiny_audio_model(tmp_path, fingerprint="f" * 64)  # same dimension
    with pytest.raises(
        ValueError, match=f"trained on image encoder {'f' * 64}, .*{encoder.fingerprint}"
    ):
        generate_for_clips(
            other, media, manifest, tmp_path / "out", FakeVQGAN(), encoder, tiny_cfg(),
            vqgan_fingerprint="x", log=QUIET,
        )  # fmt: skip
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="no fingerprint"):  # a VQGAN of unknown weights
        generate_for_clips(
            model_path, media, manifest, tmp_path / "out", FakeVQGAN(), encoder, tiny_cfg(),
            log=QUIET,
        )  # fmt: skip


def test_a_run_where_no_clip_is_usable_still_writes_empty_records(encoder, tmp_path):
    model_path = save_tiny_audio_model(tmp_path)
    media, manifest = write_inputs(tmp_path)
    lines = []
    record = generate_for_clips(
        model_path, media, manifest, tmp_path / "out", FakeVQGAN(), encoder, tiny_cfg(),
        vqgan_fingerprint="x", clip_ids=["gone_0", "broken_0", "absent_0"], log=lines.append,
    )  # fmt: skip
    assert record["clips"] == []
    reasons = {s["clip_id"]: s["reason"] for s in record["skipped"]}
    assert reasons["absent_0"] == "not in the media shards" and set(reasons) == {
        "gone_0",
        "broken_0",
        "absent_0",
    }
    table = pq.read_table(tmp_path / "out" / "targets.parquet")
    assert table.num_rows == 0 and table.schema.field("embedding").type.list_size == 128
    assert (tmp_path / "out" / "trace.tsv").read_text() == "clip_id\tstep\tsimilarity\n"
    assert any("nothing generated" in line for line in lines)


def test_the_png_paths_can_be_imported_without_torch():
    # The sheets read generated PNGs; the package's names load their modules on first use.
    code = (
        "import sys, wavbrivl.generate.png as png; from wavbrivl.generate import save_png; "
        "assert 'torch' not in sys.modules, 'torch imported'; print(png.generated_png_name('a_0'))"
    )
    src = Path(__file__).resolve().parents[1] / "src"
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(src)},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "a_0.png"


def test_every_key_of_the_schemas_generate_block_is_a_field_or_workflow_only():
    """run_generation gets the workflow's whole ``generate`` block: a key the schema adds
    (say for another generation method) must be a GenerateConfig field or listed as
    workflow-only, or every VQGAN job stops with 'unknown generate config key(s)'."""
    import dataclasses

    import yaml

    from wavbrivl.generate.loop import GenerateConfig
    from wavbrivl.generate.stage import WORKFLOW_ONLY_KEYS

    schema = yaml.safe_load(
        (Path(__file__).parents[1] / "workflow/schemas/config.schema.yaml").read_text()
    )
    keys = set(schema["properties"]["generate"]["properties"])
    fields = {f.name for f in dataclasses.fields(GenerateConfig)}
    assert keys - fields - set(WORKFLOW_ONLY_KEYS) == set()
