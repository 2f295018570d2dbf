"""The workflow's train block and the training dataclasses say the same thing.

The schema (workflow/schemas/config.schema.yaml) is where a user reads a key's default and
bounds; TrainConfig / DataConfig restate them for Python callers. These tests make the two
agree key by key: the same default, and the same bounds (a value just outside the schema's
range is refused by the dataclass, the boundary value itself is accepted).
"""

from __future__ import annotations

import pytest
import yaml
from conftest import REPO

from wavbrivl.train.config import WORKFLOW_ONLY_KEYS, TrainConfig

SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
TRAIN = SCHEMA["properties"]["train"]["properties"]
# DataConfig fields that are constants of the pipeline, not workflow config keys.
NOT_CONFIG_KEYS = {"min_samples", "prefetch_factor"}
# Cross-field rules (warmup_steps <= steps, min_lr <= lr) hold for these, so one key at a time
# can be taken to its bound.
BASE = {"warmup_steps": 0, "min_lr": 0.0}
CONFIG_KEYS = sorted(set(TRAIN) - set(WORKFLOW_ONLY_KEYS))


def test_every_train_key_is_a_dataclass_field_or_workflow_only():
    assert set(TrainConfig.keys()) - NOT_CONFIG_KEYS == set(CONFIG_KEYS)
    assert set(WORKFLOW_ONLY_KEYS) <= set(TRAIN)


@pytest.mark.parametrize("key", CONFIG_KEYS)
def test_schema_and_dataclass_defaults_agree(key):
    assert TrainConfig().to_dict()[key] == TRAIN[key]["default"]


def _accepted(key, value) -> bool:
    try:
        TrainConfig.from_dict(BASE | {key: value})
    except ValueError:
        return False
    return True


def _step(spec) -> float:
    return 1 if spec.get("type") == "integer" else 1e-9


@pytest.mark.parametrize("key", CONFIG_KEYS)
def test_schema_and_dataclass_bounds_agree(key):
    spec = TRAIN[key]
    step = _step(spec)
    checked = False
    if "minimum" in spec:
        assert _accepted(key, spec["minimum"]) and not _accepted(key, spec["minimum"] - step)
        checked = True
    if "exclusiveMinimum" in spec:
        low = spec["exclusiveMinimum"]
        assert not _accepted(key, low) and _accepted(key, low + step)
        checked = True
    if "maximum" in spec:
        assert _accepted(key, spec["maximum"]) and not _accepted(key, spec["maximum"] + step)
        checked = True
    if "exclusiveMaximum" in spec:
        high = spec["exclusiveMaximum"]
        assert not _accepted(key, high) and _accepted(key, high - step)
        checked = True
    if "enum" in spec:
        assert all(_accepted(key, v) for v in spec["enum"]) and not _accepted(key, "bogus")
        checked = True
    if not checked:  # no bound in the schema: the dataclass adds none either
        assert spec.get("type") == "string" and _accepted(key, "anything")
