"""Snakemake adapter: the class agreement of the demo's generated pictures (wavbrivl.demo.pictures)."""

import json
from pathlib import Path

from wavbrivl.atomic import write_text_atomic
from wavbrivl.demo.pictures import score_pictures, summary_line
from wavbrivl.encoders.from_config import encoder_from_config
from wavbrivl.joblog import job_log

with job_log(snakemake.log[0]) as log:
    folder = snakemake.input.generation
    record = score_pictures(
        run_name=Path(folder).parent.name,
        run_folder=folder,
        media_paths=list(snakemake.input.media),
        manifest_path=snakemake.input.manifest,
        encoder=encoder_from_config({**snakemake.config["embed"], "device": "cpu"}),
    )
    write_text_atomic(snakemake.output[0], json.dumps(record, indent=2) + "\n")
    line = summary_line(record)
    print(line, file=log, flush=True)
    print(line, flush=True)  # stdout: the demo's terminal shows it
