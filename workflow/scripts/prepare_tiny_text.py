"""Snakemake adapter: the demo's toy text-tower folder (wavbrivl.demo.tiny_text)."""

from wavbrivl.demo.tiny_text import save_tiny_text_folder
from wavbrivl.joblog import job_log

with job_log(snakemake.log[0]) as log:
    path = save_tiny_text_folder(snakemake.output[0])
    print(f"toy text-tower folder (BERT config + letter vocabulary) saved to {path}", file=log)
