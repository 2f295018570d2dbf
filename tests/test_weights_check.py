"""check_weights: which weight files a config needs, and every missing or unreadable one,
reported together. The files are made here in their official formats (torch.save in both its
zip and legacy layouts, a taming YAML, an HF folder written by save_pretrained) and then
broken on purpose (emptied, truncated, replaced by something else)."""

from __future__ import annotations

import copy
import json
import os
import pickle
import struct
import tarfile
import zipfile
from pathlib import Path

import pytest
import torch

from wavbrivl.weights_check import (
    CHECKS,
    README,
    Weight,
    WeightsError,
    bert_text_folder_problem,
    check_weights,
    hf_wavlm_problem,
    is_local_path,
    problems,
    required_weights,
    taming_yaml_problem,
    torch_problem,
    weight_stats,
    write_record,
)

PAPER = {
    "datasets": {
        "vggsound": {"format": "vggsound", "role": "train"},
        "audioset_gen": {"format": "audioset", "role": "generation"},
    },
    "embed": {"encoder": "brivl", "weights": "weights/BriVL-1.0-5500w.pth"},
    "audio": {"wavlm": "weights/wavlm-base-plus"},
    "generate": {
        "vqgan": "taming",
        "vqgan_ckpt": "weights/vqgan_imagenet_f16_16384.ckpt",
        "vqgan_yaml": "weights/vqgan_imagenet_f16_16384.yaml",
    },
}
TOY = {
    "datasets": PAPER["datasets"],
    "embed": {"encoder": "tiny", "weights": None},
    "audio": {"wavlm": "tiny"},
    "generate": {"vqgan": "tiny", "vqgan_ckpt": None, "vqgan_yaml": None},
}
TAMING_YAML = """\
model:
  target: taming.models.vqgan.VQModel
  params:
    embed_dim: 256
    n_embed: 16384
    ddconfig: {double_z: false, z_channels: 256, resolution: 256, ch: 128}
"""


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _torch_zip(path: Path) -> Path:
    torch.save({"learnable": {"w": torch.zeros(3)}}, path)
    return path


def _wavlm_folder(path: Path, weights: str = "model.safetensors") -> Path:
    import numpy as np
    from safetensors.numpy import save_file

    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model_type": "wavlm", "hidden_size": 8}))
    (path / "preprocessor_config.json").write_text(json.dumps({"do_normalize": False}))
    if weights == "model.safetensors":
        save_file({"w": np.zeros(4, dtype=np.float32)}, str(path / weights))
    else:
        _torch_zip(path / weights)
    return path


# --- which files a config needs ----------------------------------------------------------------


def test_the_paper_config_needs_four_files(in_tmp):
    (in_tmp / "weights").mkdir()  # a checkout has weights/ (its README)
    assert [(w.key, w.path, w.kind) for w in required_weights(PAPER)] == [
        ("embed.weights", "weights/BriVL-1.0-5500w.pth", "torch"),
        ("audio.wavlm", "weights/wavlm-base-plus", "hf_wavlm"),
        ("generate.vqgan_ckpt", "weights/vqgan_imagenet_f16_16384.ckpt", "torch"),
        ("generate.vqgan_yaml", "weights/vqgan_imagenet_f16_16384.yaml", "taming_yaml"),
    ]
    assert [w.what for w in required_weights(PAPER)] == [
        "BriVL-1.0 checkpoint",
        "WavLM Base+, HF format",
        "VQGAN checkpoint",
        "VQGAN YAML",
    ]


def test_toy_models_need_no_files(in_tmp):
    (in_tmp / "tiny").mkdir()  # even where a folder is named like the toy WavLM
    assert required_weights(TOY) == []


def test_a_hub_wavlm_is_not_a_file_here(in_tmp):
    cfg = copy.deepcopy(PAPER)
    cfg["audio"]["wavlm"] = "microsoft/wavlm-base-plus"
    assert "audio.wavlm" not in [w.key for w in required_weights(cfg)]


def test_the_vqgan_is_needed_only_when_something_is_generated(in_tmp):
    cfg = copy.deepcopy(PAPER)
    del cfg["datasets"]["audioset_gen"]
    assert [w.key for w in required_weights(cfg)] == ["embed.weights"]  # no weights/ here
    cfg = copy.deepcopy(TOY)
    cfg["generate"].update(vqgan="taming", vqgan_ckpt="v.ckpt", vqgan_yaml="v.yaml")
    assert [w.key for w in required_weights(cfg)] == ["generate.vqgan_ckpt", "generate.vqgan_yaml"]


