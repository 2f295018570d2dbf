"""Snakemake adapter: save the demo's tiny random WavLM in the official HF format."""

import sys

from wavbrivl.train.pipeline import prepare_tiny_wavlm

with open(snakemake.log[0], "w") as log:
    sys.stderr = log
    path = prepare_tiny_wavlm(snakemake.output[0], seed=int(snakemake.wildcards.seed))
    print(f"tiny random WavLM (untrained) saved to {path}", file=log)
