"""Snakemake adapter: images from the generation clips' audio with Stable unCLIP, then the
run's automatic metrics (metrics.json, metrics.tsv) beside them, as on the VQGAN path."""

from wavbrivl.generate.metrics import metrics_config, score_generation_folder
from wavbrivl.generate.unclip_stage import run_unclip_generation
from wavbrivl.joblog import job_log

with job_log(snakemake.log[0]) as log:
    metrics_cfg = metrics_config(snakemake.config["generate"].get("metrics"))  # before the images
    run_unclip_generation(
        model_path=snakemake.input.model,
        media_paths=list(snakemake.input.media),
        manifest_path=snakemake.input.manifest,
        out_dir=snakemake.output[0],
        generate_block=snakemake.config["generate"],
        embed_block=snakemake.config["embed"],
        wavlm=snakemake.input.get("wavlm"),
        log=lambda msg: print(msg, file=log, flush=True),
    )
    score_generation_folder(
        snakemake.output[0],
        list(snakemake.input.media),
        snakemake.input.manifest,
        snakemake.config["generate"],
        snakemake.config["embed"],
        metrics_cfg,
        log=lambda msg: print(msg, file=log, flush=True),
    )
