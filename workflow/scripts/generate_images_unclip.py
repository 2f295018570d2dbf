"""Snakemake adapter: images from the generation clips' audio with Stable unCLIP."""

from wavbrivl.generate.unclip_stage import run_unclip_generation
from wavbrivl.joblog import job_log

with job_log(snakemake.log[0]) as log:
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
