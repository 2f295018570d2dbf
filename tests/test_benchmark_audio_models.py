"""The benchmark's audio-model registry (``wavbrivl.benchmark.audio_models``).

Wav2CLIP: a random-weight checkpoint written by the test in the release format of
``Wav2CLIP.pt`` (a flat state dict: ``audio_encoder.*``, ``audio_transform.*`` and the
pre-training module's ``image_transform.*``); expected embeddings come from the ``wav2clip``
package itself (``ResNetExtractor(checkpoint=..., transform=True)``, what ``get_model`` builds,
and ``wav2clip.embed_audio``), called on one clip or one window at a time and pooled by hand.
WavBriVL: the tiny trained model of tests/test_api.py, embedded window by window with the
trained model called directly, as that file's expected values are.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import wav2clip
from test_api import SPACE, WINDOW, direct, save_model, signal
from wav2clip.model.encoder import MLPLayers, ResNetExtractor
from wav2clip.model.resnet import BasicBlock, ResNet

from wavbrivl.api import ImageSpaceMismatch
from wavbrivl.benchmark.audio_models import (
    AUDIO_MODELS,
    WAV2CLIP_SPACE,
    AudioModelError,
    Embedded,
    Space,
    Wav2CLIPAudioModel,
    build_audio_model,
    build_wav2clip,
    build_wavbrivl,
    check_text_side,
    clip_problem,
    embed_clips,
    read_wav2clip_checkpoint,
)
from wavbrivl.checkpoints import CheckpointError, state_dict_sha256
from wavbrivl.train.checkpoint import (
    audio_model_fingerprint,
    build_trained_model,
    read_audio_encoder,
)

SR = 16_000


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: ResNet-18 forwards are many times faster on a loaded 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


_RELEASE: dict[int, dict[str, torch.Tensor]] = {}


def release_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A fresh copy of :func:`make_release_state` (built once per seed)."""
    if seed not in _RELEASE:
        _RELEASE[seed] = make_release_state(seed)
    return {k: v.clone() for k, v in _RELEASE[seed].items()}


def make_release_state(seed: int) -> dict[str, torch.Tensor]:
    """The pre-training module's state dict with seeded random weights, as Wav2CLIP.pt holds
    it. BatchNorm statistics are random too, so eval-mode normalisation is not the identity."""
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = ResNet(BasicBlock, [2, 2, 2, 2], pool="avgpool")
        audio_mlp, image_mlp = MLPLayers(), MLPLayers()
    for name, buf in encoder.named_buffers():
        if name.endswith("running_mean"):
            buf.copy_(0.1 * torch.randn(buf.shape, generator=gen))
        elif name.endswith("running_var"):
            buf.copy_(0.5 + torch.rand(buf.shape, generator=gen))
    state = {f"audio_encoder.{k}": v for k, v in encoder.state_dict().items()}
    state |= {f"audio_transform.{k}": v for k, v in audio_mlp.state_dict().items()}
    state |= {f"image_transform.{k}": v for k, v in image_mlp.state_dict().items()}
    return state


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("wav2clip") / "Wav2CLIP.pt"
    torch.save(release_state(), path)
    return path


@pytest.fixture(scope="module")
def package_model(release):
    """The package's own model on the same weights: the independent computation."""
    checkpoint = torch.load(release, map_location="cpu", weights_only=True)
    return ResNetExtractor(checkpoint=checkpoint, scenario="frozen", transform=True).eval()


def package_embedding(package_model, clip: np.ndarray) -> np.ndarray:
    """``wav2clip.embed_audio`` on one clip alone: (512,) float64, not normalised."""
    return wav2clip.embed_audio(clip, package_model)[0].astype(np.float64)


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


# -- wav2clip: parity with the package -------------------------------------------------------


