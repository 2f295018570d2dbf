"""HF-format CLIP as a frozen image space (wavbrivl.encoders.clip) on a tiny random model.

Parity references are transformers' own: the saved image processor + ``get_image_features``,
the saved tokenizer + ``get_text_features``, and the full ``CLIPModel`` forward's
``image_embeds`` / ``text_embeds`` (which normalise on their own), on the same folder.
"""

from __future__ import annotations

import json
import shutil
import socket
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from clip_models import as_tensor, pictures, save_hf_clip
from safetensors.torch import load_file, save_file
from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

from wavbrivl.checkpoints import state_dict_sha256
from wavbrivl.encoders.clip import (
    HFClipEncoder,
    build_clip,
    check_clip_folder,
    clip_folder_problems,
    preprocess_from_processor,
)
from wavbrivl.encoders.clip_family import LocalWeightsError
from wavbrivl.encoders.from_config import encoder_from_config
from wavbrivl.encoders.registry import ENCODERS, build_encoder

PROMPTS = ["a dog", "a cat", "a photo of a dog barking loudly in the park at night time today"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_hf_clip(tmp_path_factory.mktemp("hf_clip") / "tiny-clip")


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test (nothing may reach the hub)."""

    def refuse(*args, **kwargs):
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _reference(folder):
    model = CLIPModel.from_pretrained(folder).eval()
    return model, CLIPImageProcessor.from_pretrained(folder), CLIPTokenizer.from_pretrained(folder)


def _unit(x):
    return torch.nn.functional.normalize(x, dim=-1)


def test_registered_by_name(folder):
    assert ENCODERS["clip"] is build_clip
    enc = build_encoder("clip", weights=folder)
    assert isinstance(enc, HFClipEncoder)
    assert enc.name == "hf-clip(tiny-clip)"
    assert enc.dim == 24 and enc.device == torch.device("cpu")


def test_images_equal_transformers_own(folder, no_network):
    enc = build_clip(folder)
    model, processor, _ = _reference(folder)
    images = pictures()
    out = enc.encode_images(images)
    assert out.shape == (4, 24) and out.dtype == torch.float32
    with torch.no_grad():
        pixels = processor(images=images, return_tensors="pt")["pixel_values"]
        features = model.get_image_features(pixel_values=pixels).pooler_output
        # the full forward normalises by itself: a second, separate reference
        forward = model(input_ids=torch.tensor([[0, 1]]), pixel_values=pixels).image_embeds
    torch.testing.assert_close(out, _unit(features), rtol=0, atol=1e-6)
    torch.testing.assert_close(out, forward, rtol=0, atol=1e-6)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(4))
    assert not out.requires_grad


def test_numpy_images_equal_pil_images(folder):
    enc = build_clip(folder)
    images = pictures()[:3]
    arrays = [np.asarray(img) for img in images]
    torch.testing.assert_close(enc.encode_images(arrays), enc.encode_images(images))
    with pytest.raises(ValueError, match="uint8"):
        enc.encode_images([arrays[0].astype(np.float32)])


def test_text_equals_transformers_own(folder, no_network):
    enc = build_clip(folder)
    model, processor, tokenizer = _reference(folder)
    out = enc.encode_text(PROMPTS)
    assert out.shape == (3, 24) and out.dtype == torch.float32
    # padded to the full context, truncated at 16 tokens (the third prompt has more)
    tokens = tokenizer(
        PROMPTS, padding="max_length", max_length=16, truncation=True, return_tensors="pt"
    )
    assert tokens["input_ids"].shape == (3, 16)
    assert tokens["input_ids"][2, -1] == tokenizer.eos_token_id  # truncated, eos kept
    pixels = processor(images=pictures()[:1], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        features = model.get_text_features(**tokens).pooler_output
        forward = model(**tokens, pixel_values=pixels).text_embeds
    torch.testing.assert_close(out, _unit(features), rtol=0, atol=1e-6)
    torch.testing.assert_close(out, forward, rtol=0, atol=1e-6)
    # the prompts are told apart, and the same prompt is embedded the same in any batch
    assert (out @ out.T)[0, 1] < 0.999
    torch.testing.assert_close(enc.encode_text(["a cat"])[0], out[1], rtol=0, atol=1e-6)


def test_encode_text_refuses_no_prompts(folder):
    enc = build_clip(folder)
    for bad in ([], "a dog"):
        with pytest.raises(ValueError, match="non-empty list of strings"):
            enc.encode_text(bad)


def test_tensor_path_follows_the_processor_and_keeps_gradients(folder):
    enc = build_clip(folder)
    _, processor, _ = _reference(folder)
    for image in pictures():
        x = as_tensor(image).requires_grad_(True)
        pixels = enc.preprocess.from_tensor(x)
        reference = processor(images=[image], return_tensors="pt")["pixel_values"]
        assert pixels.shape == reference.shape == (1, 3, 32, 32)
        # in [0, 1] units: the processor resizes uint8 (rounding) with the same bicubic kernel
        std = torch.tensor(processor.image_std).view(1, 3, 1, 1)
        assert ((pixels - reference) * std).abs().max() < 3 / 255
        out = enc.encode_images(x)
        assert out.requires_grad
        torch.testing.assert_close(out, enc.encode_images([image]), rtol=0, atol=0.02)
        out[0, 0].backward()
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_preprocess_is_read_from_the_saved_processor(tmp_path):
    folder = save_hf_clip(
        tmp_path / "squash",
        processor_kwargs={
            "size": {"height": 40, "width": 40},
            "crop_size": {"height": 32, "width": 32},
            "image_mean": [0.5, 0.4, 0.3],
            "image_std": [0.2, 0.25, 0.3],
            "resample": 2,
        },
    )
    pre = build_clip(folder).preprocess
    assert pre.settings() == {
        "size": 40,
        "crop": 32,
        "mean": [0.5, 0.4, 0.3],
        "std": [0.2, 0.25, 0.3],
        "resize_mode": "squash",
        "interpolation": "bilinear",
        "crop_offset": "floor",
    }
    assert pre.img_size == 32


STEPS = "(it follows resize, centre crop, rescale and normalise, bilinear or bicubic)"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"do_center_crop": False}, f"do_center_crop=False {STEPS}"),
        ({"do_normalize": False, "resample": 0}, f"do_normalize=False, resample=0 {STEPS}"),
        ({"do_resize": False, "do_rescale": False}, f"do_resize=False, do_rescale=False {STEPS}"),
        ({"resample": 1}, f"resample=1 {STEPS}"),
        (
            {"crop_size": {"height": 32, "width": 30}},
            "a non-square crop (32 x 30) is not supported",
        ),
        (
            {"size": {"height": 40, "width": 50}},
            "image processor size {'height': 40, 'width': 50} is not supported",
        ),
    ],
)
def test_processor_settings_the_tensor_path_cannot_follow_are_refused(kwargs, message):
    base = {"size": {"shortest_edge": 32}, "crop_size": {"height": 32, "width": 32}}
    with pytest.raises(ValueError) as err:
        preprocess_from_processor(CLIPImageProcessor(**{**base, **kwargs}))
    prefix = "image processor settings the tensor path cannot follow: "
    assert str(err.value) in (message, prefix + message)


def test_augmented_views_are_seeded_and_match_the_tensor_path(folder):
    enc = build_clip(folder)
    images = pictures()[:2]
    clean = enc.encode_images(images)
    # seed 1 and 2 draw a colour jitter (sample_augment_params), so the views change
    aug = enc.encode_images(images, aug_seeds=[1, 2])
    assert (aug - clean).abs().max() > 1e-3
    torch.testing.assert_close(enc.encode_images(images, aug_seeds=[1, 2]), aug)
    swapped = enc.encode_images(images[::-1], aug_seeds=[2, 1])
    torch.testing.assert_close(swapped, aug.flip(0), rtol=0, atol=1e-6)
    via_tensor = torch.cat(
        [
            enc.encode_images(as_tensor(img), aug_seeds=[s])
            for img, s in zip(images, [1, 2], strict=True)
        ]
    )
    torch.testing.assert_close(via_tensor, aug, rtol=0, atol=0.02)
    with pytest.raises(ValueError, match="1 aug_seeds for 2 images"):
        enc.encode_images(images, aug_seeds=[1])


def test_no_images_is_an_error(folder):
    with pytest.raises(ValueError, match="no images"):
        build_clip(folder).encode_images([])


def test_fingerprint_follows_weights_and_preprocessing_not_the_path(folder, tmp_path):
    base = build_clip(folder)
    assert len(base.fingerprint) == 64
    # the same files elsewhere: same model, same cache
    moved = shutil.copytree(folder, tmp_path / "elsewhere")
    assert build_clip(moved).fingerprint == base.fingerprint
    # one weight nudged
    nudged = shutil.copytree(folder, tmp_path / "nudged")
    state = load_file(nudged / "model.safetensors")
    key = "visual_projection.weight"
    state[key][0, 0] += 1e-3
    save_file(state, nudged / "model.safetensors", metadata={"format": "pt"})
    assert build_clip(nudged).fingerprint != base.fingerprint
    # another crop
    cropped = shutil.copytree(folder, tmp_path / "cropped")
    config = json.loads((cropped / "preprocessor_config.json").read_text())
    config["image_mean"] = [0.5, 0.5, 0.5]
    (cropped / "preprocessor_config.json").write_text(json.dumps(config))
    assert build_clip(cropped).fingerprint != base.fingerprint


def test_metadata_describes_the_space(folder):
    enc = build_clip(folder)
    meta = enc.metadata()
    assert meta["encoder"] == "hf-clip(tiny-clip)"
    assert meta["fingerprint"] == enc.fingerprint
    assert meta["dim"] == "24" and meta["image_size"] == "32" and meta["box_mode"] == "none"
    assert json.loads(meta["preprocessing"])["mean"] == [0.48145466, 0.4578275, 0.40821073]
    identity = json.loads(meta["identity"])
    assert set(identity) == {"family", "weights_sha256", "config", "image_processor", "tensor_path"}
    assert identity["weights_sha256"] == state_dict_sha256(enc.model.state_dict())
    assert identity["image_processor"]["crop_size"] == {"height": 32, "width": 32}
    assert identity["family"] == "hf_clip"
    assert identity["config"]["projection_dim"] == 24
    assert "_name_or_path" not in identity["config"]  # the path is not the model


def test_hub_name_is_refused_without_a_download(no_network, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LocalWeightsError) as err:
        build_clip("openai/clip-vit-base-patch32")
    message = str(err.value)
    assert "\n" not in message
    assert "openai/clip-vit-base-patch32: a Hugging Face hub name, not a local path" in message
    assert (
        "hf download openai/clip-vit-base-patch32 --local-dir weights/clip-vit-base-patch32"
        in message
    )
    assert message.startswith("embed.weights:") and "nothing is downloaded here" in message


def test_missing_folder_and_unset_key_are_one_line_errors(no_network, tmp_path):
    missing = tmp_path / "weights" / "clip-vit-b32"
    with pytest.raises(LocalWeightsError) as err:
        build_clip(missing)
    assert str(err.value) == (
        f"embed.weights: {missing}: no such folder; put the HF-format CLIP model folder there "
        "(config.json, weights, preprocessor_config.json, tokenizer files; weights/README.md)"
    )
    with pytest.raises(LocalWeightsError) as err:
        build_clip(None)
    assert str(err.value) == (
        "embed.weights is not set: encoder `clip` needs a local folder of an HF-format CLIP "
        "model (weights/README.md)"
    )
    with pytest.raises(LocalWeightsError, match="^model.path: "):
        check_clip_folder(missing, key="model.path")


def test_incomplete_folder_names_what_is_missing(folder, tmp_path):
    assert clip_folder_problems(folder) == []
    partial = shutil.copytree(folder, tmp_path / "partial")
    (partial / "tokenizer.json").unlink()
    (partial / "model.safetensors").unlink()
    with pytest.raises(LocalWeightsError) as err:
        check_clip_folder(partial)
    assert str(err.value) == (
        f"embed.weights: {partial}: not a complete HF CLIP folder, missing "
        "model.safetensors or model.safetensors.index.json or pytorch_model.bin; "
        "tokenizer.json (or vocab.json + merges.txt) (weights/README.md)"
    )
    # vocab.json + merges.txt stand in for tokenizer.json (both are needed)
    (partial / "vocab.json").write_text("{}")
    assert len(clip_folder_problems(partial)) == 2
    (partial / "merges.txt").write_text("")
    assert clip_folder_problems(partial) == [
        "model.safetensors or model.safetensors.index.json or pytorch_model.bin"
    ]
    (partial / "config.json").unlink()
    (partial / "preprocessor_config.json").unlink()
    assert clip_folder_problems(partial)[:2] == ["config.json", "preprocessor_config.json"]


def test_a_folder_mixing_two_models_is_refused(folder):
    model, processor, tokenizer = _reference(folder)
    model.config.text_config.eos_token_id = 7
    with pytest.raises(ValueError) as err:
        HFClipEncoder(model, processor, tokenizer, name="mixed")
    assert str(err.value) == (
        f"mixed: the model's eos_token_id 7 is not the tokenizer's ({tokenizer.eos_token_id}); "
        "the folder mixes two models"
    )
    model.config.text_config.eos_token_id = 2  # transformers' legacy setting is accepted
    HFClipEncoder(model, processor, tokenizer, name="legacy")


def test_built_from_the_embed_block(folder):
    block = {"encoder": "clip", "weights": str(folder), "device": "cpu", "box_mode": "whole"}
    enc = encoder_from_config({**block, "image_size": None, "model_name": None})
    assert enc.fingerprint == build_clip(folder).fingerprint
    for key, value in (("image_size", 380), ("box_mode", "grid"), ("model_name", "ViT-B-32")):
        with pytest.raises(ValueError, match=f"does not read embed.{key}={value}"):
            encoder_from_config({**block, key: value})


def test_weights_are_loaded_in_float32(folder, tmp_path):
    half = tmp_path / "half"
    shutil.copytree(folder, half)
    model = CLIPModel.from_pretrained(folder).half()
    model.save_pretrained(half)
    enc = build_clip(half)
    assert {p.dtype for p in enc.model.parameters()} == {torch.float32}
    assert enc.encode_images(pictures()[:1]).dtype == torch.float32


def test_the_model_goes_to_the_encoders_device(folder):
    """On PyTorch's "meta" device (shapes only; the text tower's eos lookup cannot run)."""
    enc = build_clip(folder, device="meta")
    assert enc.device == torch.device("meta")
    assert {p.device.type for p in enc.model.parameters()} == {"meta"}
    assert enc.fingerprint == build_clip(folder).fingerprint  # hashed before the move


def test_the_tokens_go_to_the_encoders_device(folder):
    """The text tower cannot run on "meta": a stand-in records where the tokens are."""
    enc = build_clip(folder, device="meta")
    seen = []

    def text_features(input_ids, attention_mask):
        seen.append((input_ids.device.type, attention_mask.device.type))
        return SimpleNamespace(pooler_output=torch.ones(len(input_ids), 24))

    enc.model.get_text_features = text_features
    assert enc.encode_text(["a dog", "a cat"]).shape == (2, 24)
    assert seen == [("meta", "meta")]