@pytest.mark.parametrize(
    ("value", "make", "local"),
    [
        ("microsoft/wavlm-base-plus", None, False),
        ("weights/wavlm-base-plus", "weights", True),  # its first folder exists
        ("weights/wavlm-base-plus", None, False),
        ("./wavlm", None, True),
        ("../wavlm", None, True),
        ("/opt/models/wavlm", None, True),
        ("my-wavlm", "my-wavlm", True),  # exists
        ("my-wavlm", None, False),
    ],
)
def test_local_paths_and_hub_ids(in_tmp, value, make, local):
    if make:
        (in_tmp / make).mkdir()
    assert is_local_path(value) is local


def test_a_file_named_like_the_first_folder_does_not_make_a_path_local(in_tmp):
    (in_tmp / "microsoft").write_text("")
    assert is_local_path("microsoft/wavlm-base-plus") is False


# --- torch checkpoints ---------------------------------------------------------------------------


def test_torch_files_in_both_layouts_pass(tmp_path):
    assert torch_problem(str(_torch_zip(tmp_path / "zip.pth"))) is None
    legacy = tmp_path / "legacy.pth"
    torch.save({"w": torch.zeros(2)}, legacy, _use_new_zipfile_serialization=False)
    assert torch_problem(str(legacy)) is None


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_pickles_of_every_protocol_torch_wrote_pass(tmp_path, protocol):
    path = tmp_path / "p.pth"
    path.write_bytes(pickle.dumps({"a": 1}, protocol=protocol))
    assert torch_problem(str(path)) is None


@pytest.mark.parametrize("head", [b"\x80\x01rest", b"\x80\x06rest", b"\x81\x02rest", b"\x80", b"P"])
def test_other_pickle_like_headers_fail(tmp_path, head):
    path = tmp_path / "p.pth"
    path.write_bytes(head)
    assert torch_problem(str(path)) == "not a torch checkpoint (neither a torch zip nor a pickle)"


def test_a_tar_download_is_recognised(tmp_path):
    # The BriVL release page offers BriVL-1.0-5500w.tar; our loader wants the .pth.
    inner = _torch_zip(tmp_path / "BriVL-1.0-5500w.pth")
    with tarfile.open(tmp_path / "BriVL-1.0-5500w.tar", "w") as archive:
        archive.add(inner, arcname=inner.name)
    assert torch_problem(str(tmp_path / "BriVL-1.0-5500w.tar")) == (
        "a tar archive: unpack it (tar -xf) and point the key at the .pth inside"
    )


def test_broken_torch_files_are_named(tmp_path):
    assert torch_problem(str(tmp_path / "absent.pth")) == "missing"
    assert torch_problem(str(tmp_path)) == "a folder, not a file"
    (tmp_path / "empty.pth").write_bytes(b"")
    assert torch_problem(str(tmp_path / "empty.pth")) == "empty (0 bytes)"
    whole = _torch_zip(tmp_path / "whole.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(whole[: len(whole) // 2])
    assert torch_problem(str(tmp_path / "cut.pth")) == (
        "truncated or damaged (a zip without a readable directory)"
    )
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as archive:
        archive.writestr("model/weights.npy", b"x")
    assert torch_problem(str(tmp_path / "other.zip")) == (
        "a zip file, but not a torch checkpoint (no data.pkl inside)"
    )
    (tmp_path / "html.pth").write_text("<html>Sign in</html>")
    assert torch_problem(str(tmp_path / "html.pth")) == (
        "not a torch checkpoint (neither a torch zip nor a pickle)"
    )


def test_an_unreadable_file_is_named(tmp_path, monkeypatch):
    # Tests may run as root, who reads every file: ask os.access for this path to say no.
    path = _torch_zip(tmp_path / "locked.pth")
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: mode != os.R_OK and real_access(p, mode))
    assert torch_problem(str(path)) == "not readable (permissions)"


# --- the VQGAN YAML ------------------------------------------------------------------------------


