"""Manifest table, Parquet round trip, source mapping, local_copy, and make_manifest end to end."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow.parquet as pq
import pytest
from httpserver import LoopbackMediaServer

from wavbrivl.manifest import ParseReport
from wavbrivl.manifest.build import (
    MANIFEST_SCHEMA,
    build_manifest,
    read_manifest_info,
    read_manifest_shard,
    read_source_mapping,
    write_manifest,
)
from wavbrivl.manifest.fetch import FetchError, local_copy
from wavbrivl.manifest.select import SelectionError
from wavbrivl.manifest.stage import DatasetConfig, make_manifest
from wavbrivl.manifest.vggsound import read_vggsound_csv
from wavbrivl.sharding import shard_name, shard_of

VGG_CSV = (
    "aaa,0,dog,train\n"
    "bbb,10,dog,test\n"
    'ccc,20,"cat, purring",train\n'
    "ddd,-3,cat,train\n"  # malformed
    "aaa,0,cow,train\n"  # duplicate
    "eee,5,cow,train\n"
)


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    """Loopback requests must not be sent to a proxy from the environment."""
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def vgg_csv(tmp_path):
    path = tmp_path / "vggsound.csv"
    path.write_text(VGG_CSV, encoding="utf-8")
    return path


def test_build_manifest_columns_urls_shards_and_order(vgg_csv):
    df, report = read_vggsound_csv(vgg_csv)
    table, out_report = build_manifest(
        df, n_shards=3, url_template="https://yt/watch?v={id}&x={}", report=report
    )
    assert table.schema.equals(MANIFEST_SCHEMA)
    assert table.schema.names == [
        "clip_id", "source_id", "url", "start_s", "end_s", "labels", "label_names", "split", "shard",
    ]  # fmt: skip
    rows = table.to_pylist()
    assert len(rows) == 4
    for row in rows:
        assert row["url"] == f"https://yt/watch?v={row['source_id']}&x={{}}"
        assert row["shard"] == shard_name(shard_of(row["clip_id"], 3), 3)
        assert row["label_names"] == row["labels"]
        assert row["end_s"] == row["start_s"] + 10.0
    assert [(r["shard"], r["clip_id"]) for r in rows] == sorted(
        (r["shard"], r["clip_id"]) for r in rows
    )
    assert out_report == report  # nothing dropped


def test_mapping_with_header_and_missing_ids_are_malformed(tmp_path, vgg_csv):
    mapping_csv = tmp_path / "sources.csv"
    mapping_csv.write_text(
        "id,url\naaa,file:///m/aaa.mp4\nccc,file:///m/ccc.mp4\n", encoding="utf-8"
    )
    mapping = read_source_mapping(mapping_csv)
    assert mapping == {"aaa": "file:///m/aaa.mp4", "ccc": "file:///m/ccc.mp4"}
    df, report = read_vggsound_csv(vgg_csv)
    table, out = build_manifest(df, n_shards=2, mapping=mapping, report=report)
    assert sorted(table.column("source_id").to_pylist()) == ["aaa", "ccc"]
    assert (out.n_ok, out.n_malformed) == (report.n_ok - 2, report.n_malformed + 2)
    assert out.examples[-2:] == [
        "line 2: no source url for id 'bbb'",
        "line 6: no source url for id 'eee'",
    ]
    assert report.n_malformed == 1  # the input report is not modified


def test_source_mapping_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "map.csv"
    bad.write_text("aaa,http://x\nbbb\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"map\.csv line 2"):
        read_source_mapping(bad)
    bad.write_text("aaa,http://x\naaa,http://y\n", encoding="utf-8")
    with pytest.raises(ValueError, match="two urls"):
        read_source_mapping(bad)


def test_exactly_one_url_rule(vgg_csv):
    df, _ = read_vggsound_csv(vgg_csv)
    with pytest.raises(ValueError, match="exactly one"):
        build_manifest(df, n_shards=2)
    with pytest.raises(ValueError, match="placeholder"):
        build_manifest(df, n_shards=2, url_template="https://yt/")


def test_write_and_read_back_schema_and_metadata(tmp_path, vgg_csv):
    df, report = read_vggsound_csv(vgg_csv)
    table, report = build_manifest(df, n_shards=4, url_template="u/{id}", report=report)
    path = tmp_path / "manifest" / "vgg.parquet"
    write_manifest(
        table, path, dataset="vgg", fmt="vggsound", n_shards=4, report=report, selection={"seed": 3}
    )
    back = pq.read_table(path)
    assert back.schema.remove_metadata().equals(MANIFEST_SCHEMA)
    assert back.to_pylist() == table.to_pylist()
    meta = back.schema.metadata
    assert meta[b"wavbrivl.dataset"] == b"vgg"
    assert meta[b"wavbrivl.n_shards"] == b"4"
    assert meta[b"wavbrivl.format"] == b"vggsound"
    assert json.loads(meta[b"wavbrivl.parse_report"])["n_malformed"] == 1
    info = read_manifest_info(path)
    assert (
        info["parse_report"] == report
        and info["n_shards"] == 4
        and info["selection"] == {"seed": 3}
    )
    assert not [p for p in path.parent.iterdir() if p.name != "vgg.parquet"]  # no temp files left

    with pytest.raises(ValueError, match="format"):
        write_manifest(table, path, dataset="vgg", fmt="csv", n_shards=4, report=report)
    with pytest.raises(ValueError, match="schema"):
        write_manifest(
            table.drop_columns(["url"]),
            path,
            dataset="v",
            fmt="vggsound",
            n_shards=4,
            report=report,
        )


def test_read_manifest_shard(tmp_path, vgg_csv):
    df, report = read_vggsound_csv(vgg_csv)
    table, report = build_manifest(df, n_shards=2, url_template="u/{id}", report=report)
    path = tmp_path / "vgg.parquet"
    write_manifest(table, path, dataset="vgg", fmt="vggsound", n_shards=2, report=report)
    seen = []
    for shard in ("000", "001"):
        rows = read_manifest_shard(path, shard)
        assert set(rows["shard"]) <= {shard}
        assert rows["clip_id"].is_monotonic_increasing
        assert all(isinstance(labels, list) for labels in rows["labels"])
        seen += rows["clip_id"].to_list()
    assert sorted(seen) == sorted(table.column("clip_id").to_pylist())
    for wrong in ("0", "002", "abc"):
        with pytest.raises(ValueError, match="not one of this manifest's 2 shards"):
            read_manifest_shard(path, wrong)


# -- local_copy ----------------------------------------------------------------------------------


def test_local_copy_of_paths(tmp_path, vgg_csv):
    assert local_copy(vgg_csv, tmp_path / "cache") == vgg_csv
    assert local_copy(vgg_csv.as_uri(), tmp_path / "cache") == vgg_csv
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        local_copy(tmp_path / "missing.csv", tmp_path / "cache")
    with pytest.raises(ValueError, match="ftp"):
        local_copy("ftp://host/x.csv", tmp_path / "cache")


def test_local_copy_downloads_over_http_once(tmp_path):
    body = VGG_CSV.encode()
    with LoopbackMediaServer({"vggsound.csv": body}) as server:
        url = server.url("media/vggsound.csv")
        path = local_copy(url, tmp_path / "cache")
        assert path.read_bytes() == body
        assert path.parent == tmp_path / "cache" and path.name.endswith("-vggsound.csv")
        assert local_copy(url, tmp_path / "cache") == path  # cached
        assert server.count("/media/vggsound.csv") == 1
        local_copy(url, tmp_path / "cache", refresh=True)
        assert server.count("/media/vggsound.csv") == 2


def test_local_copy_http_errors_are_clear_and_leave_nothing(tmp_path):
    cache = tmp_path / "cache"
    with LoopbackMediaServer({"a.csv": b"x" * 10_000}, stall_s=3.0) as server:
        with pytest.raises(FetchError, match=r"/media/absent\.csv failed: HTTP 404"):
            local_copy(server.url("media/absent.csv"), cache)
        with pytest.raises(FetchError, match=r"truncated/a\.csv failed"):
            local_copy(server.url("truncated/a.csv"), cache)
        with pytest.raises(FetchError, match="timed out"):
            local_copy(server.url("slow/a.csv"), cache, timeout_s=0.3)
    assert not cache.exists() or list(cache.iterdir()) == []


# -- make_manifest -------------------------------------------------------------------------------


def test_make_manifest_vggsound_with_mapping(tmp_path, vgg_csv):
    mapping_csv = tmp_path / "sources.csv"
    mapping_csv.write_text("".join(f"{i},file:///m/{i}.mp4\n" for i in ["aaa", "bbb", "ccc"]))
    out = tmp_path / "results" / "manifest" / "vggsound.parquet"
    lines: list[str] = []
    report = make_manifest(
        DatasetConfig(
            format="vggsound",
            csv=str(vgg_csv),
            n_shards=2,
            splits=["train"],
            classes=None,
            max_clips_per_class=None,
            seed=0,
            source={"mapping_csv": str(mapping_csv)},
        ),
        out_path=out,
        log=lines.append,
    )
    table = pq.read_table(out)
    assert sorted(table.column("clip_id").to_pylist()) == ["aaa_0", "ccc_20000"]
    assert set(table.column("split").to_pylist()) == {"train"}
    # ok = parsed fine and, if selected, has a url (bbb, a test clip, is ok but not selected).
    assert (report.n_rows, report.n_ok, report.n_malformed, report.n_duplicates) == (6, 3, 2, 1)
    assert "vggsound.csv: 6 rows, 4 ok, 1 malformed, 1 duplicate ids" in lines
    assert "  line 4: start '-3' is negative" in lines
    assert any("1 selected clips have no source url" in line for line in lines)
    assert "  line 6: no source url for id 'eee'" in lines
    info = read_manifest_info(out)
    assert info["dataset"] == "vggsound" and info["parse_report"] == report
    assert info["selection"]["n_selected"] == 2 and info["selection"]["splits"] == ["train"]


def test_make_manifest_audioset_over_http_with_display_names(tmp_path):
    segments = (
        "# Segments csv created today\n# num_ytids=3\n# YTID, start_seconds, end_seconds, positive_labels\n"
        'yt1, 0.000, 10.000, "/m/a,/m/b"\nyt2, 5.000, 15.000, "/m/b"\nyt3, 1.500, 11.500, "/m/c,/m/x"\n'
    )
    labels = 'index,mid,display_name\n0,/m/a,"Alpha, first"\n1,/m/b,Beta\n2,/m/c,Gamma\n'
    files = {"eval_segments.csv": segments.encode(), "class_labels_indices.csv": labels.encode()}
    out = tmp_path / "gen.parquet"
    with LoopbackMediaServer(files) as server:
        make_manifest(
            DatasetConfig(
                format="audioset",
                csv=server.url("media/eval_segments.csv"),
                labels_csv=server.url("media/class_labels_indices.csv"),
                n_shards=1,
                splits=None,
                classes=["Alpha, first", "/m/c"],
                max_clips_per_class=None,
                seed=0,
                source={"url_template": "https://www.youtube.com/watch?v={id}"},
            ),
            out_path=out,
            log=lambda _: None,
        )
    rows = {r["source_id"]: r for r in pq.read_table(out).to_pylist()}
    assert set(rows) == {"yt1", "yt3"}
    assert rows["yt1"]["label_names"] == ["Alpha, first", "Beta"]
    assert rows["yt3"]["label_names"] == ["Gamma", "/m/x"]  # unknown MID kept
    assert rows["yt3"]["clip_id"] == "yt3_1500" and rows["yt3"]["split"] == "eval"
    assert rows["yt1"]["shard"] == "000"
    assert (out.parent / "_downloads").is_dir()  # default cache next to the manifest


def test_make_manifest_errors(tmp_path, vgg_csv):
    common = dict(
        format="vggsound",
        csv=vgg_csv,
        n_shards=2,
        splits=None,
        classes=None,
        max_clips_per_class=None,
        seed=0,
    )
    out = dict(out_path=tmp_path / "m.parquet", log=lambda _: None)
    with pytest.raises(SelectionError, match="'bird'"):
        make_manifest(
            DatasetConfig(**{**common, "classes": ["bird"]}, source={"url_template": "u/{id}"}),
            **out,
        )
    nothing = tmp_path / "none.csv"
    nothing.write_text("zzz,http://x\n")
    with pytest.raises(ValueError, match="no clips left"):
        make_manifest(DatasetConfig(**common, source={"mapping_csv": str(nothing)}), **out)
    with pytest.raises(ValueError, match="exactly one key"):
        make_manifest(
            DatasetConfig(**common, source={"url_template": "u/{id}", "mapping_csv": str(nothing)}),
            **out,
        )
    assert not (tmp_path / "m.parquet").exists()


def test_manifest_readable_by_other_engines(tmp_path, vgg_csv):
    """The cache format promise (docs/architecture.md, "Artefacts"): pandas, polars and DuckDB
    read the manifest."""
    duckdb = pytest.importorskip("duckdb")
    polars = pytest.importorskip("polars")
    df, report = read_vggsound_csv(vgg_csv)
    table, report = build_manifest(df, n_shards=2, url_template="u/{id}", report=report)
    path = tmp_path / "m.parquet"
    write_manifest(table, path, dataset="m", fmt="vggsound", n_shards=2, report=report)
    assert polars.read_parquet(path).height == table.num_rows
    count = duckdb.sql(
        f"select count(*) from read_parquet('{path}') where len(labels) = 1"
    ).fetchall()
    assert count == [(table.num_rows,)]
    assert pd.read_parquet(path)["labels"].map(len).sum() == table.num_rows
    assert ParseReport.from_json(pq.read_schema(path).metadata[b"wavbrivl.parse_report"]) == report


def test_dataset_config_from_a_config_block():
    block = {"format": "audioset", "csv": "eval_segments.csv", "n_shards": 2, "role": "generation"}
    cfg = DatasetConfig.from_dict(block)
    assert cfg.source == {"url_template": "https://www.youtube.com/watch?v={id}"}
    assert cfg.selection() == {
        "splits": None,
        "classes": None,
        "max_clips_per_class": None,
        "seed": 0,
        "ytids": None,
    }
    with pytest.raises(ValueError, match="unknown dataset config key"):
        DatasetConfig.from_dict({**block, "n_shard": 3})
    with pytest.raises(ValueError, match="unknown dataset format"):
        DatasetConfig.from_dict({**block, "format": "csv"})
    with pytest.raises(ValueError, match="exactly one key"):
        DatasetConfig.from_dict({**block, "source": {"urls": "u/{id}"}})
