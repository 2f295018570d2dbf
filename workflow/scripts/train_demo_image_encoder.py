"""Snakemake adapter: train the demo's image encoder on its training frames
(wavbrivl.demo.encoder_train)."""

import pyarrow.parquet as pq

from wavbrivl.demo.encoder_train import run_demo_image_encoder
from wavbrivl.joblog import job_log

with job_log(snakemake.log[0]) as log:
    split = snakemake.params.split
    manifest = pq.read_table(snakemake.input.manifest, columns=["clip_id", "split"]).to_pylist()
    run_demo_image_encoder(
        media_paths=list(snakemake.input.media),
        clip_ids=[row["clip_id"] for row in manifest if row["split"] == split],
        ckpt_path=snakemake.output.ckpt,
        log_path=snakemake.output.train_log,
        block=snakemake.params.image_encoder,
        log=lambda msg: print(msg, file=log, flush=True),
    )
