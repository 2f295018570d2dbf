"""Snakemake adapter: synthesise the demo dataset (wavbrivl.demo.stage)."""

from pathlib import Path

from wavbrivl.demo.stage import synthesise_demo
from wavbrivl.joblog import job_log

with job_log(snakemake.log[0]) as log:
    out_dir = Path(snakemake.output.vggsound_csv).parent
    synthesise_demo(
        out_dir,
        threads=snakemake.threads,
        log=lambda msg: print(msg, file=log, flush=True),
        **snakemake.params.demo,
    )