def test_a_taming_yaml_passes(tmp_path):
    path = tmp_path / "v.yaml"
    path.write_text(TAMING_YAML)
    assert taming_yaml_problem(str(path)) is None


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("model: [1\nparams: 2\n", "not valid YAML (expected ',' or ']', but got ':' at line 2)"),
        (
            "a: 1\nb: !!python/object:os.system x\n",
            "not valid YAML (could not determine a constructor for the tag "
            "'tag:yaml.org,2002:python/object:os.system' at line 2)",
        ),
        (
            "model: \x07\n",
            "not valid YAML (unacceptable character #x0007: special characters are not allowed)",
        ),
        ("- a\n- b\n", "not a taming model config (no model.params.ddconfig)"),
        ("model: 3\n", "not a taming model config (no model.params.ddconfig)"),
        ("model:\n  params: 3\n", "not a taming model config (no model.params.ddconfig)"),
        (
            "model:\n  params:\n    embed_dim: 256\n",
            "not a taming model config (no model.params.ddconfig)",
        ),
        (
            "model:\n  params:\n    ddconfig: 7\n",
            "not a taming model config (no model.params.ddconfig)",
        ),
        (
            "other:\n  params:\n    ddconfig: {ch: 1}\n",
            "not a taming model config (no model.params.ddconfig)",
        ),
    ],
)
def test_bad_yaml_is_named(tmp_path, text, problem):
    path = tmp_path / "v.yaml"
    path.write_text(text)
    assert taming_yaml_problem(str(path)) == problem


def test_missing_empty_and_binary_yaml(tmp_path):
    assert taming_yaml_problem(str(tmp_path / "absent.yaml")) == "missing"
    (tmp_path / "empty.yaml").write_text("")
    assert taming_yaml_problem(str(tmp_path / "empty.yaml")) == "empty (0 bytes)"
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00\x81")
    assert taming_yaml_problem(str(tmp_path / "bin.yaml")) == "not a text file"


# --- the WavLM folder ----------------------------------------------------------------------------


def test_a_wavlm_written_by_save_pretrained_passes(tmp_path):
    from wavbrivl.audio.tiny import save_tiny_wavlm

    assert hf_wavlm_problem(str(save_tiny_wavlm(tmp_path / "wavlm"))) is None


@pytest.mark.parametrize("weights", ["model.safetensors", "pytorch_model.bin"])
def test_either_weights_file_passes(tmp_path, weights):
    assert hf_wavlm_problem(str(_wavlm_folder(tmp_path / "w", weights))) is None


def test_every_problem_of_a_folder_is_listed(tmp_path):
    assert hf_wavlm_problem(str(tmp_path / "absent")) == "missing"
    (tmp_path / "file").write_text("x")
    assert (
        hf_wavlm_problem(str(tmp_path / "file")) == "not a folder (an HF model folder is expected)"
    )
    (tmp_path / "empty").mkdir()
    assert hf_wavlm_problem(str(tmp_path / "empty")) == (
        "config.json missing; preprocessor_config.json missing; "
        "no model.safetensors or pytorch_model.bin"
    )


def test_a_config_of_another_model_or_not_json(tmp_path):
    folder = _wavlm_folder(tmp_path / "w")
    (folder / "config.json").write_text(json.dumps({"model_type": "hubert"}))
    assert hf_wavlm_problem(str(folder)) == "config.json is not a WavLM config (model_type: hubert)"
    (folder / "config.json").write_text("{not json")
    assert (
        hf_wavlm_problem(str(folder))
        == "config.json is not a WavLM config (model_type: unreadable)"
    )
    (folder / "config.json").write_text("[1, 2]")
    assert (
        hf_wavlm_problem(str(folder))
        == "config.json is not a WavLM config (model_type: unreadable)"
    )
    (folder / "config.json").write_text("")
    (folder / "preprocessor_config.json").unlink()
    assert hf_wavlm_problem(str(folder)) == (
        "config.json empty (0 bytes); preprocessor_config.json missing"
    )


