"""Snakemake adapter: Figure-4 grid, two-choice study kit, automatic score, Table 1."""

from pathlib import Path

from wavbrivl.encoders.from_config import encoder_from_config
from wavbrivl.joblog import job_log
from wavbrivl.sheets.stage import assemble_sheets

with job_log(snakemake.log[0]) as log:
    cfg = snakemake.params.sheets
    runs = [Path(p).parent.name for p in snakemake.input.generations]
    assemble_sheets(
        run_folders=dict(zip(runs, snakemake.input.generations, strict=True)),
        media_paths=list(snakemake.input.media),
        manifest_path=snakemake.input.manifest,
        out_dir=Path(snakemake.output.grid).parent,
        encoder=encoder_from_config({**snakemake.config["embed"], "device": "cpu"}),
        study_seed=cfg["study_seed"],
        show_labels=cfg["show_labels"],
        max_audio_seconds=cfg["max_audio_seconds"],
        max_columns=cfg["max_columns"],
        real_frame_row=cfg["real_frame_row"],
        compare=cfg["compare"],
        answers=list(snakemake.input.answers),
        catch_rate=cfg["catch_rate"],
        max_catch_fail=cfg["max_catch_fail"],
        log=lambda msg: print(msg, file=log, flush=True),
    )
