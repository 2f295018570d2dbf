rule generate_images:
    input:
        unpack(get_generation_inputs),
        model="results/models/{run}/audio_encoder.pt",
    output:
        # metrics.json / metrics.tsv are written inside the folder after the images
        # (docs/generation-metrics.md); the report shows them.
        report(
            directory("results/generation/{run}/{dataset}"),
            patterns=["metrics.{ext}"],
            caption="../report/generation_metrics.rst",
            category="Generation",
            subcategory="{run}",
        ),
    log:
        "logs/generate_images/{run}/{dataset}.log",
    benchmark:
        "benchmarks/generate_images/{run}/{dataset}.tsv"
    wildcard_constraints:
        run=RUN_NAME,
    conda:
        "../../envs/torch.yaml"
    threads: 4
    # One GPU at most (a data-parallel training run's count does not apply); none where the
    # run is configured for the CPU (the demo). On SLURM the profile sets its own request.
    resources:
        gpu=min(config["train"]["gpus"], 1),
    params:
        generate=get_generate_params,
        encoder=get_encoder_identity,
    script:
        "../scripts/generate_images.py"


rule generate_images_unclip:
    input:
        unpack(get_unclip_inputs),
        model="results/models/{run}/audio_encoder.pt",
    output:
        report(
            directory("results/generation/{run}+unclip/{dataset}"),
            patterns=["metrics.{ext}"],
            caption="../report/generation_metrics.rst",
            category="Generation",
            subcategory="{run}+unclip",
        ),
    log:
        "logs/generate_images_unclip/{run}/{dataset}.log",
    benchmark:
        "benchmarks/generate_images_unclip/{run}/{dataset}.tsv"
    wildcard_constraints:
        run=RUN_NAME,
    conda:
        "../../envs/torch.yaml"
    threads: 4
    resources:
        gpu=min(config["train"]["gpus"], 1),
    params:
        generate=get_unclip_params,
        encoder=get_encoder_identity,
    script:
        "../scripts/generate_images_unclip.py"


rule assemble_sheets:
    input:
        unpack(get_sheets_inputs),
    output:
        grid=report(
            "results/sheets/{sheet}/grid.png",
            caption="../report/grid.rst",
            category="Generation",
        ),
        grid_pdf="results/sheets/{sheet}/grid.pdf",
        study=report(
            "results/sheets/{sheet}/study.html",
            caption="../report/study.rst",
            category="Two-choice study",
        ),
        key="results/sheets/{sheet}/answer_key.json",
        auto=report(
            "results/sheets/{sheet}/auto2afc.json",
            caption="../report/auto2afc.rst",
            category="Two-choice study",
        ),
    log:
        "logs/assemble_sheets/{sheet}.log",
    conda:
        "../../envs/torch.yaml"
    params:
        sheets=config["sheets"],
        encoder=get_encoder_identity,
    script:
        "../scripts/assemble_sheets.py"


rule simulate_study:
    input:
        key="results/sheets/{sheet}/answer_key.json",
        auto="results/sheets/{sheet}/auto2afc.json",
    output:
        answers=directory("results/sheets/{sheet}/simulated/answers"),
        table="results/sheets/{sheet}/simulated/table1.md",
        tsv="results/sheets/{sheet}/simulated/table1.tsv",
        json="results/sheets/{sheet}/simulated/table1.json",
        html=report(
            "results/sheets/{sheet}/simulated/table1.html",
            caption="../report/table1.rst",
            category="Two-choice study",
        ),
    log:
        "logs/simulate_study/{sheet}.log",
    conda:
        "../../envs/torch.yaml"
    params:
        sheets=config["sheets"],
    script:
        "../scripts/simulate_study.py"
