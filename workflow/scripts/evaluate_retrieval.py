"""Snakemake adapter: retrieval metrics of a trained run on the test split."""

import shutil
from pathlib import Path

from wavbrivl.evaluate.stage import run_evaluation
from wavbrivl.joblog import job_log

with job_log(snakemake.log[0]) as log:
    run_evaluation(
        model_path=snakemake.input.model,
        manifest=snakemake.input.manifest,
        shards=list(zip(snakemake.input.embeddings, snakemake.input.media, strict=True)),
        out_dir=Path(snakemake.output.metrics).parent,
        train_block=snakemake.config["train"],
        wavlm=snakemake.input.get("wavlm", snakemake.config["audio"]["wavlm"]),
        log=lambda msg: print(msg, file=log, flush=True),
    )
    # The training curves, as a declared output here for the report (the training job keeps
    # its own copy undeclared, so a preempted run can resume its log).
    shutil.copyfile(Path(snakemake.input.model).parent / "curves.png", snakemake.output.curves)
