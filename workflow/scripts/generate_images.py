"""Snakemake adapter: images from the generation clips' audio, steered through VQGAN latents."""

from wavbrivl.generate.stage import run_generation
from wavbrivl.joblog import job_log

with job_log(snakemake.log[0]) as log:
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
