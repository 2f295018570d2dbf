"""The sharded Parquet manifest: build it from selected rows, write it, read a shard back.

One file per dataset, ``results/manifest/{dataset}.parquet``, rows sorted by
``(shard, clip_id)``; file metadata records the dataset, shard count, CSV format and the
parse report, so the manifest says where it came from.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from csv import reader as csv_reader
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from wavbrivl.atomic import write_table_atomic
from wavbrivl.manifest.audioset import default_split_name, read_audioset_segments, read_class_labels
from wavbrivl.manifest.fetch import local_copy
from wavbrivl.manifest.parsing import ParseReport
from wavbrivl.manifest.select import select_clips
from wavbrivl.manifest.vggsound import read_vggsound_csv
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
) -> tuple[pa.Table, ParseReport]:
    """The manifest table of the (selected) rows of a parsed dataset table.

    Rows whose source id has no URL in ``mapping`` are dropped as malformed ("no source
    url", with their CSV line); the returned report is ``report`` updated with them.
    ``label_names`` maps labels to display names (a label without one is kept as is).
    """
    report = replace(report or ParseReport(n_rows=len(df), n_ok=len(df)))
    report.examples = list(report.examples)
    urls = source_urls(df["source_id"].to_list(), url_template=url_template, mapping=mapping)
    has_url = [url is not None for url in urls]
    if not all(has_url):
        for line, source_id, ok in zip(df["line"], df["source_id"], has_url, strict=True):
            if not ok:
                report.n_ok -= 1
                report.add_malformed(int(line), f"{NO_SOURCE_URL} for id {source_id!r}")
    df = df.assign(url=urls)[has_url]

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


# -- the one call the workflow makes ---------------------------------------------------------


def make_manifest(
    *,
    fmt: str,
    csv: str | Path,
    out_path: str | Path,
    n_shards: int,
    splits: Sequence[str] | None = None,
    classes: Sequence[str] | None = None,
    max_clips_per_class: int | None = None,
    seed: int = 0,
    source: Mapping[str, str] | None = None,
    labels_csv: str | Path | None = None,
    ytids: Sequence[str] | None = None,
    split_name: str | None = None,
    clip_seconds: float = 10.0,
    cache_dir: str | Path | None = None,
    dataset: str | None = None,
    log: Callable[[str], None] = print,
) -> ParseReport:
    """Parse, select, shard and write one dataset's manifest; log what happened.

    ``source`` is ``{"url_template": "...{id}..."}`` or ``{"mapping_csv": path_or_url}``.
    ``csv``, ``labels_csv`` and ``mapping_csv`` may be paths or http(s) URLs (cached in
    ``cache_dir``, default ``<out dir>/_downloads``). ``dataset`` defaults to the file stem
    of ``out_path``. Raises when the selection leaves no clip.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown dataset format {fmt!r}; expected one of {FORMATS}")
    out_path = Path(out_path)
    cache_dir = Path(cache_dir) if cache_dir is not None else out_path.parent / "_downloads"
    dataset = dataset or out_path.stem
    source = dict(source or {"url_template": "https://www.youtube.com/watch?v={id}"})
    if set(source) not in ({"url_template"}, {"mapping_csv"}):
        raise ValueError(f"source must have exactly one key, url_template or mapping_csv: {source}")

    log(f"{dataset}: reading {fmt} CSV {csv}")
    csv_path = local_copy(csv, cache_dir)
    label_names = read_class_labels(local_copy(labels_csv, cache_dir)) if labels_csv else None
    if fmt == "vggsound":
        df, report = read_vggsound_csv(csv_path, clip_seconds=clip_seconds)
    else:
        df, report = read_audioset_segments(csv_path, split=split_name or default_split_name(csv))
    report.source = Path(str(csv)).name
    for line in report.summary_lines():
        log(line)

    selection = {
        "splits": list(splits) if splits else None,
        "classes": list(classes) if classes is not None else None,
        "max_clips_per_class": max_clips_per_class,
        "seed": seed,
        "ytids": list(ytids) if ytids is not None else None,
    }
    selected = select_clips(
        df,
        splits=splits,
        classes=classes,
        max_clips_per_class=max_clips_per_class,
        seed=seed,
        ytids=ytids,
        label_names=label_names,
    )
    log(f"selected {len(selected)} of {len(df)} clips ({_describe(selection)})")

    mapping = None
    if "mapping_csv" in source:
        mapping = read_source_mapping(local_copy(source["mapping_csv"], cache_dir))
    parse_report = report
    table, report = build_manifest(
        selected,
        n_shards=n_shards,
        url_template=source.get("url_template"),
        mapping=mapping,
        label_names=label_names,
        report=parse_report,
    )
    n_no_url = report.n_malformed - parse_report.n_malformed
    if n_no_url:
        log(f"{source['mapping_csv']}: {n_no_url} selected clips have {NO_SOURCE_URL}, dropped")
        for example in report.examples[len(parse_report.examples) :]:
            log(f"  {example}")
    if table.num_rows == 0:
        raise ValueError(
            f"{dataset}: no clips left to write to {out_path} ({_describe(selection)})"
        )

    selection["n_selected"] = table.num_rows
    write_manifest(
        table,
        out_path,
        dataset=dataset,
        fmt=fmt,
        n_shards=n_shards,
        report=report,
        selection=selection,
    )
    per_shard = pd.Series(table.column("shard").to_pylist()).value_counts()
    log(
        f"wrote {out_path}: {table.num_rows} clips in {n_shards} shards "
        f"({n_shards - len(per_shard)} empty; {per_shard.min()}..{per_shard.max()} clips per "
        f"non-empty shard)"
    )
    return report


def _describe(selection: Mapping[str, Any]) -> str:
    parts = []
    for key, value in selection.items():
        if isinstance(value, list) and len(value) > 5:
            value = f"[{len(value)} items]"
        parts.append(f"{key}={value}")
    return ", ".join(parts)