def test_damaged_safetensors_are_named(tmp_path):
    folder = _wavlm_folder(tmp_path / "w")
    weights = folder / "model.safetensors"
    whole = weights.read_bytes()
    (length,) = struct.unpack("<Q", whole[:8])
    assert len(whole) == 8 + length + 16  # the header, then 4 float32 zeros
    weights.write_bytes(whole[:-1])  # the data one byte short
    assert (
        hf_wavlm_problem(str(folder))
        == "model.safetensors truncated (shorter than its header says)"
    )
    weights.write_bytes(whole[: 8 + length - 1])  # the header itself cut
    assert (
        hf_wavlm_problem(str(folder)) == "model.safetensors truncated (header longer than the file)"
    )
    weights.write_bytes(b"\xff" * 8 + b"{}")  # a length of 2**64 - 1 (unsigned, little-endian)
    assert (
        hf_wavlm_problem(str(folder)) == "model.safetensors truncated (header longer than the file)"
    )
    weights.write_bytes(whole[:5])
    assert hf_wavlm_problem(str(folder)) == "model.safetensors truncated (no header)"
    weights.write_bytes(whole + b"extra")  # longer than needed: not this check's business
    assert hf_wavlm_problem(str(folder)) is None
    for header in [
        b"{{{{",
        b"[1, 2]",
        b'{"w": 3}',
        b'{"w": {"dtype": "F32"}}',
        b'{"w": {"data_offsets": []}}',
    ]:
        weights.write_bytes(len(header).to_bytes(8, "little") + header)
        assert hf_wavlm_problem(str(folder)) == (
            "model.safetensors damaged (its header is not a safetensors header)"
        ), header
    header = json.dumps({"__metadata__": {"format": "pt"}}).encode()
    weights.write_bytes(len(header).to_bytes(8, "little") + header)  # no tensors: nothing cut
    assert hf_wavlm_problem(str(folder)) is None
    weights.write_bytes(b"")
    assert hf_wavlm_problem(str(folder)) == "model.safetensors empty (0 bytes)"


def test_a_damaged_pytorch_model_bin_is_named(tmp_path):
    folder = _wavlm_folder(tmp_path / "w", "pytorch_model.bin")
    (folder / "pytorch_model.bin").write_text("oops")
    assert hf_wavlm_problem(str(folder)) == (
        "pytorch_model.bin not a torch checkpoint (neither a torch zip nor a pickle)"
    )


# --- the one message -----------------------------------------------------------------------------


def _paper_files(root: Path) -> list[Weight]:
    (root / "weights").mkdir(exist_ok=True)
    _torch_zip(root / "weights/BriVL-1.0-5500w.pth")
    _wavlm_folder(root / "weights/wavlm-base-plus")
    _torch_zip(root / "weights/vqgan_imagenet_f16_16384.ckpt")
    (root / "weights/vqgan_imagenet_f16_16384.yaml").write_text(TAMING_YAML)
    return required_weights(PAPER)


def test_all_files_in_place_pass(in_tmp):
    weights = _paper_files(in_tmp)
    assert len(weights) == 4
    assert problems(weights) == []
    check_weights(weights)  # no error


def test_every_missing_or_unreadable_file_is_in_one_message(in_tmp):
    weights = _paper_files(in_tmp)
    (in_tmp / "weights/BriVL-1.0-5500w.pth").unlink()
    (in_tmp / "weights/wavlm-base-plus/config.json").unlink()
    (in_tmp / "weights/vqgan_imagenet_f16_16384.ckpt").write_bytes(b"")
    with pytest.raises(WeightsError) as err:
        check_weights(weights)
    assert str(err.value) == (
        "3 weight file(s) missing or unreadable:\n"
        "  - embed.weights: weights/BriVL-1.0-5500w.pth: missing (BriVL-1.0 checkpoint)\n"
        "  - audio.wavlm: weights/wavlm-base-plus: config.json missing (WavLM Base+, HF format)\n"
        "  - generate.vqgan_ckpt: weights/vqgan_imagenet_f16_16384.ckpt: empty (0 bytes) "
        "(VQGAN checkpoint)\n"
        f"{README} says who publishes each file, its size and where to put it; then run the "
        "workflow again (`snakemake check_weights` checks them alone)."
    )
    assert README == "weights/README.md"


def test_the_record_is_written_only_when_all_pass(in_tmp):
    weights = _paper_files(in_tmp)
    write_record(weights, in_tmp / "weights.json")
    assert json.loads((in_tmp / "weights.json").read_text()) == [
        {"key": "embed.weights", "path": "weights/BriVL-1.0-5500w.pth", "kind": "torch"},
        {"key": "audio.wavlm", "path": "weights/wavlm-base-plus", "kind": "hf_wavlm"},
        {
            "key": "generate.vqgan_ckpt",
            "path": "weights/vqgan_imagenet_f16_16384.ckpt",
            "kind": "torch",
        },
        {
            "key": "generate.vqgan_yaml",
            "path": "weights/vqgan_imagenet_f16_16384.yaml",
            "kind": "taming_yaml",
        },
    ]
    (in_tmp / "weights/vqgan_imagenet_f16_16384.yaml").write_text("")
    with pytest.raises(WeightsError, match="1 weight file"):
        write_record(weights, in_tmp / "again.json")
    assert not (in_tmp / "again.json").exists()


