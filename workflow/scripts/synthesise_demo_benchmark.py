"""Snakemake adapter: the demo's benchmark set in ESC-50's layout (wavbrivl.demo.esc50)."""

from pathlib import Path

from wavbrivl.demo.esc50 import synthesise_benchmark
from wavbrivl.joblog import job_log

with job_log(snakemake.log[0]) as log:
    synthesise_benchmark(
        Path(snakemake.output.csv).parent.parent,
        seed=snakemake.params.seed,
        clips_per_class=snakemake.params.clips_per_class,
        n_classes=snakemake.params.n_classes,
        threads=snakemake.threads,
        log=lambda msg: print(msg, file=log, flush=True),
    )
