"""OpenCLIP as a frozen image space (wavbrivl.encoders.open_clip) on a tiny random model.

The architecture is a tiny custom config registered with OpenCLIP under a name, so the
checkpoint-file route (``model_name`` + ``pretrained=<file>``) is exercised as for a built-in
name; the folder route uses OpenCLIP's own model-folder layout. Parity references are
OpenCLIP's: ``create_model_and_transforms`` + ``encode_image`` / ``encode_text`` with its
validation transform and tokenizer.
"""

from __future__ import annotations

import json
import shutil
import socket

import open_clip
import pytest
import torch
from clip_models import (
    TINY_OPEN_CLIP,
    as_tensor,
    pictures,
    register_tiny_open_clip,
    save_open_clip_file,
    save_open_clip_folder,
)

from wavbrivl.checkpoints import (
    CheckpointMismatchError,
    UntrustedCheckpointError,
    state_dict_sha256,
)
from wavbrivl.encoders.clip_family import LocalWeightsError
from wavbrivl.encoders.from_config import encoder_from_config
from wavbrivl.encoders.open_clip import (
    OpenClipEncoder,
    _offline_config,
    build_open_clip,
    open_clip_source,
    preprocess_from_cfg,
)
from wavbrivl.encoders.registry import ENCODERS, build_encoder

PROMPTS = ["a dog", "a cat", "the sound of rain falling on a tin roof in a storm at night"]
OPENAI_MEAN = [0.48145466, 0.4578275, 0.40821073]


@pytest.fixture(scope="module")
def name(tmp_path_factory):
    return register_tiny_open_clip(tmp_path_factory.mktemp("open_clip_cfg"))


@pytest.fixture(scope="module")
def checkpoint(name, tmp_path_factory):
    return save_open_clip_file(tmp_path_factory.mktemp("open_clip") / "tiny.pt")


@pytest.fixture(scope="module")
def folder(name, tmp_path_factory):
    # Non-default statistics: the folder's preprocess_cfg must be the one applied.
    cfg = {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]}
    return save_open_clip_folder(tmp_path_factory.mktemp("open_clip") / "tiny-dir", 1, cfg)


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _reference(model_name, pretrained=None):
    model, _, transform = open_clip.create_model_and_transforms(model_name, pretrained=pretrained)
    return model.eval(), transform, open_clip.get_tokenizer(model_name)


def test_registered_by_name(name, checkpoint):
    assert ENCODERS["open_clip"] is build_open_clip
    enc = build_encoder("open_clip", weights=checkpoint, model_name=name)
    assert isinstance(enc, OpenClipEncoder)
    assert enc.name == f"open_clip({name}, tiny.pt)"
    assert enc.dim == TINY_OPEN_CLIP["embed_dim"] and enc.device == torch.device("cpu")


