"""Dataset manifests: dataset CSVs in, one sharded Parquet manifest per dataset out.

Modules, one job each:

- ``vggsound`` / ``audioset``: parse the datasets' CSV files into a DataFrame, counting and
  skipping malformed rows;
- ``select``: config-driven, seeded selection of clips (splits, classes, per-class cap, ids);
- ``build``: URLs, display names, shards; write and read the Parquet manifest;
- ``stage``: the stage's entry: :class:`DatasetConfig` (one ``datasets:`` entry) and
  :func:`make_manifest` (parse, select, shard, write);
- ``fetch``: a local copy of a CSV given as a path or an http(s) URL;
- ``parsing``: what both parsers share (the :class:`ParseReport`, row checks, CSV reading).
"""

from wavbrivl.manifest.audioset import read_audioset_segments, read_class_labels
from wavbrivl.manifest.build import (
    MANIFEST_SCHEMA,
    build_manifest,
    read_manifest_info,
    read_manifest_shard,
    read_source_mapping,
    write_manifest,
)
from wavbrivl.manifest.fetch import FetchError, local_copy
from wavbrivl.manifest.parsing import (
    MAX_EXAMPLES,
    MalformedRow,
    ParseReport,
    RowCollector,
    parse_seconds,
)
from wavbrivl.manifest.select import SelectionError, select_clips
from wavbrivl.manifest.stage import DatasetConfig, make_manifest
from wavbrivl.manifest.vggsound import read_vggsound_csv

__all__ = [
    "MAX_EXAMPLES",
    "MalformedRow",
    "ParseReport",
    "RowCollector",
    "parse_seconds",
    "read_vggsound_csv",
    "read_audioset_segments",
    "read_class_labels",
    "select_clips",
    "SelectionError",
    "read_source_mapping",
    "build_manifest",
    "write_manifest",
    "DatasetConfig",
    "make_manifest",
    "read_manifest_shard",
    "read_manifest_info",
    "MANIFEST_SCHEMA",
    "local_copy",
    "FetchError",
]
