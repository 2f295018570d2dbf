"""Snakemake adapter: a dataset's availability report (wavbrivl.download.availability)."""

from wavbrivl.download.availability import write_availability_report
from wavbrivl.joblog import job_log

with job_log(snakemake.log[0]) as log:
    write_availability_report(
        snakemake.input.manifest,
        list(snakemake.input.statuses),
        snakemake.output.table,
        snakemake.output.plot,
        snakemake.wildcards.dataset,
        log=log,
    )
