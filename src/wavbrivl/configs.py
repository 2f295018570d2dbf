"""Config dataclasses and the one schema behind them.

``config.schema.yaml`` (a link beside this module to ``workflow/schemas/``, where Snakemake's
catalog keeps it) is the single source of every config key's default and valid range. The workflow
validates the user's config against it before any job starts; each dataclass that mirrors a
block takes its defaults from it (:func:`schema_default`) and checks its values with the same
rules (:func:`check_block`), so a key has one default and one validation on its way from the
config file to its use, whether it comes through Snakemake or from Python.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")


@functools.cache
def config_schema() -> dict[str, Any]:
    import yaml

    # libyaml's loader where PyYAML has it: the pure-Python one takes ~0.4 s for this file,
    # paid by every Snakemake start and every job.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(SCHEMA_PATH.read_text(encoding="utf-8"), Loader=loader)


def block_properties(block: str) -> dict[str, Any]:
    """The property schemas of a top-level block (``"loss"``) or a ``$defs`` entry."""
    schema = config_schema()
    node = schema["properties"].get(block) or schema.get("$defs", {}).get(block)
    if node is None:
        raise KeyError(f"{SCHEMA_PATH.name}: no config block {block!r}")
    return node["properties"]


def schema_default(block: str, key: str) -> Any:
    """The schema's default of ``block.key``; a dataclass field's default is this value."""
    try:
        return block_properties(block)[key]["default"]
    except KeyError:
        raise KeyError(f"{SCHEMA_PATH.name}: no default for '{block}.{key}'") from None


def default_field(block: str, key: str) -> Any:
    """``dataclasses.field`` with the schema's default (copied for lists and dicts)."""
    value = schema_default(block, key)
    if isinstance(value, list | dict):
        return dataclasses.field(default_factory=lambda: type(value)(value))
    return dataclasses.field(default=value)


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def check_block(values: Any, block: str) -> None:
    """Check the keys of ``values`` (a dataclass or a mapping) that ``block`` defines against
    the schema's rules; raise ``ValueError`` naming ``block.key`` and the rule broken."""
    import jsonschema

    items = dataclasses.asdict(values) if dataclasses.is_dataclass(values) else dict(values)
    properties = block_properties(block)
    for key, value in items.items():
        if key not in properties:
            continue
        rule = {**properties[key], "$defs": config_schema().get("$defs", {})}
        try:
            jsonschema.validate(_plain(value), rule)
        except jsonschema.ValidationError as err:
            raise ValueError(f"invalid config at '{block}.{key}': {err.message}") from None


def from_mapping(cls: type[T], values: Mapping[str, Any] | None, what: str) -> T:
    """``cls(**values)``, but an unknown key is an error naming it: a typo must not pass."""
    values = dict(values or {})
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {what} key(s) {unknown}; known: {sorted(known)}")
    return cls(**values)
