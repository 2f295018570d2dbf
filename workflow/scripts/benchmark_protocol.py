"""Snakemake adapter: score benchmark embeddings with one protocol (wavbrivl.benchmark.stage)."""

from pathlib import Path

from wavbrivl.benchmark.results import read_result
from wavbrivl.benchmark.stage import check_space, load_embedded, score
from wavbrivl.joblog import job_log

with job_log(snakemake.log[0]) as log:
    params = snakemake.params
    embedded = snakemake.input[0]
    out_dir = Path(snakemake.output.json).parent
    if params.protocol == "zeroshot":
        from wavbrivl.encoders.from_config import encoder_from_config

        encoder = encoder_from_config(params.text)
        _, _, model = load_embedded(embedded)
        check_space(model, encoder, embedded)
        paths = score(
            embedded,
            "zeroshot",
            out_dir,
            encode_text=encoder.encode_text,
            language=params.language,
            templates=params.templates,
        )
    else:
        paths = score(embedded, "linear_probe", out_dir, c_grid=params.c_grid, seed=params.seed)
    print(f"benchmark: {params.protocol}: wrote {sorted(str(p) for p in paths.values())}", file=log)
    result = read_result(paths["json"])
    top1 = result["top1"]
    print(
        f"benchmark: {params.protocol}: top-1 {100 * top1['mean']:.1f} ± {100 * top1['std']:.1f} % "
        f"(chance {100 * result['chance']['top1']:.1f} %)",
        file=log,
    )
    verdict = result.get("chance_verdict") or {}
    if verdict.get("at_chance"):
        print(f"benchmark: {verdict['line']}", file=log)
