"""One default and one validation per config key: the model and generation dataclasses take
both from the config schema, the same rules Snakemake applies before any job starts."""

from __future__ import annotations

import dataclasses

import pytest

from wavbrivl.audio.encoder import AudioEncoderConfig
from wavbrivl.configs import block_properties, check_block, schema_default
from wavbrivl.download import DownloadConfig
from wavbrivl.extract import ExtractConfig
from wavbrivl.generate.loop import GenerateConfig
from wavbrivl.manifest.stage import DatasetConfig
from wavbrivl.train.config import TrainConfig
from wavbrivl.train.data import DataConfig
from wavbrivl.train.moco import MoCoConfig

# (dataclass, the schema block it mirrors, values for its required fields)
MIRRORS = [
    (MoCoConfig, "loss", {}),
    (AudioEncoderConfig, "audio", {"wavlm": "/some/wavlm"}),
    (GenerateConfig, "generate", {}),
    (ExtractConfig, "extract", {}),
    (DownloadConfig, "download", {}),
    (DatasetConfig, "dataset", {"format": "vggsound", "csv": "v.csv", "n_shards": 4}),
    (TrainConfig, "train", {}),
    (DataConfig, "train", {}),
]
IDS = [cls.__name__ for cls, _, _ in MIRRORS]


def mirrored_fields(cls, block):
    keys = block_properties(block)
    return [f for f in dataclasses.fields(cls) if f.name in keys]


@pytest.mark.parametrize(("cls", "block", "required"), MIRRORS, ids=IDS)
def test_defaults_are_the_schemas(cls, block, required):
    made = cls(**required)
    fields = mirrored_fields(cls, block)
    assert len(fields) >= 5
    for f in fields:
        if f.name in required:
            continue
        expected = schema_default(block, f.name)
        got = getattr(made, f.name)
        assert (list(got) if isinstance(got, tuple) else got) == expected, f"{block}.{f.name}"


def outside_values(rule: dict) -> list:
    """Values the schema's rule refuses: just past each bound, or outside the enum."""
    values = []
    if "minimum" in rule:
        values.append(rule["minimum"] - 1)
    if "exclusiveMinimum" in rule:
        values.append(rule["exclusiveMinimum"])
    if "maximum" in rule:
        values.append(rule["maximum"] + 1)
    if "exclusiveMaximum" in rule:
        values.append(rule["exclusiveMaximum"])
    if "enum" in rule:
        values.append("not-" + str(rule["enum"][0]))
    if "const" in rule:
        values.append(rule["const"] + 1)
    return values


@pytest.mark.parametrize(("cls", "block", "required"), MIRRORS, ids=IDS)
def test_values_outside_the_schema_are_refused_naming_the_key(cls, block, required):
    checked = 0
    for f in mirrored_fields(cls, block):
        if f.name in required:  # checked by the dataclass first, with its own message
            continue
        for value in outside_values(block_properties(block)[f.name]):
            with pytest.raises(ValueError, match=rf"'{block}\.{f.name}'"):
                cls(**{**required, f.name: value})
            checked += 1
    assert checked >= 3  # the block has real bounds to test


def test_the_temperature_has_one_default_and_one_rule():
    assert MoCoConfig().temperature == schema_default("loss", "temperature") == 0.07
    with pytest.raises(ValueError, match=r"'loss\.temperature': 0 is less than or equal"):
        MoCoConfig(temperature=0)
    with pytest.raises(ValueError, match=r"'loss\.temperature'"):
        check_block({"temperature": -1.0}, "loss")  # the same rule for a plain mapping


def test_unknown_blocks_and_keys_are_named():
    with pytest.raises(KeyError, match="no config block 'losss'"):
        block_properties("losss")
    with pytest.raises(KeyError, match="no default for 'loss.tau'"):
        schema_default("loss", "tau")
