"""Snakemake adapter: images from the generation clips' audio, steered through VQGAN latents,
then the run's automatic metrics (metrics.json, metrics.tsv) beside them."""

from wavbrivl.generate.metrics import metrics_config, score_generation_folder
from wavbrivl.generate.stage import run_generation
from wavbrivl.joblog import job_log

with job_log(snakemake.log[0]) as log:
    metrics_cfg = metrics_config(snakemake.config["generate"].get("metrics"))  # before the images
    generate_block = dict(snakemake.config["generate"])
    if generate_block["vqgan"] == "demo":  # the demo's trained VQGAN, a taming-format file pair
        generate_block["vqgan_ckpt"] = snakemake.input.vqgan_ckpt
        generate_block["vqgan_yaml"] = snakemake.input.vqgan_yaml
    run_generation(
        model_path=snakemake.input.model,
        media_paths=list(snakemake.input.media),
        manifest_path=snakemake.input.manifest,
        out_dir=snakemake.output[0],
        generate_block=generate_block,
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