def test_stats_change_with_any_file(in_tmp):
    weights = _paper_files(in_tmp)
    stats = weight_stats(weights)

    def st(path):
        s = os.stat(in_tmp / path)
        return [s.st_size, s.st_mtime_ns]

    assert stats == {
        "weights/BriVL-1.0-5500w.pth": st("weights/BriVL-1.0-5500w.pth"),
        "weights/wavlm-base-plus": {
            name: st(f"weights/wavlm-base-plus/{name}")
            for name in ["config.json", "model.safetensors", "preprocessor_config.json"]
        },
        "weights/vqgan_imagenet_f16_16384.ckpt": st("weights/vqgan_imagenet_f16_16384.ckpt"),
        "weights/vqgan_imagenet_f16_16384.yaml": st("weights/vqgan_imagenet_f16_16384.yaml"),
    }
    assert list(stats["weights/wavlm-base-plus"]) == sorted(stats["weights/wavlm-base-plus"])
    (in_tmp / "weights/wavlm-base-plus/sub").mkdir()  # folders inside are not files
    (in_tmp / "weights/BriVL-1.0-5500w.pth").unlink()
    again = weight_stats(weights)
    assert again["weights/BriVL-1.0-5500w.pth"] is None
    assert again["weights/wavlm-base-plus"] == stats["weights/wavlm-base-plus"]


# --- BriVL's text tokenizer folder (optional: embed.text_tokenizer) ----------------------------


def test_the_text_tokenizer_folder_is_needed_only_when_named(in_tmp):
    (in_tmp / "weights").mkdir()  # a checkout has weights/ (its README)
    named = {**PAPER, "embed": {**PAPER["embed"], "text_tokenizer": "weights/roberta"}}
    assert [(w.key, w.path, w.kind, w.what) for w in required_weights(named)][:2] == [
        ("embed.weights", "weights/BriVL-1.0-5500w.pth", "torch", "BriVL-1.0 checkpoint"),
        (
            "embed.text_tokenizer",
            "weights/roberta",
            "bert_text_folder",
            "chinese-roberta-wwm-ext config.json + vocab.txt",
        ),
    ]
    assert len(required_weights(named)) == 5
    for value in (None, ""):
        off = {**PAPER, "embed": {**PAPER["embed"], "text_tokenizer": value}}
        assert "embed.text_tokenizer" not in [w.key for w in required_weights(off)]
    toy = {**TOY, "embed": {**TOY["embed"], "text_tokenizer": "toy"}}  # the tiny encoder's too
    assert [w.key for w in required_weights(toy)] == ["embed.text_tokenizer"]


def test_a_text_tokenizer_folder_passes_with_a_bert_config_and_a_vocab(tmp_path):
    folder = tmp_path / "roberta"
    folder.mkdir()
    assert bert_text_folder_problem(str(folder)) == "config.json missing; vocab.txt missing"
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (folder / "vocab.txt").write_text("[PAD]\n")
    assert bert_text_folder_problem(str(folder)) is None
    assert CHECKS["bert_text_folder"] is bert_text_folder_problem


def test_every_problem_of_a_text_tokenizer_folder_is_named(tmp_path):
    assert bert_text_folder_problem(str(tmp_path / "absent")) == "missing"
    (tmp_path / "file").write_text("x")
    assert bert_text_folder_problem(str(tmp_path / "file")) == (
        "not a folder (the hfl/chinese-roberta-wwm-ext folder is expected)"
    )
    folder = tmp_path / "roberta"
    folder.mkdir()
    (folder / "vocab.txt").write_text("")
    for text, model_type in (
        (json.dumps({"model_type": "roberta"}), "roberta"),
        ("{not json", "unreadable"),
        ("[1, 2]", "unreadable"),
    ):
        (folder / "config.json").write_text(text)
        assert bert_text_folder_problem(str(folder)) == (
            f"config.json is not a BERT config (model_type: {model_type}); vocab.txt empty (0 bytes)"
        )
    (folder / "config.json").write_text("")
    assert bert_text_folder_problem(str(folder)) == (
        "config.json empty (0 bytes); vocab.txt empty (0 bytes)"
    )