def test_wav2clip_equals_the_package_clip_by_clip_whatever_is_batched_with_it(
    release, package_model
):
    # Two clips of one length share a batch (the package standardises over the batch, we
    # per clip); one of another length has its own; batch_size 2 splits the three 1 s clips.
    clips = [signal(SR, 1), 3.0 * signal(11_000, 2), signal(SR, 3), 0.01 * signal(SR, 4)]
    model = build_wav2clip(release, batch_size=2)
    got = model.embed(clips)
    assert got.shape == (4, 512)
    assert got.dtype == np.float32
    for row, clip in zip(got, clips, strict=True):
        np.testing.assert_allclose(row, unit(package_embedding(package_model, clip)), atol=2e-6)


def test_a_long_wav2clip_clip_is_the_length_weighted_mean_of_its_windows(release, package_model):
    clip = signal(20_800, 5)  # windows of 8000, 8000 and 4800 samples
    model = build_wav2clip(release, window_s=0.5)
    parts = [clip[:8000], clip[8000:16000], clip[16000:]]
    expected = sum(len(p) * package_embedding(package_model, p) for p in parts)
    np.testing.assert_allclose(model.embed([clip])[0], unit(expected), atol=2e-6)


def test_a_wav2clip_tail_shorter_than_the_stft_needs_is_dropped(release, package_model):
    model = build_wav2clip(release, window_s=0.5)
    for tail in (256, 257):
        clip = signal(8000 + tail, 6)
        expected = 8000 * package_embedding(package_model, clip[:8000])
        if tail == 257:
            expected = expected + 257 * package_embedding(package_model, clip[8000:])
        np.testing.assert_allclose(model.embed([clip])[0], unit(expected), atol=2e-6)
    # a clip of exactly the minimum is embedded; one sample less is refused
    np.testing.assert_allclose(
        model.embed([clip[:257]])[0], unit(package_embedding(package_model, clip[:257])), atol=2e-6
    )
    with pytest.raises(AudioModelError, match="^clip 0: too short: 256 samples"):
        model.embed([clip[:256]])


def test_wav2clip_describes_itself(release):
    model = build_wav2clip(release, window_s=2.5)
    weights = {
        k: v
        for k, v in release_state().items()
        if k.startswith(("audio_encoder.", "audio_transform."))
    }
    assert model.sample_rate == 16_000
    assert model.dim == 512
    assert model.min_samples == 257
    assert model.window == 40_000
    assert model.name == f"wav2clip({release})"
    assert model.space == Space("openai/clip-vit-base-patch32", None, 512)
    assert WAV2CLIP_SPACE == "openai/clip-vit-base-patch32"
    assert len(model.fingerprint) == 64
    assert model.metadata() == {
        "name": f"wav2clip({release})",
        "family": "wav2clip",
        "fingerprint": model.fingerprint,
        "sample_rate": 16_000,
        "dim": 512,
        "window_s": 2.5,
        "space": {"name": "openai/clip-vit-base-patch32", "fingerprint": None, "dim": 512},
        "source": str(release),
    }
    # the fingerprint hashes the weights the model uses (not image_transform) and its window
    import hashlib
    import json

    identity = {
        "family": "wav2clip",
        "weights_sha256": state_dict_sha256(weights),
        "window": 40_000,
        "sample_rate": 16_000,
    }
    expected = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    assert model.fingerprint == expected


def test_wav2clip_fingerprint_follows_weights_and_window_and_records_the_space(release, tmp_path):
    base = build_wav2clip(release)
    assert build_wav2clip(release).fingerprint == base.fingerprint
    assert build_wav2clip(release, window_s=5.0).fingerprint != base.fingerprint
    state = release_state()
    state["audio_transform.sequential.3.bias"][0] += 1.0
    changed = tmp_path / "changed.pt"
    torch.save(state, changed)
    assert build_wav2clip(changed).fingerprint != base.fingerprint
    state = release_state()
    state["image_transform.sequential.3.bias"][0] += 1.0  # not part of the audio model
    torch.save(state, changed)
    assert build_wav2clip(changed).fingerprint == base.fingerprint
    model = build_wav2clip(release, space_fingerprint="ab" * 32)
    assert model.space == Space(WAV2CLIP_SPACE, "ab" * 32, 512)


