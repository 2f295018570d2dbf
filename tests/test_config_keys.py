"""The table of config-key classes covers the schema, and the code does what it says.

(Snakemake's side, params unchanged by a run-time key, is checked on a finished demo run in
test_workflow_demo.py::test_only_what_changed_reruns.)
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from wavbrivl import config_keys
from wavbrivl.config_keys import RERUN, RESUME_SAFE, RUNTIME, key_class, keys_of, rerun_params
from wavbrivl.train.checkpoint import check_resumable
from wavbrivl.train.config import TrainConfig

SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())


@pytest.mark.parametrize("block", ["download", "embed", "train", "generate"])
def test_every_key_of_the_schema_block_is_classified_exactly_once(block):
    rows = Counter(key for b, key, _, _ in config_keys.TABLE if b == block)
    assert [k for k, n in rows.items() if n > 1] == []
    assert set(rows) == set(SCHEMA["properties"][block]["properties"])


def test_a_key_missing_from_the_table_is_an_error_naming_it():
    with pytest.raises(KeyError, match="train.new_key is not classified"):
        rerun_params("train", {"steps": 1, "new_key": 2})


def test_rule_params_leave_out_exactly_the_run_time_keys():
    block = {k: 0 for k in SCHEMA["properties"]["train"]["properties"]}
    assert set(block) - set(rerun_params("train", block)) == set(keys_of("train", RUNTIME))
    assert {"num_workers", "device", "gpus"} <= set(keys_of("train", RUNTIME))
    assert "data_streams" in keys_of("train", RERUN)


@pytest.mark.parametrize("key", TrainConfig.keys())
def test_a_checkpoint_is_resumed_unless_a_rerun_key_changed(key, tmp_path):
    saved = TrainConfig().to_dict()
    changed = dict(saved, **{key: ("another", saved[key])})
    path = Path(tmp_path / "step_000000003.pt")
    refused = key not in config_keys.BLOCKS["train"] or key_class("train", key) == RERUN
    if refused:
        with pytest.raises(ValueError, match=f"another configuration \\({key}: "):
            check_resumable(saved, changed, {}, {}, path)
    else:
        assert key_class("train", key) in (RUNTIME, RESUME_SAFE)
        check_resumable(saved, changed, {}, {}, path)
