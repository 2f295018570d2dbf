"""Snakemake adapter: save the demo's tiny random WavLM in the official HF format."""

from wavbrivl.audio.tiny import save_tiny_wavlm
from wavbrivl.joblog import job_log

with job_log(snakemake.log[0]) as log:
    path = save_tiny_wavlm(snakemake.output[0], seed=int(snakemake.wildcards.seed))
    print(f"tiny random WavLM (untrained) saved to {path}", file=log)
