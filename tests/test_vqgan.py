"""Our VQGAN against taming-transformers: same state-dict layout at full size, same numbers at
toy size (fixture made with taming's own modules), strict loading of Lightning checkpoints and
taming YAML configs, refusal of untrusted pickles, straight-through quantisation."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
import torch

from wavbrivl.vqgan import (
    TINY_VQGAN,
    VQGAN,
    VQGAN_IMAGENET_F16_16384,
    CheckpointError,
    CheckpointMismatchError,
    UntrustedCheckpointError,
    VQGANConfig,
    build_tiny_vqgan,
    load_vqgan,
    read_taming_yaml,
)

FIXTURES = Path(__file__).parent / "fixtures"
PARITY = FIXTURES / "vqgan_parity_tiny.pt"
# Max |ours - taming| on the fixture, CPU float32 (1 and 2 threads): decode 4.0e-6 (outputs up
# to 2.9), encode 2.0e-6. Bounds about 5x that: GroupNorm's torch-default eps 1e-5 instead of
# taming's 1e-6 (decode 2.0e-4 off) or an attention scale 0.1 % off (3.3e-4) fails.
DECODE_ATOL = 2e-5
ENCODE_ATOL = 1e-5

# Laid out like taming's released vqgan_imagenet_f16_16384.yaml (model part).
TAMING_F16_16384_YAML = """\
model:
  base_learning_rate: 4.5e-06
  target: taming.models.vqgan.VQModel
  params:
    embed_dim: 256
    n_embed: 16384
    monitor: val/rec_loss
    ddconfig:
      double_z: false
      z_channels: 256
      resolution: 256
      in_channels: 3
      out_ch: 3
      ch: 128
      ch_mult:
      - 1
      - 1
      - 2
      - 2
      - 4
      num_res_blocks: 2
      attn_resolutions:
      - 16
      dropout: 0.0
    lossconfig:
      target: taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator
      params:
        disc_conditional: false
        disc_in_channels: 3
        disc_start: 0
        disc_weight: 0.75
        disc_num_layers: 2
        codebook_weight: 1.0
