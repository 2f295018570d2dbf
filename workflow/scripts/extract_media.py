"""Snakemake adapter: one frame and 16 kHz audio per clip of a shard (wavbrivl.extract.stage)."""

from pathlib import Path

from wavbrivl.download import read_status
from wavbrivl.extract.stage import ExtractConfig, extract_shard
from wavbrivl.joblog import job_log
from wavbrivl.manifest import read_manifest_shard

with job_log(snakemake.log[0]) as log:
    extract_shard(
        read_manifest_shard(snakemake.input.manifest, snakemake.wildcards.shard),
        read_status(snakemake.input.status),
        Path(snakemake.params.media_dir),
        Path(snakemake.output[0]),
        ExtractConfig.from_dict(snakemake.params.extract),
        threads=snakemake.threads,
        log=log,
    )
