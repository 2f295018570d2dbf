"""check_weights for the open image spaces: an HF CLIP folder, an OpenCLIP file or folder, and
hub names where a local path belongs. Folders are written by the libraries themselves
(save_pretrained; OpenCLIP's folder layout), then broken on purpose."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from clip_models import register_tiny_open_clip, save_hf_clip, save_open_clip_folder

from wavbrivl.toy_guard import toy_keys
from wavbrivl.weights_check import (
    WeightsError,
    check_weights,
    hf_clip_problem,
    hub_name_problem,
    open_clip_problem,
    required_weights,
)


def _config(encoder, weights):
    return {
        "datasets": {"vgg": {"format": "vggsound", "role": "train"}},
        "embed": {"encoder": encoder, "weights": weights, "architecture": "tiny"},
        "audio": {"wavlm": "tiny"},
        "generate": {"vqgan": "tiny"},
    }


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    return save_hf_clip(tmp_path_factory.mktemp("w") / "clip-vit-b32")


@pytest.fixture(scope="module")
def oc_folder(tmp_path_factory):
    register_tiny_open_clip(tmp_path_factory.mktemp("cfg"))
    return save_open_clip_folder(tmp_path_factory.mktemp("w") / "open-clip")


@pytest.mark.parametrize(
    ("encoder", "kind", "what"),
    [
        ("clip", "hf_clip", "HF-format CLIP model folder"),
        ("open_clip", "open_clip", "OpenCLIP checkpoint file or model folder"),
    ],
)
def test_clip_encoders_need_their_weights(encoder, kind, what):
    weights = required_weights(_config(encoder, "weights/x"))
    assert [(w.key, w.path, w.kind, w.what) for w in weights] == [
        ("embed.weights", "weights/x", kind, what)
    ]
    # not toy models: the toy guard has nothing to say (embed.architecture is brivl's only)
    assert [k for k in toy_keys(_config(encoder, "weights/x")) if k.startswith("embed")] == []


def test_a_saved_hf_clip_folder_passes(hf_folder):
    assert hf_clip_problem(str(hf_folder)) is None


def test_every_problem_of_an_hf_clip_folder_is_listed(hf_folder, tmp_path):
    broken = shutil.copytree(hf_folder, tmp_path / "broken")
    (broken / "config.json").write_text(json.dumps({"model_type": "wavlm"}))
    (broken / "preprocessor_config.json").unlink()
    (broken / "tokenizer.json").unlink()
    (broken / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
    assert hf_clip_problem(str(broken)) == (
        "config.json is not a CLIP config (model_type: wavlm); "
        "preprocessor_config.json missing; "
        "model.safetensors truncated (header longer than the file); "
        "no tokenizer.json (or vocab.json + merges.txt)"
    )
    (broken / "config.json").write_text("{not json")
    (broken / "model.safetensors").unlink()
    (broken / "vocab.json").write_text("{}")  # without merges.txt: still no tokenizer
    assert hf_clip_problem(str(broken)) == (
        "config.json is not a CLIP config (model_type: unreadable); "
        "preprocessor_config.json missing; "
        "no model.safetensors or model.safetensors.index.json or pytorch_model.bin; "
        "no tokenizer.json (or vocab.json + merges.txt)"
    )
    (broken / "merges.txt").write_text("#version: 0.2\n")
    (broken / "config.json").unlink()
    torch.save({"w": torch.zeros(2)}, broken / "pytorch_model.bin")
    assert hf_clip_problem(str(broken)) == ("config.json missing; preprocessor_config.json missing")
    (broken / "pytorch_model.bin").write_bytes(b"junk")
    assert "pytorch_model.bin not a torch checkpoint" in hf_clip_problem(str(broken))


def test_sharded_hf_weights_pass_by_their_index(hf_folder, tmp_path):
    sharded = shutil.copytree(hf_folder, tmp_path / "sharded")
    (sharded / "model.safetensors").unlink()
    (sharded / "model.safetensors.index.json").write_text('{"weight_map": {}}')
    assert hf_clip_problem(str(sharded)) is None


def test_hf_clip_path_problems(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "weights").mkdir()
    assert hf_clip_problem("weights/none") == "missing"
    (tmp_path / "weights" / "file").write_text("x")
    assert hf_clip_problem("weights/file") == "not a folder (an HF CLIP model folder is expected)"


def test_hub_names_are_named_as_downloads(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no openai/ or laion/ folder here
    expected = (
        "a Hugging Face hub name, not a local path, and nothing is downloaded here: download "
        "it on a machine with internet (`hf download openai/clip-vit-base-patch32 --local-dir "
        "weights/clip-vit-base-patch32`) and set the key to that folder"
    )
    assert hub_name_problem("openai/clip-vit-base-patch32") == expected
    assert hf_clip_problem("openai/clip-vit-base-patch32") == expected
    assert open_clip_problem("hf-hub:openai/clip-vit-base-patch32") == expected
    (tmp_path / "openai").mkdir()  # now it is a local path (a missing one)
    assert hub_name_problem("openai/clip-vit-base-patch32") is None
    assert hf_clip_problem("openai/clip-vit-base-patch32") == "missing"


def test_open_clip_files_and_folders(oc_folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert open_clip_problem(str(oc_folder)) is None
    assert open_clip_problem("ViT-B-32.pt") == (
        "missing (a pretrained tag such as `openai` is not accepted: it is a download)"
    )
    torch.save({"w": torch.zeros(2)}, tmp_path / "ckpt.pt")
    assert open_clip_problem(str(tmp_path / "ckpt.pt")) is None
    (tmp_path / "ckpt.bin").write_bytes(b"")
    assert open_clip_problem(str(tmp_path / "ckpt.bin")) == "empty (0 bytes)"
    shutil.copy(oc_folder / "open_clip_model.safetensors", tmp_path / "c.safetensors")
    assert open_clip_problem(str(tmp_path / "c.safetensors")) is None
    (tmp_path / "c.safetensors").write_bytes(b"\x00" * 4)
    assert open_clip_problem(str(tmp_path / "c.safetensors")) == "truncated (no header)"


def test_every_problem_of_an_open_clip_folder_is_listed(oc_folder, tmp_path):
    broken = shutil.copytree(oc_folder, tmp_path / "broken")
    (broken / "open_clip_config.json").write_text('{"preprocess_cfg": {}}')
    (broken / "open_clip_model.safetensors").write_bytes(b"\x00" * 4)
    assert open_clip_problem(str(broken)) == (
        "open_clip_config.json has no model_cfg; open_clip_model.safetensors truncated (no header)"
    )
    (broken / "open_clip_config.json").write_text("[1")
    (broken / "open_clip_model.safetensors").unlink()
    assert open_clip_problem(str(broken)) == (
        "open_clip_config.json has no model_cfg; no weights file "
        "(open_clip_model.safetensors, open_clip_pytorch_model.safetensors, "
        "open_clip_pytorch_model.bin, ...)"
    )
    (broken / "open_clip_config.json").unlink()
    torch.save({"w": torch.zeros(2)}, broken / "open_clip_pytorch_model.bin")
    assert open_clip_problem(str(broken)) == "open_clip_config.json missing"


def test_one_message_for_the_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WeightsError) as err:
        check_weights(required_weights(_config("clip", "openai/clip-vit-base-patch32")))
    assert "embed.weights: openai/clip-vit-base-patch32: a Hugging Face hub name" in str(err.value)