"""


def _taming_yaml(cfg: VQGANConfig, **ddconfig_overrides) -> str:
    dd = {k: v for k, v in cfg.to_dict().items() if k not in ("embed_dim", "n_embed")}
    dd.update(ddconfig_overrides)
    dd_lines = "\n".join(f"      {k}: {json.dumps(v)}" for k, v in dd.items())
    return (
        "model:\n  target: taming.models.vqgan.VQModel\n  params:\n"
        f"    embed_dim: {cfg.embed_dim}\n    n_embed: {cfg.n_embed}\n"
        f"    ddconfig:\n{dd_lines}\n"
        "    lossconfig:\n      target: taming.modules.losses.dummy.DummyLoss\n"
    )


@pytest.fixture(scope="module")
def parity() -> dict:
    return torch.load(PARITY, weights_only=True)


@pytest.fixture
def tiny_state(parity) -> dict[str, torch.Tensor]:
    return dict(parity["state_dict"])


def _save_ckpt(path: Path, state: dict, **extra) -> Path:
    torch.save({"state_dict": state, "epoch": 3, "global_step": 1000, **extra}, path)
    return path


# --- architecture and numerical parity ------------------------------------------------------


def test_full_size_state_dict_matches_taming_key_for_key():
    public = json.loads((FIXTURES / "vqgan_f16_16384_state_keys.json").read_text())["state_keys"]
    with torch.device("meta"):  # full size without allocating weights
        model = VQGAN(VQGAN_IMAGENET_F16_16384)
    ours = [[key, list(t.shape)] for key, t in model.state_dict().items()]
    assert len(ours) == len(public) == 343
    assert ours == public
    assert model.downsample_factor == 16 and model.latent_size(256, 256) == (16, 16)


def test_reproduces_taming_outputs_through_the_loader(parity):
    """The fixture holds random weights in a Lightning checkpoint (with loss.* entries), inputs
    and what taming's VQModel computed (tests/parity/make_vqgan_fixture.py); the loaded model
    agrees to float32 rounding."""
    assert parity["config"] == TINY_VQGAN.to_dict()
    assert any(k.startswith("loss.") for k in parity["state_dict"])
    model = load_vqgan(PARITY, TINY_VQGAN)
    with torch.no_grad():
        decoded = model.decode(parity["z"])
        encoded = model.encode(parity["x"])
        quantized = model.quantize_st(parity["expected_encode"])
        indices = model.quantize.nearest_indices(parity["expected_encode"])
    assert decoded.shape == (2, 3, 32, 32)
    torch.testing.assert_close(decoded, parity["expected_decode"], atol=DECODE_ATOL, rtol=0)
    torch.testing.assert_close(encoded, parity["expected_encode"], atol=ENCODE_ATOL, rtol=0)
    assert torch.equal(indices, parity["expected_indices"])
    assert torch.equal(quantized, parity["expected_quantized"])


def test_loading_from_a_taming_yaml_gives_the_same_model(parity, tmp_path):
    yaml_path = tmp_path / "tiny.yaml"
    yaml_path.write_text(_taming_yaml(TINY_VQGAN))
    model = load_vqgan(PARITY, yaml_path)
    assert model.cfg == TINY_VQGAN
    with torch.no_grad():
        decoded = model.decode(parity["z"])
    torch.testing.assert_close(decoded, parity["expected_decode"], atol=DECODE_ATOL, rtol=0)


# --- taming YAML ----------------------------------------------------------------------------


def test_reads_the_released_f16_16384_yaml(tmp_path):
    path = tmp_path / "vqgan_imagenet_f16_16384.yaml"
    path.write_text(TAMING_F16_16384_YAML)
    assert read_taming_yaml(path) == VQGAN_IMAGENET_F16_16384
    assert VQGANConfig.from_taming_yaml(path) == VQGAN_IMAGENET_F16_16384


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model:\n  params:\n    embed_dim: 4\n    n_embed: 8\n", "model.params.ddconfig"),
        (_taming_yaml(TINY_VQGAN, ch_mul=[1, 2]), "ch_mul"),  # typo must not pass
        (_taming_yaml(TINY_VQGAN, resamp_with_conv=False), "resamp_with_conv"),
        (
            _taming_yaml(TINY_VQGAN).replace("vqgan.VQModel", "vqgan.GumbelVQ"),
            "GumbelVQ",
        ),
        (_taming_yaml(TINY_VQGAN).replace("    n_embed: 64\n", ""), "n_embed"),
        ("data:\n  target: main.DataModuleFromConfig\n", "model.params"),
    ],
)
def test_bad_yaml_is_an_error_naming_file_and_key(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as info:
        read_taming_yaml(path)
    assert str(path) in str(info.value)


# --- checkpoint loading ---------------------------------------------------------------------


def test_missing_and_unexpected_keys_are_listed_loss_keys_are_not(tiny_state, tmp_path):
    del tiny_state["decoder.conv_out.bias"]
    tiny_state["decoder.extra.weight"] = torch.zeros(1)
    path = _save_ckpt(tmp_path / "broken.ckpt", tiny_state)
    with pytest.raises(CheckpointMismatchError) as info:
        load_vqgan(path, TINY_VQGAN)
    message = str(info.value)
    assert str(path) in message
    assert "1 missing: ['decoder.conv_out.bias']" in message
    assert "1 unexpected: ['decoder.extra.weight']" in message
    assert "loss." not in message


def test_a_different_architecture_reports_shape_mismatches(tmp_path, tiny_state):
    path = _save_ckpt(tmp_path / "tiny.ckpt", tiny_state)
    other = VQGANConfig.from_dict({**TINY_VQGAN.to_dict(), "n_embed": 32})
    with pytest.raises(CheckpointMismatchError, match=r"quantize\.embedding\.weight: checkpoint"):
        load_vqgan(path, other)


def test_checkpoint_without_state_dict_is_refused(tmp_path, tiny_state):
    path = tmp_path / "bare.pt"
    torch.save(tiny_state, path)  # a bare state dict, not a Lightning checkpoint
    with pytest.raises(CheckpointError, match="no 'state_dict' entry"):
        load_vqgan(path, TINY_VQGAN)
    with pytest.raises(CheckpointError, match="not found"):
        load_vqgan(tmp_path / "absent.ckpt", TINY_VQGAN)


class NotAllowlisted:
    """Any class outside torch's weights-only allowlist (unpickling it needs our code)."""


def test_pickle_needing_code_is_refused(tmp_path, tiny_state):
    path = _save_ckpt(tmp_path / "evil.ckpt", tiny_state, hook=NotAllowlisted())
    with pytest.raises(UntrustedCheckpointError, match="NotAllowlisted"):
        load_vqgan(path, TINY_VQGAN)


def test_lightning_bookkeeping_loads_without_lightning(tmp_path, tiny_state, parity, monkeypatch):
    """Lightning 1.x pickles callback classes as dict keys and its own containers; they become
    inert placeholders (no Lightning code needed or run) and the weights load."""
    names = ["pytorch_lightning", "pytorch_lightning.callbacks"]
    names.append("pytorch_lightning.callbacks.model_checkpoint")
    for name in names:  # pickle imports the parents too
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    module = sys.modules[names[-1]]

    class ModelCheckpoint:
        def __init__(self, monitor: str) -> None:
            self.monitor = monitor

    ModelCheckpoint.__module__ = module.__name__
    ModelCheckpoint.__qualname__ = "ModelCheckpoint"
    module.ModelCheckpoint = ModelCheckpoint
    callbacks = {ModelCheckpoint: {"best_model_score": torch.tensor(0.5)}}
    path = _save_ckpt(
        tmp_path / "last.ckpt", tiny_state, callbacks=callbacks, hparams=ModelCheckpoint("x")
    )
    for name in names:  # as on a machine without Lightning
        monkeypatch.delitem(sys.modules, name)
    model = load_vqgan(path, TINY_VQGAN)
    with torch.no_grad():
        decoded = model.decode(parity["z"])
    torch.testing.assert_close(decoded, parity["expected_decode"], atol=DECODE_ATOL, rtol=0)


