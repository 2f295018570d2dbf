"""The stage config dataclasses agree with the workflow's schema: same keys, same defaults, and
every value the schema accepts at its bounds is accepted by the dataclass too (a config that
passes Snakemake's validation must not fail inside a job)."""

from __future__ import annotations

import dataclasses

import pytest
import yaml
from conftest import REPO

from wavbrivl.download import DownloadConfig
from wavbrivl.extract import ExtractConfig
from wavbrivl.manifest import DatasetConfig

SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())

# (config class, the schema object it mirrors, values for its required keys)
BLOCKS = {
    "datasets": (
        DatasetConfig,
        SCHEMA["$defs"]["dataset"],
        {"format": "vggsound", "csv": "v.csv", "n_shards": 4},
    ),
    "download": (DownloadConfig, SCHEMA["properties"]["download"], {}),
    "extract": (ExtractConfig, SCHEMA["properties"]["extract"], {}),
}


def dataclass_defaults(cls) -> dict:
    defaults = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            defaults[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            defaults[f.name] = f.default_factory()
    return defaults


def bound_values(prop: dict) -> list:
    """The extreme values a schema property accepts (enum members, const, min and max)."""
    values = list(prop.get("enum", []))
    if "const" in prop:
        values.append(prop["const"])
    values += [prop[key] for key in ("minimum", "maximum") if key in prop]
    return values


@pytest.mark.parametrize("block", sorted(BLOCKS))
def test_dataclass_fields_are_the_schema_keys(block):
    cls, schema, _ = BLOCKS[block]
    assert {f.name for f in dataclasses.fields(cls)} == set(schema["properties"])


@pytest.mark.parametrize("block", sorted(BLOCKS))
def test_dataclass_defaults_are_the_schema_defaults(block):
    cls, schema, required = BLOCKS[block]
    from_schema = {
        key: prop["default"] for key, prop in schema["properties"].items() if "default" in prop
    }
    defaults = dataclass_defaults(cls)
    assert defaults == from_schema
    assert set(required) == set(schema.get("required", []))
    cls(**required)  # the defaults are a valid config


@pytest.mark.parametrize("block", sorted(BLOCKS))
def test_values_at_the_schema_bounds_are_accepted(block):
    cls, schema, required = BLOCKS[block]
    for key, prop in schema["properties"].items():
        for value in bound_values(prop):
            cls(**{**required, key: value})  # raises on a disagreement
