"""Snakemake adapter: list a dataset's downloaded clips with their hashes (wavbrivl.download.used_clips)."""

from wavbrivl.download.used_clips import write_used_clips
from wavbrivl.joblog import job_log

with job_log(snakemake.log[0]) as log:
    n = write_used_clips(list(snakemake.input), snakemake.output[0])
    print(f"{snakemake.output[0]}: {n} clips", file=log)
