"""Snakemake adapter: train the demo's VQGAN on its training frames (wavbrivl.demo.vqgan_train)."""

import pyarrow.parquet as pq

from wavbrivl.demo.vqgan_train import run_demo_vqgan
from wavbrivl.joblog import job_log

with job_log(snakemake.log[0]) as log:
    split = snakemake.params.split
    manifest = pq.read_table(snakemake.input.manifest, columns=["clip_id", "split"]).to_pylist()
    run_demo_vqgan(
        media_paths=list(snakemake.input.media),
        clip_ids=[row["clip_id"] for row in manifest if row["split"] == split],
        ckpt_path=snakemake.output.ckpt,
        yaml_path=snakemake.output.yaml,
        log_path=snakemake.output.train_log,
        block=snakemake.params.vqgan,
        log=lambda msg: print(msg, file=log, flush=True),
    )
