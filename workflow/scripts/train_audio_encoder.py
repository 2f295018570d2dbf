"""Snakemake adapter: train the audio encoder against the frozen image embeddings."""

from pathlib import Path

from wavbrivl.joblog import job_log
from wavbrivl.train.recipe import prepare_run_dir
from wavbrivl.train.stage import launch_training

with job_log(snakemake.log[0], mode="a") as log:  # appended: a resumed run keeps the earlier log
    prepare_run_dir(
        Path(snakemake.output.model).parent,
        settings=dict(snakemake.params.items()),
        inputs=list(snakemake.input),
        log=lambda msg: print(msg, file=log, flush=True),
    )
    # In-process with train.gpus <= 1; torchrun with one rank per GPU otherwise.
    launch_training(
        manifest=snakemake.input.manifest,
        shards=list(zip(snakemake.input.embeddings, snakemake.input.media, strict=True)),
        out_dir=Path(snakemake.output.model).parent,
        audio=snakemake.config["audio"],
        loss=snakemake.config["loss"],
        train_block=snakemake.config["train"],
        wavlm=snakemake.input.get("wavlm", snakemake.config["audio"]["wavlm"]),
        log=lambda msg: print(msg, file=log, flush=True),
        log_stream=log,
    )
