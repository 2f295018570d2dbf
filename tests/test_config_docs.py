"""config/README.md cannot drift from the config schema.

Two independent guards: the committed file is exactly what ``workflow/bin/config-docs``
writes from the schema now, and (read as plain text, without the generator) every leaf key
of the schema has a table row with its default and its description.
"""

from __future__ import annotations

import difflib
import json
import re

import pytest
import yaml
from conftest import REPO, load_script

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
README = REPO / "config" / "README.md"
GENERATOR = REPO / "workflow" / "bin" / "config-docs"


def _generator():
    return load_script(GENERATOR, "wavbrivl_config_docs")


def _schema():
    return yaml.safe_load(SCHEMA.read_text(encoding="utf-8"))


def _leaves(schema):
    """(dotted path, node, default or ..., required) of every leaf key, walked by hand."""
    found = []

    def walk(node, path, inherited, required):
        if "$ref" in node:
            node = schema["$defs"][node["$ref"].rsplit("/", 1)[-1]]
        if "properties" in node:
            own = node.get("default", {})
            for key, child in node["properties"].items():
                walk(child, [*path, key], own.get(key, ...), key in node.get("required", []))
        elif isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], [*path, "<name>"], ..., False)
        else:
            found.append((".".join(path), node, node.get("default", inherited), required))

    walk(schema, [], ..., False)
    return found


def _rows(text):
    """``{key: [cells]}`` of every table row whose first cell is a code span."""
    rows = {}
    for line in text.splitlines():
        match = re.match(r"^\| `([^`]+)` \|(.*)\|$", line)
        if match:
            cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", match[2])]
            rows[match[1]] = cells
    return rows


def _expected_default(default, required):
    if default is ...:
        return "required" if required else "—"
    return f"`{default if isinstance(default, str) else json.dumps(default)}`"


def test_committed_readme_is_what_the_generator_writes():
    committed = README.read_text(encoding="utf-8")
    wanted = _generator().render_readme(committed, _schema())
    diff = "".join(
        difflib.unified_diff(
            committed.splitlines(keepends=True),
            wanted.splitlines(keepends=True),
            "config/README.md (committed)",
            "config/README.md (from the schema)",
        )
    )
    assert committed == wanted, (
        "config/README.md is out of date; run `.venv/bin/python workflow/bin/config-docs`:\n" + diff
    )


def test_every_schema_key_is_documented_with_its_default_and_description():
    rows = _rows(README.read_text(encoding="utf-8"))
    leaves = _leaves(_schema())
    assert len(leaves) > 100  # the walk reached the nested blocks
    problems = []
    for path, node, default, required in leaves:
        if path not in rows:
            problems.append(f"{path}: no row in config/README.md")
            continue
        _type, shown_default, description = rows[path]
        if shown_default != _expected_default(default, required):
            problems.append(
                f"{path}: default shown {shown_default!r}, schema says "
                f"{_expected_default(default, required)!r}"
            )
        if not node.get("description"):
            problems.append(f"{path}: no description in the schema")
        elif description != " ".join(node["description"].split()):
            problems.append(f"{path}: description differs from the schema's")
    assert not problems, "\n".join(problems)


def test_check_mode_fails_with_a_diff_when_a_default_changes(tmp_path, capsys):
    schema = _schema()
    schema["properties"]["loss"]["properties"]["temperature"]["default"] = 0.05
    changed = tmp_path / "schema.yaml"
    changed.write_text(yaml.safe_dump(schema, sort_keys=False), encoding="utf-8")
    generator = _generator()
    assert generator.main(["--check", "--readme", str(README), "--schema", str(SCHEMA)]) == 0
    assert generator.main(["--check", "--readme", str(README), "--schema", str(changed)]) == 1
    out = capsys.readouterr().out
    assert "-| `loss.temperature` | number > 0 | `0.07` |" in out
    assert "+| `loss.temperature` | number > 0 | `0.05` |" in out


def test_a_block_without_a_region_or_a_key_without_a_description_is_refused():
    generator = _generator()
    text = README.read_text(encoding="utf-8")
    without_loss = re.sub(
        r"<!-- BEGIN GENERATED: loss -->.*?<!-- END GENERATED: loss -->", "", text, flags=re.S
    )
    with pytest.raises(ValueError, match=r"without a region: \['loss'\]"):
        generator.render_readme(without_loss, _schema())
    schema = _schema()
    del schema["properties"]["train"]["properties"]["lr"]["description"]
    with pytest.raises(ValueError, match="train.lr: the schema has no description"):
        generator.render_readme(text, schema)
