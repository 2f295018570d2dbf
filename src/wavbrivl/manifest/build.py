"""The sharded Parquet manifest: build it from selected rows, write it, read a shard back.

One file per dataset, ``results/manifest/{dataset}.parquet``, rows sorted by
``(shard, clip_id)``; file metadata records the dataset, shard count, CSV format and the
parse report, so the manifest says where it came from.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from csv import reader as csv_reader
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from wavbrivl.atomic import write_table_atomic
from wavbrivl.manifest.parsing import MAX_EXAMPLES, ParseReport
from wavbrivl.sharding import shard_name, shard_of, shard_width

MANIFEST_SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()),
        ("source_id", pa.string()),
        ("url", pa.string()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("labels", pa.list_(pa.string())),
        ("label_names", pa.list_(pa.string())),
        ("split", pa.string()),
        ("shard", pa.string()),
    ]
)
META_PREFIX = "wavbrivl."
FORMATS = ("vggsound", "audioset")
NO_SOURCE_URL = "no source url"


# -- source ids -> URLs --------------------------------------------------------------------


def read_source_mapping(path: str | Path) -> dict[str, str]:
    """``{id: url}`` from a CSV of ``id,url`` rows (an ``id,url`` header line is allowed).

    This file is written by us (the demo) or by the user, so any bad row is an error.
    """
    mapping: dict[str, str] = {}
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv_reader(fh)
        for fields in reader:
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue
            fields = [f.strip() for f in fields]
            if reader.line_num == 1 and [f.lower() for f in fields] == ["id", "url"]:
                continue
            if len(fields) != 2 or not all(fields):
                raise ValueError(f"{path} line {reader.line_num}: expected 'id,url', got {fields}")
            source_id, url = fields
            if mapping.setdefault(source_id, url) != url:
                raise ValueError(f"{path} line {reader.line_num}: id {source_id!r} has two urls")
    return mapping


def source_urls(
    source_ids: Sequence[str],
    *,
    url_template: str | None = None,
    mapping: Mapping[str, str] | None = None,
) -> list[str | None]:
    """The URL of each source id (None where ``mapping`` lacks it); exactly one rule given."""
    if (url_template is None) == (mapping is None):
        raise ValueError("give exactly one of url_template and mapping")
    if url_template is not None:
        if "{id}" not in url_template:
            raise ValueError(f"url_template {url_template!r} lacks the '{{id}}' placeholder")
        # str.replace, not str.format: other braces in a URL are not placeholders.
        return [url_template.replace("{id}", source_id) for source_id in source_ids]
    return [mapping.get(source_id) for source_id in source_ids]


# -- the manifest table --------------------------------------------------------------------


def build_manifest(
    df: pd.DataFrame,
    *,
    n_shards: int,
    url_template: str | None = None,
    mapping: Mapping[str, str] | None = None,
    label_names: Mapping[str, str] | None = None,
    report: ParseReport | None = None,
    keep_without_url: bool = False,
) -> tuple[pa.Table, ParseReport]:
    """The manifest table of the (selected) rows of a parsed dataset table.

    Rows whose source id has no URL in ``mapping`` are dropped as malformed ("no source
    url", with their CSV line); the returned report is ``report`` updated with them.
    ``label_names`` maps labels to display names (a label without one is kept as is).
    ``keep_without_url``: the dataset has mirror sources, so a row without a URL stays (url
    null; neither rule given: no row has one).
    """
    report = replace(report or ParseReport(n_rows=len(df), n_ok=len(df)))
    report.examples = list(report.examples)
    report.no_url_examples = list(report.no_url_examples)
    if keep_without_url and url_template is None and mapping is None:
        urls: list[str | None] = [None] * len(df)
    else:
        urls = source_urls(df["source_id"].to_list(), url_template=url_template, mapping=mapping)
    has_url = [url is not None or keep_without_url for url in urls]
    if not all(has_url):
        for line, source_id, ok in zip(df["line"], df["source_id"], has_url, strict=True):
            if not ok:
                reason = f"{NO_SOURCE_URL} for id {source_id!r}"
                report.n_ok -= 1
                report.add_malformed(int(line), reason)
                if len(report.no_url_examples) < MAX_EXAMPLES:
                    report.no_url_examples.append(f"line {int(line)}: {reason}")
    # A boolean array, not a list: indexing with an empty list would select no columns.
    df = df.assign(url=urls).loc[np.asarray(has_url, dtype=bool)]

    clip_ids = df["clip_id"].to_list()
    labels = [list(labs) for labs in df["labels"]]
    names = label_names or {}
    columns = {
        "clip_id": clip_ids,
        "source_id": df["source_id"].to_list(),
        "url": df["url"].to_list(),
        "start_s": df["start_s"].to_list(),
        "end_s": df["end_s"].to_list(),
        "labels": labels,
        "label_names": [[names.get(lab, lab) for lab in labs] for labs in labels],
        "split": df["split"].to_list(),
        "shard": [shard_name(shard_of(cid, n_shards), n_shards) for cid in clip_ids],
    }
    table = pa.table(columns, schema=MANIFEST_SCHEMA)
    order = pc.sort_indices(table, sort_keys=[("shard", "ascending"), ("clip_id", "ascending")])
    return table.take(order), report


def write_manifest(
    table: pa.Table,
    path: str | Path,
    *,
    dataset: str,
    fmt: str,
    n_shards: int,
    report: ParseReport,
    selection: Mapping[str, Any] | None = None,
) -> None:
    """Write ``table`` atomically with the ``wavbrivl.*`` file metadata."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown manifest format {fmt!r}; expected one of {FORMATS}")
    if not table.schema.equals(MANIFEST_SCHEMA):
        raise ValueError(f"manifest table schema differs from MANIFEST_SCHEMA:\n{table.schema}")
    metadata = {
        "dataset": dataset,
        "n_shards": str(n_shards),
        "format": fmt,
        "parse_report": report.to_json(),
        "selection": json.dumps(dict(selection or {}), sort_keys=True),
    }
    table = table.replace_schema_metadata({META_PREFIX + k: v for k, v in metadata.items()})
    write_table_atomic(path, table)