@pytest.mark.parametrize("route", ["file", "folder"])
def test_images_and_text_equal_open_clip_own(route, name, checkpoint, folder, no_network):
    if route == "file":
        enc = build_open_clip(checkpoint, name)
        model, transform, tokenizer = _reference(name, str(checkpoint))
    else:
        enc = build_open_clip(folder)
        model, transform, tokenizer = _reference(f"local-dir:{folder}")
    images = pictures()
    out = enc.encode_images(images)
    text = enc.encode_text(PROMPTS)
    with torch.no_grad():
        pixels = torch.stack([transform(img.convert("RGB")) for img in images])
        image_ref = model.encode_image(pixels, normalize=True)
        text_ref = model.encode_text(tokenizer(PROMPTS), normalize=True)
    assert out.shape == (4, 16) and text.shape == (3, 16)
    torch.testing.assert_close(out, image_ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(text, text_ref, rtol=0, atol=1e-6)
    assert (text @ text.T)[0, 1] < 0.999 and (out @ out.T)[0, 1] < 0.999


def test_the_two_routes_hold_different_models(name, checkpoint, folder):
    # seeds 0 and 1, and the folder's own statistics
    by_file, by_folder = build_open_clip(checkpoint, name), build_open_clip(folder)
    assert by_file.fingerprint != by_folder.fingerprint
    assert by_file.preprocess.mean == tuple(OPENAI_MEAN)
    assert by_folder.preprocess.mean == (0.5, 0.4, 0.3)
    assert by_folder.preprocess.std == (0.2, 0.25, 0.3)
    assert by_folder.name == "open_clip(tiny-dir)"


def test_tensor_path_follows_the_transform_and_keeps_gradients(name, checkpoint):
    enc = build_open_clip(checkpoint, name)
    _, transform, _ = _reference(name, str(checkpoint))
    std = torch.tensor(enc.preprocess.std).view(1, 3, 1, 1)
    for image in pictures():
        x = as_tensor(image).requires_grad_(True)
        pixels = enc.preprocess.from_tensor(x)
        reference = transform(image.convert("RGB")).unsqueeze(0)
        assert pixels.shape == reference.shape == (1, 3, 32, 32)
        # PIL's bicubic kernel differs a little from torch's: a few levels of 255 at most
        assert ((pixels - reference) * std).abs().max() < 16 / 255
        out = enc.encode_images(x)
        torch.testing.assert_close(out, enc.encode_images([image]), rtol=0, atol=0.03)
        out[0, 1].backward()
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_preprocess_from_open_clip_cfg():
    cfg = {"size": (48, 48), "mean": (0.1, 0.2, 0.3), "std": (0.3, 0.2, 0.1)}
    assert preprocess_from_cfg(cfg).settings() == {
        "size": 48,
        "crop": 48,
        "mean": [0.1, 0.2, 0.3],
        "std": [0.3, 0.2, 0.1],
        "resize_mode": "shortest",
        "interpolation": "bicubic",
        "crop_offset": "round",
    }
    squash = preprocess_from_cfg(
        {**cfg, "size": 40, "resize_mode": "squash", "interpolation": "bilinear"}
    )
    assert (squash.size, squash.crop, squash.resize_mode, squash.interpolation) == (
        40,
        40,
        "squash",
        "bilinear",
    )
    with pytest.raises(ValueError, match="non-square"):
        preprocess_from_cfg({**cfg, "size": (48, 40)})
    with pytest.raises(ValueError, match="resize mode 'longest'"):
        preprocess_from_cfg({**cfg, "resize_mode": "longest"})


def test_fingerprint_follows_the_weights_not_the_path(name, checkpoint, tmp_path):
    base = build_open_clip(checkpoint, name)
    assert len(base.fingerprint) == 64
    moved = shutil.copy(checkpoint, tmp_path / "moved.pt")
    assert build_open_clip(moved, name).fingerprint == base.fingerprint
    state = torch.load(checkpoint, weights_only=True)
    state["text_projection"][0, 0] += 1e-3  # a text-side weight: the space changes too
    torch.save(state, tmp_path / "nudged.pt")
    assert build_open_clip(tmp_path / "nudged.pt", name).fingerprint != base.fingerprint


def test_the_model_and_the_tokens_go_to_the_encoders_device(name, checkpoint):
    """On PyTorch's "meta" device, where the text tower cannot run: a stand-in records
    where the tokens are."""
    enc = build_open_clip(checkpoint, name, device="meta")
    assert {p.device.type for p in enc.model.parameters()} == {"meta"}
    seen = []

    def encode_text(tokens):
        seen.append(tokens.device.type)
        return torch.ones(len(tokens), 16)

    enc.model.encode_text = encode_text
    assert enc.encode_text(["a dog", "a cat"]).shape == (2, 16)
    assert seen == ["meta"]


def test_metadata_describes_the_space(name, checkpoint):
    enc = build_open_clip(checkpoint, name)
    meta = enc.metadata()
    assert meta["encoder"] == f"open_clip({name}, tiny.pt)"
    assert meta["fingerprint"] == enc.fingerprint
    assert (meta["dim"], meta["image_size"], meta["box_mode"]) == ("16", "32", "none")
    identity = json.loads(meta["identity"])
    assert set(identity) == {
        "family",
        "weights_sha256",
        "config",
        "preprocess_cfg",
        "transform",
        "tensor_path",
    }
    assert identity["weights_sha256"] == state_dict_sha256(enc.model.state_dict())
    assert identity["family"] == "open_clip"
    assert identity["config"] == TINY_OPEN_CLIP
    assert identity["preprocess_cfg"]["mean"] == OPENAI_MEAN
    assert "Resize(size=32" in identity["transform"]


def test_augmented_views(name, checkpoint):
    enc = build_open_clip(checkpoint, name)
    images = pictures()[:2]
    aug = enc.encode_images(images, aug_seeds=[1, 2])
    assert (aug - enc.encode_images(images)).abs().max() > 1e-3
    torch.testing.assert_close(enc.encode_images(images, aug_seeds=[1, 2]), aug)


@pytest.mark.parametrize(
    ("weights", "model_name", "error", "words"),
    [
        (
            None,
            None,
            LocalWeightsError,
            "embed.weights is not set: encoder `open_clip` needs a local checkpoint file (with "
            "embed.model_name) or an OpenCLIP model folder (weights/README.md)",
        ),
        (
            "openai",
            "ViT-B-32",
            LocalWeightsError,
            "embed.weights: openai: no such file or folder; put the OpenCLIP checkpoint there "
            "(a pretrained tag such as `openai` is not accepted: OpenCLIP would download it; "
            "weights/README.md)",
        ),
        (
            "laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
            None,
            LocalWeightsError,
            "hf download laion/CLIP-ViT-H-14-laion2B-s32B-b79K --local-dir "
            "weights/CLIP-ViT-H-14-laion2B-s32B-b79K",
        ),
        (
            "hf-hub:timm/vit",
            None,
            LocalWeightsError,
            "embed.weights: timm/vit: a Hugging Face hub name",
        ),
        (
            "x.pt",
            "hf-hub:laion/model",
            LocalWeightsError,
            "embed.model_name: laion/model: a Hugging Face hub name",
        ),
    ],
)
def test_downloads_are_refused_in_one_line(
    weights, model_name, error, words, no_network, monkeypatch, tmp_path
):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(error) as err:
        build_open_clip(weights, model_name)
    assert words in str(err.value) and "\n" not in str(err.value)


class NotWeights:
    """A pickled object that needs code to load: what weights_only refuses."""


def test_a_checkpoint_that_needs_code_is_refused(name, tmp_path):
    path = tmp_path / "code.pt"
    torch.save({"payload": NotWeights()}, path)
    with pytest.raises(UntrustedCheckpointError, match=f"{path}: refused as untrusted"):
        build_open_clip(path, name)


def test_a_file_needs_a_known_architecture(checkpoint, name):
    with pytest.raises(ValueError) as err:
        build_open_clip(checkpoint)
    assert str(err.value) == (
        f"embed.model_name is not set: the checkpoint file {checkpoint} needs its architecture "
        "name, one of open_clip.list_models() (e.g. ViT-B-32)"
    )
    with pytest.raises(ValueError) as err:
        build_open_clip(checkpoint, "NoSuch-Net")
    assert str(err.value) == (
        "embed.model_name: 'NoSuch-Net' is not an OpenCLIP architecture; known: "
        "open_clip.list_models() (e.g. ViT-B-32, ViT-H-14)"
    )


def test_a_checkpoint_of_another_architecture_is_refused(checkpoint, name, tmp_path):
    wide = json.loads(json.dumps(TINY_OPEN_CLIP))
    wide["text_cfg"]["width"] = 48
    (tmp_path / "WavbrivlTiny-Wide.json").write_text(json.dumps(wide))
    open_clip.add_model_config(tmp_path / "WavbrivlTiny-Wide.json")
    with pytest.raises(CheckpointMismatchError) as err:
        build_open_clip(checkpoint, "WavbrivlTiny-Wide")
    message = str(err.value)
    assert message.startswith(f"embed.weights: {checkpoint}: does not load into the OpenCLIP")
    assert message.endswith("WavbrivlTiny-Wide (text pos_embed width changed!)")  # OpenCLIP's
    assert "\n" not in message


def test_a_load_error_without_a_message_is_named_by_its_type(checkpoint, name, monkeypatch):
    # A bare ``assert`` failing inside OpenCLIP's loading has no message of its own.
    def fail(*args, **kwargs):
        raise AssertionError

    monkeypatch.setattr(open_clip, "create_model_and_transforms", fail)
    with pytest.raises(CheckpointMismatchError) as err:
        build_open_clip(checkpoint, name)
    assert str(err.value) == (
        f"embed.weights: {checkpoint}: does not load into the OpenCLIP architecture {name} "
        "(AssertionError)"
    )


def test_folder_errors(folder, name, tmp_path):
    with pytest.raises(ValueError) as err:
        build_open_clip(folder, "ViT-B-32")
    assert str(err.value) == (
        "embed.model_name: 'ViT-B-32' is set, but embed.weights is a folder, whose "
        "open_clip_config.json names the architecture; unset embed.model_name"
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(LocalWeightsError) as err:
        build_open_clip(empty)
    assert str(err.value) == (
        f"embed.weights: {empty}: not a complete OpenCLIP model folder, missing "
        "open_clip_config.json; open_clip_model.safetensors or "
        "open_clip_pytorch_model.safetensors or open_clip_pytorch_model.bin (weights/README.md)"
    )
    broken = shutil.copytree(folder, tmp_path / "broken")
    (broken / "open_clip_config.json").write_text('{"preprocess_cfg": {}}')
    with pytest.raises(ValueError) as err:
        build_open_clip(broken)
    assert str(err.value) == (
        f"embed.weights: {broken / 'open_clip_config.json'}: not an OpenCLIP config "
        "(JSON with model_cfg)"
    )
    (broken / "open_clip_config.json").write_text("[1, 2]")  # JSON, not a mapping
    with pytest.raises(ValueError, match="not an OpenCLIP config"):
        build_open_clip(broken)
    (broken / "open_clip_config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not an OpenCLIP config"):
        build_open_clip(broken)


def test_text_towers_from_the_hub_are_refused(name, tmp_path):
    config = json.loads(json.dumps(TINY_OPEN_CLIP))
    config["text_cfg"]["hf_tokenizer_name"] = "timm/some-tokenizer"
    path = tmp_path / "WavbrivlTiny-HFTok.json"
    path.write_text(json.dumps(config))
    open_clip.add_model_config(path)
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"x")
    with pytest.raises(ValueError) as err:
        open_clip_source(weights, "WavbrivlTiny-HFTok")
    assert str(err.value) == (
        "WavbrivlTiny-HFTok: its text side needs 'timm/some-tokenizer' from the Hugging Face "
        "hub (hf_tokenizer_name); nothing is downloaded here: use an OpenCLIP model folder "
        "that holds it"
    )
    # a tokenizer that is a local folder is fine
    config["text_cfg"]["hf_tokenizer_name"] = str(tmp_path)
    path.write_text(json.dumps(config))
    open_clip.add_model_config(path)
    assert open_clip_source(weights, "WavbrivlTiny-HFTok")[:2] == (
        "WavbrivlTiny-HFTok",
        str(weights),
    )
    # in a model folder, OpenCLIP reads the tokenizer from the folder: accepted
    folder = save_open_clip_folder(tmp_path / "hftok")
    cfg = json.loads((folder / "open_clip_config.json").read_text())
    cfg["model_cfg"]["text_cfg"]["hf_tokenizer_name"] = "timm/some-tokenizer"
    (folder / "open_clip_config.json").write_text(json.dumps(cfg))
    assert open_clip_source(folder, None)[0] == f"local-dir:{folder}"
    cfg["model_cfg"]["text_cfg"]["hf_model_name"] = "org/text-model"
    (folder / "open_clip_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError) as err:
        open_clip_source(folder, None)
    assert str(err.value).startswith(f"{folder}: its text side needs 'org/text-model' from")
    # an HF text tower without an HF tokenizer name is checked too
    tower_only = {"text_cfg": {"hf_model_name": "org/text-model"}}
    with pytest.raises(ValueError, match="^x: its text side needs 'org/text-model'"):
        _offline_config(tower_only, "x", None)
    # no text_cfg at all (an image-only config) needs nothing from the hub
    assert _offline_config({"embed_dim": 8}, "x", None) == {"embed_dim": 8}


def test_built_from_the_embed_block(name, checkpoint):
    block = {"encoder": "open_clip", "weights": str(checkpoint), "device": "cpu"}
    enc = encoder_from_config({**block, "model_name": name, "box_mode": "whole"})
    assert enc.fingerprint == build_open_clip(checkpoint, name).fingerprint


def test_the_model_and_the_pixels_go_to_the_encoders_device(name, checkpoint):
    """On PyTorch's "meta" device (shapes only): weights, pixels and tokens all move."""
    enc = build_open_clip(checkpoint, name, device="meta")
    assert enc.device == torch.device("meta")
    assert {p.device.type for p in enc.model.parameters()} == {"meta"}
    assert enc.fingerprint == build_open_clip(checkpoint, name).fingerprint  # hashed first
    assert enc.encode_images(pictures()[:1]).device.type == "meta"
    assert enc.encode_text(["a dog"]).device.type == "meta"
