"""Snakemake adapter: save the demo's tiny random WavLM in the official HF format."""

from wavbrivl.joblog import job_log
from wavbrivl.train.pipeline import prepare_tiny_wavlm

with job_log(snakemake.log[0]) as log:
    path = prepare_tiny_wavlm(snakemake.output[0], seed=int(snakemake.wildcards.seed))
    print(f"tiny random WavLM (untrained) saved to {path}", file=log)