def read_manifest_info(path: str | Path) -> dict[str, Any]:
    """The manifest's ``wavbrivl.*`` metadata: dataset, n_shards (int), format,
    parse_report (:class:`ParseReport`), selection (dict)."""
    raw = pq.read_schema(path).metadata or {}
    meta = {
        k.decode()[len(META_PREFIX) :]: v.decode()
        for k, v in raw.items()
        if k.startswith(b"wavbrivl.")
    }
    if "n_shards" not in meta:
        raise ValueError(f"{path}: not a wavbrivl manifest (no wavbrivl.n_shards metadata)")
    info: dict[str, Any] = dict(meta)
    info["n_shards"] = int(meta["n_shards"])
    if "parse_report" in meta:
        info["parse_report"] = ParseReport.from_json(meta["parse_report"])
    if "selection" in meta:
        info["selection"] = json.loads(meta["selection"])
    return info


def read_manifest_shard(path: str | Path, shard: str) -> pd.DataFrame:
    """The rows of one shard (manifest columns, sorted by clip id; maybe empty).

    ``shard`` must be a shard name of this manifest (``"007"`` for 64 shards), so a wrong
    shard count in the config fails here instead of returning nothing.
    """
    n_shards = read_manifest_info(path)["n_shards"]
    if not (shard.isdigit() and len(shard) == shard_width(n_shards) and int(shard) < n_shards):
        raise ValueError(f"{path}: shard {shard!r} is not one of this manifest's {n_shards} shards")
    table = pq.read_table(path, filters=[("shard", "=", shard)], schema=MANIFEST_SCHEMA)
    df = table.to_pandas().sort_values("clip_id").reset_index(drop=True)
    for column in ("labels", "label_names"):  # numpy arrays from Arrow -> plain lists
        df[column] = [list(values) for values in df[column]]
    return df
