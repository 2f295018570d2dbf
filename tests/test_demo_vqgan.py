"""The demo's VQGAN training (wavbrivl.demo.vqgan_train) on tiny sets of known pictures.

Expected values come from the pictures themselves (a red field is (255, 0, 0) everywhere),
from a hand computation of the loss terms, or from the existing taming loader, never from
the training code's own numbers.
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from wavbrivl.demo.vqgan_train import (
    DEMO_VQGAN,
    DemoVQGANConfig,
    frames_to_tensor,
    init_codebook,
    read_training_frames,
    restart_dead_codes,
    run_demo_vqgan,
    save_taming_checkpoint,
    taming_yaml,
    train_demo_vqgan,
    vq_step,
    write_train_log,
)
from wavbrivl.extract.media import MEDIA_SCHEMA
from wavbrivl.vqgan import VQGAN, VQGANConfig, load_vqgan, read_taming_yaml

RED, BLUE, GREEN, GREY = (255, 0, 0), (0, 0, 255), (0, 255, 0), (128, 128, 128)


def field(rgb, size=16):
    return Image.new("RGB", (size, size), rgb)


def jpeg(image):
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def write_shard(path, rows):
    full = [{name: row.get(name) for name in MEDIA_SCHEMA.names} for row in rows]
    pq.write_table(pa.Table.from_pylist(full, schema=MEDIA_SCHEMA), path)
    return path


# The smallest VQGAN the architecture allows (GroupNorm needs width 32): f = 2, 8 codes,
# so that training runs in seconds on a busy CPU. DEMO_VQGAN itself is checked on its files.
MICRO = VQGANConfig(
    embed_dim=4,
    n_embed=8,
    ch=32,
    ch_mult=(1, 1),
    num_res_blocks=1,
    attn_resolutions=(),
    z_channels=32,
    resolution=8,
)


def seeded_model(seed=0, arch=MICRO):
    torch.manual_seed(seed)
    return VQGAN(arch)


FIELDS = frames_to_tensor([field(c) for c in (RED, BLUE, GREEN, GREY)], 8)
QUICK = {"steps": 40, "batch_size": 4, "image_size": 8, "lr": 0.003, "restart_every": 10}


def train(cfg, **kwargs):
    return train_demo_vqgan(FIELDS, cfg, arch=MICRO, **kwargs)


# -- frames ------------------------------------------------------------------------------------


def test_frames_become_minus_one_to_one_channels_first():
    x = frames_to_tensor([field(RED, 24), field((0, 255, 51), 24)], 8)
    assert x.shape == (2, 3, 8, 8)
    assert x.dtype == torch.float32
    assert torch.equal(x[0, :, 3, 5], torch.tensor([1.0, -1.0, -1.0]))
    # 51 / 127.5 - 1 = -0.6
    assert torch.allclose(x[1, :, 0, 0], torch.tensor([-1.0, 1.0, -0.6]))


def test_training_frames_are_the_ok_wanted_clips_sorted_by_id(tmp_path):
    a = write_shard(
        tmp_path / "000.parquet",
        [
            {"clip_id": "z_red", "status": "ok", "reason": "", "frame": jpeg(field(RED))},
            {"clip_id": "gone", "status": "unavailable", "reason": "Video unavailable"},
            {"clip_id": "test_blue", "status": "ok", "reason": "", "frame": jpeg(field(BLUE))},
        ],
    )
    b = write_shard(
        tmp_path / "001.parquet",
        [{"clip_id": "a_green", "status": "ok", "reason": "", "frame": jpeg(field(GREEN))}],
    )
    x, ids = read_training_frames([a, b], ["z_red", "gone", "a_green", "missing"], 4)
    assert ids == ["a_green", "z_red"]
    assert x.shape == (2, 3, 4, 4)
    mean_rgb = x.mean(dim=(2, 3))  # JPEG: close to the field's colour, not exact
    assert torch.allclose(mean_rgb[0], torch.tensor([-1.0, 1.0, -1.0]), atol=0.05)
    assert torch.allclose(mean_rgb[1], torch.tensor([1.0, -1.0, -1.0]), atol=0.05)


def test_no_training_frame_is_an_error_naming_the_shards(tmp_path):
    a = write_shard(
        tmp_path / "000.parquet",
        [{"clip_id": "x", "status": "ok", "reason": "", "frame": jpeg(field(RED))}],
    )
    with pytest.raises(ValueError, match="no ok training frame in the media shards.*000.parquet"):
        read_training_frames([a], ["not_there"], 4)


# -- config ------------------------------------------------------------------------------------


def test_config_defaults_come_from_the_schema():
    import yaml

    from wavbrivl.configs import SCHEMA_PATH

    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    props = schema["properties"]["demo"]["properties"]["vqgan"]["properties"]
    cfg = DemoVQGANConfig()
    assert {k: v["default"] for k, v in props.items()} == {
        "steps": cfg.steps,
        "batch_size": cfg.batch_size,
        "lr": cfg.lr,
        "image_size": cfg.image_size,
        "beta": cfg.beta,
        "restart_every": cfg.restart_every,
        "seed": cfg.seed,
    }


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"steps": 0}, "demo.vqgan.steps must be at least 1"),
        ({"batch_size": 0}, "demo.vqgan.batch_size must be at least 1"),
        ({"image_size": 0}, "demo.vqgan.image_size must be at least 1"),
        ({"lr": 0.0}, "demo.vqgan.lr must be positive"),
        ({"beta": -0.1}, "must not be negative"),
        ({"restart_every": -1}, "must not be negative"),
        ({"stepz": 3}, "unknown demo.vqgan config key"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(values, message):
    with pytest.raises(ValueError, match=message):
        DemoVQGANConfig.from_dict(values)


def test_edge_settings_are_accepted():
    cfg = DemoVQGANConfig.from_dict(
        {"steps": 1, "batch_size": 1, "image_size": 1, "beta": 0.0, "restart_every": 0}
    )
    assert (cfg.steps, cfg.beta, cfg.restart_every) == (1, 0.0, 0)


# -- one step ----------------------------------------------------------------------------------


def test_step_loss_is_reconstruction_plus_codebook_plus_weighted_commitment():
    model = seeded_model()
    x = FIELDS[:2]
    out = vq_step(model, x, beta=0.5)
    with torch.no_grad():  # recomputed by hand from the model's parts
        z = model.quant_conv(model.encoder(x))
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        book = model.quantize.embedding.weight
        idx = torch.cdist(flat, book).argmin(1)
        z_q = book[idx].reshape(z.shape[0], z.shape[2], z.shape[3], -1).permute(0, 3, 1, 2)
        rebuilt = model.decoder(model.post_quant_conv(z_q))
        recon = ((rebuilt - x) ** 2).mean()
        vq = ((z - z_q) ** 2).mean()
    assert out.indices.shape == (2, 4, 4)  # 8 px / f = 2
    assert torch.equal(out.indices.flatten(), idx)
    assert out.recon == pytest.approx(recon.item(), rel=1e-4)
    assert out.codebook == pytest.approx(vq.item(), rel=1e-4)
    assert out.loss.item() == pytest.approx(recon.item() + 1.5 * vq.item(), rel=1e-4)


def test_step_gradient_reaches_encoder_and_codebook():
    model = seeded_model()
    out = vq_step(model, FIELDS[:2], beta=0.25)
    out.loss.backward()
    assert model.encoder.conv_in.weight.grad.abs().sum() > 0  # straight-through
    assert model.quantize.embedding.weight.grad.abs().sum() > 0  # codebook term
    assert model.decoder.conv_out.weight.grad.abs().sum() > 0


def test_the_codebook_term_pulls_codes_and_commitment_pulls_the_encoder():
    # beta = 0: the encoder gets gradient only through the reconstruction
    model = seeded_model()
    x = FIELDS[:2]
    vq_step(model, x, beta=0.0).loss.backward()
    g0 = model.encoder.conv_in.weight.grad.clone()
    model.zero_grad()
    vq_step(model, x, beta=10.0).loss.backward()
    assert not torch.allclose(g0, model.encoder.conv_in.weight.grad)


# -- codebook care -----------------------------------------------------------------------------


def _latents(model, x):
    with torch.no_grad():
        z = model.encode(x)
    return z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])


def _all_are_rows_of(vectors, rows):
    squared = ((vectors[:, None, :] - rows[None, :, :]) ** 2).sum(-1)  # (K, M)
    return bool((squared.min(dim=1).values < 1e-10).all())


def test_codebook_starts_from_latents_of_the_batch():
    model = seeded_model()
    x = FIELDS
    init_codebook(model, x, torch.Generator().manual_seed(1))
    latents = _latents(model, x)
    assert _all_are_rows_of(model.codebook.detach(), latents)  # every code is a batch latent
    assert model.codebook.shape == (MICRO.n_embed, MICRO.embed_dim)


def test_only_unused_codes_are_restarted_onto_latents():
    model = seeded_model()
    before = model.codebook.detach().clone()
    used = torch.ones(MICRO.n_embed, dtype=torch.long)
    used[[0, 3, 7]] = 0
    moved = restart_dead_codes(model, FIELDS, used, torch.Generator().manual_seed(0))
    assert moved == 3
    after = model.codebook.detach()
    changed = (after != before).any(dim=1).nonzero().flatten().tolist()
    assert changed == [0, 3, 7]
    latents = _latents(model, FIELDS)
    assert _all_are_rows_of(after[[0, 3, 7]], latents)


def test_no_unused_code_moves_nothing():
    model = seeded_model()
    before = model.codebook.detach().clone()
    used = torch.full((MICRO.n_embed,), 2, dtype=torch.long)
    assert restart_dead_codes(model, FIELDS, used, torch.Generator().manual_seed(0)) == 0
    assert torch.equal(model.codebook.detach(), before)


# -- training ----------------------------------------------------------------------------------


def test_training_lowers_the_loss_and_draws_a_red_field_better_than_a_random_decoder():
    trained = train(DemoVQGANConfig(**QUICK))
    rows = trained.log_rows
    assert [r["step"] for r in rows] == list(range(1, 41))
    first = np.mean([r["loss"] for r in rows[:5]])
    last = np.mean([r["loss"] for r in rows[-5:]])
    assert last < 0.5 * first
    assert all(1 <= r["codes_used"] <= MICRO.n_embed for r in rows)
    assert not trained.model.training  # handed over frozen
    assert not any(p.requires_grad for p in trained.model.parameters())

    red = frames_to_tensor([field(RED)], 8)
    target = torch.tensor([255.0, 0.0, 0.0]).view(1, 3, 1, 1)  # the field's own pixels

    def pixel_error(model):
        with torch.no_grad():
            out = model(red).clamp(-1, 1)
        pixels = (out + 1) * 127.5  # back to 0..255
        return (pixels - target).abs().mean().item(), pixels.mean(dim=(0, 2, 3))

    trained_err, trained_rgb = pixel_error(trained.model)
    random_err, _ = pixel_error(seeded_model())
    assert trained_err < 0.5 * random_err
    assert trained_err < 60  # of 255
    assert trained_rgb[0] > 150 and trained_rgb[1] < 100 and trained_rgb[2] < 100


def test_training_is_seeded_and_leaves_the_callers_rng_alone():
    cfg = DemoVQGANConfig(**{**QUICK, "steps": 3})
    torch.manual_seed(123)
    a = train(cfg)
    after_a = torch.rand(1)
    torch.manual_seed(123)
    b = train(cfg)
    assert torch.equal(after_a, torch.rand(1))
    for (name, va), vb in zip(
        a.model.state_dict().items(), b.model.state_dict().values(), strict=True
    ):
        assert torch.equal(va, vb), name
    c = train(DemoVQGANConfig(**{**QUICK, "steps": 3, "seed": 1}))
    assert not torch.equal(a.model.codebook, c.model.codebook)


def test_restarts_happen_at_the_configured_interval():
    messages = []
    train(DemoVQGANConfig(**{**QUICK, "steps": 7, "restart_every": 3}), log=messages.append)
    assert [m.split(":")[0] for m in messages] == ["step 3", "step 6"]
    quiet = []
    train(DemoVQGANConfig(**{**QUICK, "steps": 4, "restart_every": 0}), log=quiet.append)
    assert quiet == []


# -- the files generation reads ----------------------------------------------------------------


def test_checkpoint_loads_with_the_taming_loader_and_decodes_the_same(tmp_path):
    model = seeded_model(3, DEMO_VQGAN).eval()
    save_taming_checkpoint(model, tmp_path / "m.ckpt", tmp_path / "m.yaml")
    assert read_taming_yaml(tmp_path / "m.yaml") == DEMO_VQGAN
    loaded = load_vqgan(tmp_path / "m.ckpt", tmp_path / "m.yaml")
    tokens = torch.randint(MICRO.n_embed, (1, 4, 4), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = model.decode(model.tokens_to_latent(tokens))
        got = loaded.decode(loaded.tokens_to_latent(tokens))
    assert torch.equal(want, got)
    assert loaded.name == "vqgan(m.ckpt)"
    assert len(loaded.fingerprint) == 64


def test_yaml_is_a_taming_model_config():
    import yaml

    doc = yaml.safe_load(taming_yaml(DEMO_VQGAN))
    assert doc["model"]["target"] == "taming.models.vqgan.VQModel"
    params = doc["model"]["params"]
    assert (params["embed_dim"], params["n_embed"]) == (16, 64)
    assert params["ddconfig"]["ch_mult"] == [1, 1, 1]
    assert "embed_dim" not in params["ddconfig"]


def test_train_log_is_a_tsv_with_a_header(tmp_path):
    rows = [
        {"step": 1, "loss": 0.5, "recon": 0.25, "codebook": 0.125, "codes_used": 7},
        {"step": 2, "loss": 1.0 / 3, "recon": 0.2, "codebook": 0.1, "codes_used": 9},
    ]
    write_train_log(rows, tmp_path / "log.tsv")
    assert (tmp_path / "log.tsv").read_text() == (
        "step\tloss\trecon\tcodebook\tcodes_used\n"
        "1\t0.5\t0.25\t0.125\t7\n"
        "2\t0.333333\t0.2\t0.1\t9\n"
    )


def test_run_writes_checkpoint_yaml_and_log_from_media_shards(tmp_path):
    shard = write_shard(
        tmp_path / "000.parquet",
        [
            {"clip_id": f"c{i}", "status": "ok", "reason": "", "frame": jpeg(field(rgb))}
            for i, rgb in enumerate((RED, BLUE, GREEN))
        ],
    )
    messages = []
    out = tmp_path / "out"
    trained = run_demo_vqgan(
        media_paths=[shard],
        clip_ids=["c0", "c2"],
        ckpt_path=out / "v.ckpt",
        yaml_path=out / "v.yaml",
        log_path=out / "log.tsv",
        block={"steps": 2, "batch_size": 2, "image_size": 8, "restart_every": 0},
        log=messages.append,
    )
    assert messages == ["training the demo VQGAN on 2 frames at 8px, 2 steps"]
    assert len((out / "log.tsv").read_text().splitlines()) == 3
    loaded = load_vqgan(out / "v.ckpt", out / "v.yaml")
    for (name, want), got in zip(
        trained.model.state_dict().items(), loaded.state_dict().values(), strict=True
    ):
        assert torch.equal(want, got), name


def test_run_refuses_an_unknown_setting_before_reading(tmp_path):
    with pytest.raises(ValueError, match="unknown demo.vqgan config key"):
        run_demo_vqgan(
            media_paths=[tmp_path / "absent.parquet"],
            clip_ids=[],
            ckpt_path=tmp_path / "v.ckpt",
            yaml_path=tmp_path / "v.yaml",
            log_path=tmp_path / "log.tsv",
            block={"step": 2},
            log=print,
        )


def test_mse_is_what_the_reconstruction_term_measures():
    # A model whose decoder output is known: compare against F.mse_loss of that output.
    model = seeded_model()
    out = vq_step(model, FIELDS[:1], beta=0.0)
    with torch.no_grad():
        rebuilt = model.decode(model.quantize.lookup(out.indices))
    assert out.recon == pytest.approx(F.mse_loss(rebuilt, FIELDS[:1]).item(), rel=1e-5)
