"""Snakemake adapter: download one shard's clips with yt-dlp (wavbrivl.download.stage)."""

from pathlib import Path

from wavbrivl.download.sources import parse_source
from wavbrivl.download.stage import DownloadConfig, download_shard
from wavbrivl.joblog import job_log
from wavbrivl.manifest import read_manifest_shard

with job_log(snakemake.log[0]) as log:
    rows = read_manifest_shard(snakemake.input.manifest, snakemake.wildcards.shard)
    download_shard(
        rows,
        Path(snakemake.params.media_dir),
        Path(snakemake.output.status),
        DownloadConfig.from_dict(snakemake.config["download"]),
        threads=snakemake.threads,
        log=log,
        sources=parse_source(snakemake.params.source),
        index_dir=Path(snakemake.params.index_dir),
    )
