"""Snakemake adapter: synthesise the demo dataset (wavbrivl.demo)."""

import sys
from pathlib import Path

from wavbrivl.demo.synth import synthesise_demo

with open(snakemake.log[0], "w") as log:
    sys.stderr = log
    out_dir = Path(snakemake.output.vggsound_csv).parent
    synthesise_demo(
        out_dir,
        threads=snakemake.threads,
        log=lambda msg: print(msg, file=log, flush=True),
        **snakemake.params.demo,
    )
