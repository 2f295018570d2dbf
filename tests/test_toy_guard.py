"""Toy stand-ins are refused outside the demo, naming every key, unless the config allows them."""

from __future__ import annotations

import copy
import re

import pytest

from wavbrivl.toy_guard import ToyModelError, check_no_toy_models, toy_keys

# A defaults-filled config as the schema leaves it, reduced to the keys the guard reads:
# real models everywhere, one training and one generation dataset.
REAL = {
    "datasets": {
        "vgg": {"format": "vggsound", "role": "train"},
        "gen": {"format": "audioset", "role": "generation"},
    },
    "embed": {"encoder": "brivl", "architecture": "brivl-1.0"},
    "audio": {"wavlm": "weights/wavlm-base-plus"},
    "generate": {"vqgan": "taming"},
}


def _with(*changes, allow=None):
    cfg = copy.deepcopy(REAL)
    for block, key, value in changes:
        cfg[block][key] = value
    if allow is not None:
        cfg["allow_toy_models"] = allow
    return cfg


def test_real_models_pass():
    assert toy_keys(REAL) == []
    check_no_toy_models(REAL)  # no error
    check_no_toy_models(_with(allow=False))


@pytest.mark.parametrize(
    ("block", "key", "named"),
    [
        ("embed", "encoder", "embed.encoder=tiny (random tiny image encoder)"),
        ("embed", "architecture", "embed.architecture=tiny (toy-size BriVL checkpoint)"),
        ("audio", "wavlm", "audio.wavlm=tiny (random tiny WavLM)"),
        ("generate", "vqgan", "generate.vqgan=tiny (random tiny VQGAN)"),
    ],
)
def test_each_toy_key_is_refused_by_name(block, key, named):
    cfg = _with((block, key, "tiny"))
    assert toy_keys(cfg) == [named]
    with pytest.raises(ToyModelError) as err:
        check_no_toy_models(cfg)
    assert str(err.value) == (
        f"config uses toy stand-ins, not trained models: {named}. Set the real models "
        "(config/paper.yaml shows them; weights/README.md lists their files), or add "
        "`allow_toy_models: true` to the config to run them anyway."
    )
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize(
    ("block", "key", "named"),
    [
        (
            "embed",
            "encoder",
            "embed.encoder=demo (tiny image encoder trained on the synthetic demo frames)",
        ),
        (
            "generate",
            "vqgan",
            "generate.vqgan=demo (tiny VQGAN trained on the synthetic demo frames)",
        ),
    ],
)
def test_the_demos_trained_toys_are_refused_by_name(block, key, named):
    cfg = _with((block, key, "demo"))
    assert toy_keys(cfg) == [named]
    with pytest.raises(ToyModelError, match=re.escape(named)):
        check_no_toy_models(cfg)
    check_no_toy_models(_with((block, key, "demo"), allow=True))


def test_every_toy_key_is_named_in_one_message():
    cfg = _with(
        ("embed", "encoder", "tiny"), ("audio", "wavlm", "tiny"), ("generate", "vqgan", "tiny")
    )
    with pytest.raises(ToyModelError) as err:
        check_no_toy_models(cfg)
    assert (
        "embed.encoder=tiny (random tiny image encoder); audio.wavlm=tiny (random tiny WavLM); "
        "generate.vqgan=tiny (random tiny VQGAN). "
    ) in str(err.value)


def test_a_toy_architecture_counts_only_for_the_brivl_encoder():
    # encoder tiny ignores the architecture key: only the encoder is named
    cfg = _with(("embed", "encoder", "tiny"), ("embed", "architecture", "tiny"))
    assert toy_keys(cfg) == ["embed.encoder=tiny (random tiny image encoder)"]


def test_the_vqgan_counts_only_when_something_is_generated():
    cfg = _with(("generate", "vqgan", "tiny"))
    del cfg["datasets"]["gen"]
    assert toy_keys(cfg) == []
    cfg["datasets"]["vgg"]["role"] = "generation"
    assert toy_keys(cfg) == ["generate.vqgan=tiny (random tiny VQGAN)"]


def test_other_values_are_not_toys():
    cfg = _with(("audio", "wavlm", "weights/tiny"), ("embed", "architecture", "Tiny"))
    assert toy_keys(cfg) == []


def test_the_flag_lets_every_toy_through():
    cfg = _with(
        ("embed", "encoder", "tiny"),
        ("audio", "wavlm", "tiny"),
        ("generate", "vqgan", "tiny"),
        allow=True,
    )
    check_no_toy_models(cfg)  # no error
    assert len(toy_keys(cfg)) == 3  # still toys; only allowed