def test_wav2clip_runs_in_eval_mode_so_embeddings_repeat(release):
    model = build_wav2clip(release)
    assert (model.window_s, model.window, model.batch_size) == (10.0, 160_000, 16)  # defaults
    assert model.device == torch.device("cpu")
    assert not model.extractor.training
    assert not model.extractor.transform.training
    clip = signal(SR, 7)
    np.testing.assert_array_equal(model.embed([clip]), model.embed([clip]))


def test_a_window_too_short_for_the_stft_is_refused(release):
    with pytest.raises(AudioModelError, match=r"^window_s=0\.01: a window needs at least 257"):
        build_wav2clip(release, window_s=0.01)
    assert build_wav2clip(release, window_s=257 / SR).window == 257


# -- wav2clip: bad checkpoints ---------------------------------------------------------------


def one_line_error(path: Path) -> str:
    with pytest.raises(CheckpointError) as info:
        build_wav2clip(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    return message


def test_bad_wav2clip_checkpoints_are_one_line_naming_the_file(tmp_path):
    missing = tmp_path / "nope.pt"
    assert one_line_error(missing) == f"{missing}: checkpoint file not found"

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    assert "not a readable PyTorch checkpoint" in one_line_error(garbage)

    state = release_state()
    no_mlp = {k: v for k, v in state.items() if not k.startswith("audio_transform.")}
    torch.save(no_mlp, tmp_path / "no_mlp.pt")
    first_ten = [  # sorted by hand: the first ten of 125 keys
        "audio_encoder.bn1.bias",
        "audio_encoder.bn1.num_batches_tracked",
        "audio_encoder.bn1.running_mean",
        "audio_encoder.bn1.running_var",
        "audio_encoder.bn1.weight",
        "audio_encoder.conv1.weight",
        "audio_encoder.layer1.0.bn1.bias",
        "audio_encoder.layer1.0.bn1.num_batches_tracked",
        "audio_encoder.layer1.0.bn1.running_mean",
        "audio_encoder.layer1.0.bn1.running_var",
    ]
    assert one_line_error(tmp_path / "no_mlp.pt") == (
        f"{tmp_path / 'no_mlp.pt'}: not a Wav2CLIP release checkpoint: no audio_transform.* "
        f"weights; top-level keys: {first_ten}"
    )

    lightning = {"state_dict": state, "epoch": 3}
    torch.save(lightning, tmp_path / "lightning.pt")
    assert one_line_error(tmp_path / "lightning.pt") == (
        f"{tmp_path / 'lightning.pt'}: not a Wav2CLIP release checkpoint: no audio_encoder.* "
        "weights; top-level keys: ['epoch', 'state_dict']"
    )


def test_wav2clip_weights_of_another_shape_are_named(tmp_path):
    state = release_state()
    state["audio_transform.sequential.3.weight"] = torch.zeros(256, 512)
    state["audio_encoder.extra"] = torch.zeros(1)
    path = tmp_path / "shapes.pt"
    torch.save(state, path)
    message = one_line_error(path)
    assert message == (
        f"{path}: audio_encoder weights do not match the wav2clip package's ResNet; "
        "1 unexpected: ['extra']"
    )
    del state["audio_encoder.extra"]
    torch.save(state, path)
    assert one_line_error(path) == (
        f"{path}: audio_transform weights do not match the wav2clip package's MLP; "
        "1 shape mismatch: ['sequential.3.weight: checkpoint (256, 512) vs model (512, 512)']"
    )


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_a_checkpoint_that_needs_pickled_code_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    state = release_state()
    state["audio_encoder.payload"] = Evil()
    torch.save(state, path)
    message = one_line_error(path)
    assert "refused as untrusted" in message
    assert "builtins.print" in message
    assert "pwned" not in capsys.readouterr().out


def test_read_wav2clip_checkpoint_splits_the_two_parts(release):
    encoder, transform = read_wav2clip_checkpoint(release)
    state = release_state()
    assert sorted(transform) == [
        "sequential.0.bias",
        "sequential.0.weight",
        "sequential.3.bias",
        "sequential.3.weight",
    ]
    assert "spectrogram.window" in encoder
    assert len(encoder) == 121
    torch.testing.assert_close(encoder["conv1.weight"], state["audio_encoder.conv1.weight"])
    torch.testing.assert_close(
        transform["sequential.3.bias"], state["audio_transform.sequential.3.bias"]
    )


def test_a_zero_embedding_stays_zero_and_others_become_unit_rows():
    from wavbrivl.benchmark.audio_models import _unit_rows

    out = _unit_rows(np.array([[0.0, 0.0], [3.0, 4.0], [0.03, 0.04]]))
    np.testing.assert_allclose(out, [[0.0, 0.0], [0.6, 0.8], [0.6, 0.8]], rtol=1e-6)
    assert out.dtype == np.float32


# -- clips the models cannot embed -----------------------------------------------------------


def test_clip_problems_are_named():
    assert clip_problem(np.zeros(400, np.float32), 400) is None
    assert clip_problem(np.zeros(399, np.float32), 400) == (
        "too short: 399 samples, the model needs at least 400"
    )
    assert clip_problem(np.zeros((2, 500), np.float32), 400) == (
        "expected a 1-D array of samples, got shape (2, 500)"
    )
    assert clip_problem(np.float32(1.0), 1) == "expected a 1-D array of samples, got shape ()"
    bad = np.zeros(500, np.float32)
    bad[-1] = np.nan
    assert clip_problem(bad, 400) == "holds NaN or infinite samples"
    bad[-1] = np.inf
    assert clip_problem(bad, 400) == "holds NaN or infinite samples"


def test_embed_names_the_first_bad_clip_by_index(release):
    model = build_wav2clip(release)
    with pytest.raises(AudioModelError, match=r"^clip 1: holds NaN or infinite samples$"):
        model.embed([signal(SR, 1), np.full(SR, np.nan, np.float32)])
    assert model.embed([]).shape == (0, 512)


class Recorder:
    """A fake audio model: embeds a clip as (its length, its first sample), normalised."""

    name = "recorder"
    dim = 2
    min_samples = 3

    def __init__(self) -> None:
        self.calls: list[int] = []

    def embed(self, clips):
        self.calls.append(len(clips))
        return np.array([[len(c), c[0]] for c in clips], np.float32).reshape(-1, 2)


def test_embed_clips_skips_bad_clips_with_their_reason_and_embeds_the_rest_in_chunks():
    model = Recorder()
    clips = [
        np.full(3, 1.0, np.float32),
        np.zeros(2, np.float32),
        np.full(4, 2.0, np.float32),
        np.array([np.nan] * 5, np.float32),
        np.full(5, 3.0, np.float32),
        np.full(6, 4.0, np.float32),
    ]
    seen = []

    def progress(items):
        seen.append(list(items))
        return items

    out = embed_clips(model, clips, chunk=2, progress=progress)
    assert isinstance(out, Embedded)
    assert out.kept == [0, 2, 4, 5]
    assert out.skipped == {
        1: "too short: 2 samples, the model needs at least 3",
        3: "holds NaN or infinite samples",
    }
    np.testing.assert_array_equal(out.embeddings, [[3, 1], [4, 2], [5, 3], [6, 4]])
    assert model.calls == [2, 2]
    assert seen == [[0, 2]]


def test_embed_clips_with_nothing_to_embed():
    model = Recorder()
    out = embed_clips(model, [np.zeros(1, np.float32)])
    assert out.embeddings.shape == (0, 2)
    assert out.embeddings.dtype == np.float32
    assert out.kept == []
    assert out.skipped == {0: "too short: 1 samples, the model needs at least 3"}
    assert model.calls == []
    assert embed_clips(model, [np.ones(3, np.float32)] * 65).kept == list(range(65))
    assert model.calls == [64, 1]  # chunks of 64 clips by default


# -- the registry and pairing with a text side -----------------------------------------------


def test_the_registry_builds_by_name(release):
    assert sorted(AUDIO_MODELS) == ["wav2clip", "wavbrivl"]
    model = build_audio_model("wav2clip", release, window_s=2.0)
    assert isinstance(model, Wav2CLIPAudioModel)
    assert model.window == 32_000
    with pytest.raises(
        AudioModelError, match=r"^unknown audio model 'clap'; known: \['wav2clip', 'wavbrivl'\]$"
    ):
        build_audio_model("clap", release)


class Text:
    def __init__(self, fingerprint, dim=512, name="clip-text"):
        self.fingerprint, self.dim, self.name = fingerprint, dim, name


def test_check_text_side_compares_fingerprints_when_the_space_records_one(release):
    model = build_wav2clip(release, space_fingerprint="f" * 64)
    check_text_side(model, Text("f" * 64))
    with pytest.raises(ImageSpaceMismatch) as info:
        check_text_side(model, Text("e" * 64))
    assert str(info.value) == (
        f"clip-text: text encoder of image space {'e' * 64}, but wav2clip({release}) lives in "
        f"image space openai/clip-vit-base-patch32 ({'f' * 64})"
    )
    with pytest.raises(ImageSpaceMismatch, match=r"^clip-text: text encoder of image space \(none"):
        check_text_side(model, Text(None))
    with pytest.raises(ImageSpaceMismatch, match=r"^object: text encoder of image space \(none\)"):
        check_text_side(model, object())


def test_check_text_side_checks_the_dimension_and_warns_without_a_fingerprint(release, recwarn):
    model = build_wav2clip(release)
    check_text_side(model, Text("a" * 64))
    (warning,) = recwarn.list
    assert str(warning.message) == (
        f"wav2clip({release}) records no fingerprint of its space; cannot check that "
        "clip-text is openai/clip-vit-base-patch32"
    )
    assert warning.filename == __file__  # the caller's line, not wavbrivl's (wavbrivl.warn)
    with pytest.raises(ImageSpaceMismatch) as info:
        check_text_side(model, Text("a" * 64, dim=768))
    assert str(info.value) == (
        f"clip-text: text encoder of dimension 768, but wav2clip({release}) embeds into 512 "
        "dimensions (openai/clip-vit-base-patch32)"
    )
    with pytest.raises(ImageSpaceMismatch, match="text encoder of dimension None"):
        check_text_side(model, object())


# -- wavbrivl: a trained run -----------------------------------------------------------------


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return save_model(tmp_path_factory.mktemp("run") / "run")


def test_wavbrivl_pools_the_runs_windows_as_evaluation_embeds_them(run):
    reference = build_trained_model(read_audio_encoder(run))
    clips = [signal(19_200, 1), signal(6_000, 2), signal(8_000 + 399, 3)]
    model = build_wavbrivl(run.parent, batch_size=1)
    got = model.embed(clips)
    assert got.shape == (3, 128)
    assert got.dtype == np.float32
    first = 8000 * direct(reference, clips[0][:8000])
    first += 8000 * direct(reference, clips[0][8000:16000])
    first += 3200 * direct(reference, clips[0][16000:])
    expected = [
        unit(first),
        unit(direct(reference, clips[1])),
        unit(direct(reference, clips[2][:WINDOW])),
    ]
    np.testing.assert_allclose(got, np.stack(expected), atol=2e-6)
    empty = build_wavbrivl(run).embed([])
    assert (empty.shape, empty.dtype) == ((0, 128), np.float32)
    with pytest.raises(
        AudioModelError, match="^clip 0: too short: 399 samples, the model needs at least 400$"
    ):
        model.embed([signal(399, 4)])


def test_wavbrivl_batch_size_is_passed_on(run, monkeypatch):
    model = build_wavbrivl(run, batch_size=3)
    sizes = []
    original = model.model.embed_windows

    def spy(windows, *, batch_size):
        sizes.append(batch_size)
        return original(windows, batch_size=batch_size)

    monkeypatch.setattr(model.model, "embed_windows", spy)
    model.embed([signal(SR, 1)])
    assert sizes == [3]
    assert build_wavbrivl(run).batch_size == 8


def test_wavbrivl_describes_itself_and_its_space(run):
    model = build_audio_model("wavbrivl", run)
    state = read_audio_encoder(run)
    assert model.sample_rate == 16_000
    assert model.dim == 128
    assert model.min_samples == 400
    assert model.window_s == 0.5
    assert model.fingerprint == audio_model_fingerprint(state)
    assert model.name == f"wavbrivl({run})"
    assert model.space == Space(f"image space {SPACE}", SPACE, 128)
    assert model.metadata() == {
        "name": f"wavbrivl({run})",
        "family": "wavbrivl",
        "fingerprint": audio_model_fingerprint(state),
        "sample_rate": 16_000,
        "dim": 128,
        "window_s": 0.5,
        "space": {"name": f"image space {SPACE}", "fingerprint": SPACE, "dim": 128},
        "source": str(run),
    }
    named = build_wavbrivl(run, space_name="tiny")
    assert named.space == Space("tiny", SPACE, 128)


def test_wavbrivl_without_a_recorded_space(tmp_path):
    path = save_model(tmp_path / "old", fingerprint=None)
    model = build_wavbrivl(path)
    assert model.space == Space("image space (not recorded)", None, 128)


def test_wavbrivl_names_a_missing_run(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"^{tmp_path / 'x.pt'}: no such model"):
        build_audio_model("wavbrivl", tmp_path / "x.pt")


def test_wav2clip_sends_each_batch_to_the_models_device(release, monkeypatch):
    model = build_wav2clip(release, batch_size=2)
    model.device = torch.device("meta")  # a device no array lives on by itself
    seen = []

    def spy(windows):
        seen.append((windows.device, tuple(windows.shape)))
        return torch.ones(windows.shape[0], 512)

    monkeypatch.setattr(model, "forward", spy)
    out = model.embed([signal(SR, 1), signal(SR, 2), signal(SR, 3)])
    assert seen == [(torch.device("meta"), (2, SR)), (torch.device("meta"), (1, SR))]
    np.testing.assert_allclose(out, np.full((3, 512), 512**-0.5), rtol=1e-6)


def test_wav2clip_takes_float64_clips_as_float32(release):
    model = build_wav2clip(release)
    clip = signal(SR, 8)
    np.testing.assert_array_equal(model.embed([clip.astype(np.float64)]), model.embed([clip]))


def test_wav2clip_moves_its_weights_to_the_device_asked_for(release):
    model = build_wav2clip(release, device="meta")
    assert model.device == torch.device("meta")
    assert {p.device for p in model.extractor.parameters()} == {torch.device("meta")}


def test_the_classes_defaults_are_the_builders(release, run):
    from wavbrivl.api import load
    from wavbrivl.benchmark.audio_models import WavBriVLAudioModel

    assert WavBriVLAudioModel(load(run)).batch_size == 8
    extractor = ResNetExtractor(scenario="supervise")
    extractor.transform = MLPLayers()
    model = Wav2CLIPAudioModel(
        extractor, weights_sha256="0" * 64, source="x", device=torch.device("cpu")
    )
    assert (model.window_s, model.batch_size, model.space.fingerprint) == (10.0, 16, None)


def test_build_wavbrivl_passes_device_and_wavlm_to_load(run, monkeypatch, tmp_path):
    import shutil

    import wavbrivl.api

    calls = []
    real = wavbrivl.api.load

    def spy(path, **kwargs):
        calls.append(kwargs)
        return real(path, **kwargs)

    monkeypatch.setattr(wavbrivl.api, "load", spy)
    moved = shutil.copytree(run.parent / "wavlm", tmp_path / "elsewhere")
    build_wavbrivl(run, device="cpu", wavlm=str(moved))
    assert calls == [{"device": "cpu", "wavlm": str(moved)}]
