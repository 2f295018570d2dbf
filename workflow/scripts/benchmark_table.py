"""Snakemake adapter: one table of the benchmark results beside the peers' published figures
(wavbrivl.benchmark.table)."""

from wavbrivl.benchmark.table import combine, read_rows, write_table
from wavbrivl.joblog import job_log

with job_log(snakemake.log[0]) as log:
    rows = [row for path in snakemake.input for row in read_rows(path)]
    write_table(combine(rows), snakemake.output.md, snakemake.output.tsv)
    print(f"benchmark table: {len(rows)} rows from {len(snakemake.input)} result(s)", file=log)
