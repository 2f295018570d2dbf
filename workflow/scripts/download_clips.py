"""Snakemake adapter: download one shard's clips with yt-dlp (wavbrivl.download)."""

import sys
from pathlib import Path

from wavbrivl.download import DownloadConfig, download_shard
from wavbrivl.manifest import read_manifest_shard

with open(snakemake.log[0], "w") as log:
    sys.stderr = log
    rows = read_manifest_shard(snakemake.input.manifest, snakemake.wildcards.shard)
    download_shard(
        rows,
        Path(snakemake.params.media_dir),
        Path(snakemake.output.status),
        DownloadConfig.from_dict(snakemake.config["download"]),
        threads=snakemake.threads,
        log=log,
    )