def test_lightning_names_outside_the_known_list_are_refused_by_name(
    tmp_path, tiny_state, monkeypatch
):
    """Only the Lightning classes taming's checkpoints contain become placeholders; an
    invented name under ``pytorch_lightning`` is refused like any other global."""
    names = ["pytorch_lightning", "pytorch_lightning.invented"]
    for name in names:
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))

    class Runner:
        pass

    Runner.__module__ = names[-1]
    Runner.__qualname__ = "Runner"
    sys.modules[names[-1]].Runner = Runner
    path = _save_ckpt(tmp_path / "last.ckpt", tiny_state, callbacks={Runner: {}})
    for name in names:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(UntrustedCheckpointError, match=r"pytorch_lightning\.invented\.Runner"):
        load_vqgan(path, TINY_VQGAN)


def test_loaded_model_is_frozen_and_fingerprinted_by_file(tmp_path, tiny_state):
    a = load_vqgan(_save_ckpt(tmp_path / "a.ckpt", tiny_state), TINY_VQGAN)
    tiny_state["post_quant_conv.bias"] = tiny_state["post_quant_conv.bias"] + 1
    b = load_vqgan(_save_ckpt(tmp_path / "b.ckpt", tiny_state), TINY_VQGAN)
    assert not a.training and not any(p.requires_grad for p in a.parameters())
    assert a.name == "vqgan(a.ckpt)"
    assert len(a.fingerprint) == 64 and a.fingerprint != b.fingerprint


# --- behaviour guided generation relies on --------------------------------------------------


def test_straight_through_quantisation_passes_gradients_to_the_latent():
    model = build_tiny_vqgan(seed=0)
    z = torch.randn(2, TINY_VQGAN.embed_dim, 4, 4, requires_grad=True)
    z_q = model.quantize_st(z)
    # Values are the nearest codebook vectors (up to the rounding of z + (z_q - z)) ...
    flat = z_q.detach().permute(0, 2, 3, 1).reshape(-1, TINY_VQGAN.embed_dim)
    nearest = torch.cdist(z.detach().permute(0, 2, 3, 1).reshape(-1, 16), model.codebook).argmin(1)
    torch.testing.assert_close(flat, model.codebook[nearest], atol=1e-6, rtol=0)
    # ... and the gradient reaches z unchanged (identity), through a frozen decoder too.
    weights = torch.randn_like(z)
    (z_q * weights).sum().backward()
    assert torch.equal(z.grad, weights)
    z.grad = None
    model.decode(model.quantize_st(z)).square().mean().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_tokens_round_trip_and_images_have_the_right_size():
    model = build_tiny_vqgan(seed=0)
    tokens = torch.randint(0, TINY_VQGAN.n_embed, (3, 2, 5))
    latent = model.tokens_to_latent(tokens)  # (B, D, h, w)
    assert latent.shape == (3, TINY_VQGAN.embed_dim, 2, 5)
    assert torch.equal(model.quantize.nearest_indices(latent), tokens)
    with torch.no_grad():
        assert model.decode(latent).shape == (3, 3, 8, 20)  # f = 4, non-square works
    with pytest.raises(ValueError, match="not a multiple of f=4"):
        model.latent_size(30, 32)


def test_tiny_vqgan_is_seeded_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, b, c = build_tiny_vqgan(0), build_tiny_vqgan(0), build_tiny_vqgan(1)
    assert torch.equal(torch.rand(1), before)
    assert a.fingerprint == b.fingerprint != c.fingerprint
    assert torch.equal(a.codebook, b.codebook) and not torch.equal(a.codebook, c.codebook)
    # Codes are spread out: different tokens decode to different images.
    with torch.no_grad():
        images = a.decode(a.tokens_to_latent(torch.arange(8).reshape(2, 2, 2)))
    assert (images[0] - images[1]).abs().mean() > 1e-2


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"double_z": True}, "double_z"),
        ({"ch": 48}, "multiples of 32"),
        ({"ch_mult": []}, "at least one level"),
    ],
)
def test_invalid_configs_are_refused(override, message):
    with pytest.raises(ValueError, match=message):
        VQGANConfig.from_dict({**TINY_VQGAN.to_dict(), **override})


def test_config_round_trips_and_rejects_unknown_keys():
    assert VQGANConfig.from_dict(VQGAN_IMAGENET_F16_16384.to_dict()) == VQGAN_IMAGENET_F16_16384
    with pytest.raises(ValueError, match="n_embeds"):
        VQGANConfig.from_dict({"n_embeds": 4})
