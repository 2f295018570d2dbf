"""Snakemake adapter: simulated raters answer the study kit; Table 1 from their files."""

from wavbrivl.joblog import job_log
from wavbrivl.sheets.stage import simulate_study

with job_log(snakemake.log[0]) as log:
    cfg = snakemake.params.sheets
    simulate_study(
        key_path=snakemake.input.key,
        auto_path=snakemake.input.auto,
        answers_dir=snakemake.output.answers,
        table_md=snakemake.output.table,
        max_catch_fail=cfg["max_catch_fail"],
        log=lambda msg: print(msg, file=log, flush=True),
        **cfg["simulate"],
    )
