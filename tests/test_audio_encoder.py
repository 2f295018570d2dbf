"""The WavLM audio encoder: loading (tiny HF-format models), freezing, the weighted layer
sum, padding invariance, waveform normalisation and input checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import WavLMModel

from wavbrivl.audio import TINY_AUDIO, AudioEncoderConfig, WavLMLoadError, build_audio_encoder
from wavbrivl.audio.encoder import AudioEncoder, normalize_per_clip, weighted_layer_sum
from wavbrivl.audio.tiny import save_tiny_wavlm, tiny_wavlm_config

SR = 16000


@pytest.fixture(scope="module")
def wavlm_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("wavlm")
    return {v: save_tiny_wavlm(root / v, seed=0, variant=v) for v in ("base", "large")}


def _encoder(path: Path, **overrides) -> AudioEncoder:
    torch.manual_seed(0)
    return build_audio_encoder(AudioEncoderConfig(wavlm=str(path), **{**TINY_AUDIO, **overrides}))


@pytest.fixture(scope="module")
def encoders(wavlm_dirs) -> dict[str, AudioEncoder]:
    return {v: _encoder(p).eval() for v, p in wavlm_dirs.items()}


def _audio(b: int, t: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, t, generator=torch.Generator().manual_seed(seed))


# -- tiny model files and loading ------------------------------------------------------------


def test_tiny_wavlm_is_saved_in_the_official_format(wavlm_dirs, tmp_path):
    path = wavlm_dirs["base"]
    assert {p.name for p in path.iterdir()} == {
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
    }
    assert json.loads((path / "config.json").read_text())["model_type"] == "wavlm"
    # The plain HF loader reads it, and the seed fixes the weights.
    model = WavLMModel.from_pretrained(path, local_files_only=True)
    assert model.config.hidden_size == 32
    again = save_tiny_wavlm(tmp_path / "same", seed=0)
    other = save_tiny_wavlm(tmp_path / "other", seed=1)
    ref = load_file(path / "model.safetensors")
    same = load_file(again / "model.safetensors")
    diff = load_file(other / "model.safetensors")
    assert all(torch.equal(ref[k], same[k]) for k in ref)
    assert any(not torch.equal(ref[k], diff[k]) for k in ref)
    assert not list(tmp_path.glob(".*tmp"))  # no leftover temporary directories


def test_save_tiny_wavlm_refuses_to_overwrite(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="taken"):
        save_tiny_wavlm(tmp_path / "taken")
    assert (tmp_path / "taken" / "keep.txt").read_text() == "x"


def test_loading_disables_masking_and_layerdrop_and_reads_preprocessing(encoders):
    for variant, enc in encoders.items():
        cfg = enc.wavlm.config
        assert (cfg.mask_time_prob, cfg.mask_feature_prob, cfg.layerdrop) == (0.0, 0.0, 0.0)
        assert enc.sample_rate == SR
        # preprocessor_config.json: the Large-style tiny model wants normalised audio.
        assert enc.normalize_waveform is (variant == "large")


@pytest.mark.parametrize("variant, normalise", [("base", False), ("large", True)])
def test_without_preprocessor_config_the_conv_norm_decides_and_a_warning_says_so(
    wavlm_dirs, tmp_path, variant, normalise
):
    # fairseq's convention: LayerNorm conv stacks (Large) were trained on normalised audio.
    folder = tmp_path / variant
    shutil.copytree(wavlm_dirs[variant], folder)
    (folder / "preprocessor_config.json").unlink()
    norm = "layer" if normalise else "group"
    with pytest.warns(UserWarning) as caught:
        enc = _encoder(folder)
    assert enc.normalize_waveform is normalise
    assert [str(w.message) for w in caught] == [
        f"WavLM {str(folder)!r} has no preprocessor_config.json; assuming "
        f"do_normalize={normalise} from feat_extract_norm={norm!r}"
    ]
    assert caught[0].filename == __file__  # the caller's line, not wavbrivl's (wavbrivl.warn)


def test_missing_directory_is_a_clear_error(tmp_path):
    missing = tmp_path / "no_such_wavlm"
    with pytest.raises(WavLMLoadError, match="no_such_wavlm.*not found"):
        build_audio_encoder(AudioEncoderConfig(wavlm=str(missing), **TINY_AUDIO))


def test_hub_id_offline_is_a_clear_error():
    with pytest.raises(WavLMLoadError, match=r"microsoft/wavlm-base-plus.*not a local directory"):
        build_audio_encoder(
            AudioEncoderConfig(wavlm="microsoft/wavlm-base-plus", **TINY_AUDIO),
            local_files_only=True,
        )


def test_directory_that_is_not_a_wavlm_is_refused(tmp_path, wavlm_dirs):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(WavLMLoadError, match="no config.json"):
        build_audio_encoder(AudioEncoderConfig(wavlm=str(empty)))
    other = tmp_path / "bert"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(WavLMLoadError, match="model_type is 'bert'"):
        build_audio_encoder(AudioEncoderConfig(wavlm=str(other)))


def test_checkpoint_missing_weights_is_refused(tmp_path, wavlm_dirs):
    """A file that leaves weights uninitialised must not load as a half-random model."""
    broken = tmp_path / "broken"
    shutil.copytree(wavlm_dirs["base"], broken)
    state = load_file(broken / "model.safetensors")
    dropped = next(k for k in state if "feature_projection" in k)
    del state[dropped]
    save_file(state, broken / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(WavLMLoadError, match="missing_keys"):
        build_audio_encoder(AudioEncoderConfig(wavlm=str(broken), **TINY_AUDIO))


def test_config_round_trip_and_unknown_keys():
    cfg = AudioEncoderConfig(wavlm="/m", **TINY_AUDIO)
    assert AudioEncoderConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="n_layer"):
        AudioEncoderConfig.from_dict({"wavlm": "/m", "n_layer": 2})


def test_heads_must_divide_the_wavlm_width(wavlm_dirs):
    with pytest.raises(ValueError, match="n_heads=3 does not divide.*32"):
        _encoder(wavlm_dirs["base"], n_heads=3)


# -- freezing -------------------------------------------------------------------------------


def test_frozen_wavlm_stays_in_eval_without_grads(wavlm_dirs):
    enc = _encoder(wavlm_dirs["base"])
    enc.train()
    assert enc.training and enc.head.training
    assert not any(m.training for m in enc.wavlm.modules())
    assert not any(p.requires_grad for p in enc.wavlm.parameters())
    assert all(p.requires_grad for p in enc.head.parameters())
    # In train mode the backbone is still a fixed function: no dropout, masking, layerdrop.
    x, lengths = _audio(2, SR), torch.tensor([SR, SR])
    s1, _ = enc.wavlm_states(x, lengths)
    s2, _ = enc.wavlm_states(x, lengths)
    assert torch.equal(s1, s2)
    assert not s1.requires_grad


def test_fine_tuned_wavlm_follows_the_parent_mode(wavlm_dirs):
    enc = _encoder(wavlm_dirs["base"], freeze_wavlm=False)
    enc.train()
    assert enc.wavlm.training
    assert all(p.requires_grad for p in enc.wavlm.parameters())
    states, _ = enc.wavlm_states(_audio(1, SR), torch.tensor([SR]))
    assert states.requires_grad
    enc.eval()
    assert not enc.wavlm.training


# -- weighted layer sum -----------------------------------------------------------------------


def test_all_hidden_states_are_used(encoders):
    enc = encoders["base"]
    x, lengths = _audio(2, SR), torch.tensor([SR, SR])
    states, padding = enc.wavlm_states(x, lengths)
    n_layers = enc.wavlm.config.num_hidden_layers
    assert states.shape[0] == n_layers + 1 == enc.head.layer_logits.numel()
    # They are exactly WavLM's own hidden states: embedding output + every layer.
    with torch.no_grad():
        ref = enc.wavlm(x, output_hidden_states=True).hidden_states
    for mine, theirs in zip(states, ref, strict=True):
        torch.testing.assert_close(mine, theirs)
    assert states.shape[2] == 49 and not padding.any()  # 1 s of 16 kHz -> 49 frames


def test_weighted_layer_sum_is_a_softmax_combination():
    states = torch.randn(3, 2, 5, 4)
    logits = torch.tensor([0.5, -1.0, 2.0])
    w = np.exp(logits.numpy()) / np.exp(logits.numpy()).sum()
    expected = np.tensordot(w, states.numpy(), axes=1)
    np.testing.assert_allclose(weighted_layer_sum(states, logits).numpy(), expected, rtol=1e-5)


def test_layer_weights_are_learnable_and_every_layer_matters(wavlm_dirs):
    enc = _encoder(wavlm_dirs["base"]).eval()
    out = enc.encode_audio(_audio(2, SR), torch.tensor([SR, SR // 2]))
    out.pow(2).sum().backward()
    grad = enc.head.layer_logits.grad
    assert grad is not None and bool((grad != 0).all())  # each of the S states contributes


# -- padding ----------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["base", "large"])
@pytest.mark.parametrize("fill", ["zeros", "garbage"])
def test_padding_does_not_change_the_embedding(encoders, variant, fill):
    """A clip embeds the same alone and padded inside a batch of longer/equal clips."""
    enc = encoders[variant]
    lengths = torch.tensor([SR, 9000, 12345, 9000])
    x = _audio(4, SR, seed=1)
    if fill == "garbage":
        pad = torch.arange(SR)[None] >= lengths[:, None]
        x = torch.where(pad, torch.full_like(x, 1e4), x)
    with torch.no_grad():
        batched = enc.encode_audio(x, lengths)
        for i, n in enumerate(lengths.tolist()):
            alone = enc.encode_audio(x[i : i + 1, :n], torch.tensor([n]))
            torch.testing.assert_close(batched[i], alone[0], rtol=1e-4, atol=1e-5)


def test_frame_padding_mask_uses_wavlm_lengths(encoders):
    enc = encoders["large"]
    lengths = torch.tensor([SR, 400, 8000])
    _, padding = enc.wavlm_states(_audio(3, SR), lengths)
    expected = enc.wavlm._get_feat_extract_output_lengths(lengths)
    assert (~padding).sum(dim=1).tolist() == expected.tolist() == [49, 1, 24]


def test_waveform_normalisation_ignores_the_padding():
    x = torch.randn(2, 100) * 3 + 5
    valid = torch.arange(100)[None] < torch.tensor([[100], [60]])
    x_garbage = torch.where(valid, x, torch.full_like(x, -7.0))
    out = normalize_per_clip(x_garbage, valid)
    assert torch.equal(out[1, 60:], torch.zeros(40))
    for row, n in ((0, 100), (1, 60)):
        assert abs(float(out[row, :n].mean())) < 1e-5
        assert abs(float(out[row, :n].var(unbiased=False)) - 1.0) < 1e-4
    torch.testing.assert_close(out[1, :60], normalize_per_clip(x[1:2, :60], valid[1:2, :60])[0])


# -- input checks -------------------------------------------------------------------------------


def test_bad_inputs_are_clear_errors(encoders):
    enc = encoders["base"]
    with pytest.raises(ValueError, match="shorter than one WavLM frame.*400 samples.*\\[1\\]"):
        enc.encode_audio(_audio(2, SR), torch.tensor([SR, 399]))
    with pytest.raises(ValueError, match="lengths must be in 1..16000"):
        enc.encode_audio(_audio(2, SR), torch.tensor([SR, SR + 1]))
    with pytest.raises(ValueError, match="integers"):
        enc.encode_audio(_audio(2, SR), torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="\\(B, T\\) float"):
        enc.encode_audio(_audio(2, SR)[None], torch.tensor([SR, SR]))


def test_tiny_config_matches_real_wavlm_geometry():
    cfg = tiny_wavlm_config("base")
    assert np.prod(cfg.conv_stride) == 320  # 20 ms frames, as the real models
