"""Snakemake adapter: build one dataset's sharded Parquet manifest (wavbrivl.manifest.stage)."""

from wavbrivl.joblog import job_log
from wavbrivl.manifest.stage import DatasetConfig, make_manifest

with job_log(snakemake.log[0]) as log:
    make_manifest(
        DatasetConfig.from_dict(snakemake.params.dataset),
        out_path=snakemake.output[0],
        dataset=snakemake.wildcards.dataset,
        cache_dir=snakemake.params.cache_dir,
        log=lambda msg: print(msg, file=log, flush=True),
    )
