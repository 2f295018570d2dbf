"""Snakemake adapter: build one dataset's sharded Parquet manifest (wavbrivl.manifest)."""

from wavbrivl.joblog import job_log
from wavbrivl.manifest import make_manifest

with job_log(snakemake.log[0]) as log:
    ds = snakemake.params.dataset
    make_manifest(
        dataset=snakemake.wildcards.dataset,
        fmt=ds["format"],
        csv=ds["csv"],
        labels_csv=ds["labels_csv"],
        split_name=ds["split_name"],
        out_path=snakemake.output[0],
        n_shards=ds["n_shards"],
        splits=ds["splits"],
        classes=ds["classes"],
        ytids=ds["ytids"],
        max_clips_per_class=ds["max_clips_per_class"],
        seed=ds["seed"],
        clip_seconds=ds["clip_seconds"],
        source=ds["source"],
        cache_dir=snakemake.params.cache_dir,
        log=lambda msg: print(msg, file=log, flush=True),
    )
