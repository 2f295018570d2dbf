rule prepare_tiny_wavlm:
    output:
        directory("results/models/_wavlm/tiny-seed{seed}"),
    log:
        "logs/prepare_tiny_wavlm/tiny-seed{seed}.log",
    localrule: True
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/prepare_tiny_wavlm.py"


# The demo's toy text-tower folder (BERT config + letter vocabulary) for zero-shot benchmarks.
rule prepare_tiny_text:
    output:
        directory("results/models/_text/tiny"),
    log:
        "logs/prepare_tiny_text/tiny.log",
    localrule: True
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/prepare_tiny_text.py"


# params hold everything that decides the trained weights and metrics; the run-time keys of
# wavbrivl.config_keys (device, workers, logging and checkpoint cadence) are read from the
# config inside the job and rerun nothing.
rule train_audio_encoder:
    input:
        unpack(get_training_inputs),
    # Only the model is a declared output: Snakemake deletes declared outputs before a rerun,
    # and the log, curves and checkpoints must survive a preempted job to be resumed.
    # (recipe.json in the folder decides whether a rerun resumes or starts afresh.)
    output:
        model="results/models/{run}/audio_encoder.pt",
    log:
        "logs/train_audio_encoder/{run}.log",
    benchmark:
        "benchmarks/train_audio_encoder/{run}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 4
    resources:
        gpu=config["train"]["gpus"],
    params:
        audio=config["audio"],
        loss=config["loss"],
        train=get_train_params,
        encoder=get_encoder_identity,
        manifest=get_training_digest,
    script:
        "../scripts/train_audio_encoder.py"


rule evaluate_retrieval:
    input:
        unpack(get_training_inputs),
        model="results/models/{run}/audio_encoder.pt",
    output:
        metrics="results/eval/{run}/metrics.json",
        table=report(
            "results/eval/{run}/metrics.tsv",
            caption="../report/retrieval.rst",
            category="Retrieval",
        ),
        plot=report(
            "results/eval/{run}/retrieval.png",
            caption="../report/retrieval.rst",
            category="Retrieval",
        ),
        curves=report(
            "results/eval/{run}/curves.png", caption="../report/curves.rst", category="Training"
        ),
    log:
        "logs/evaluate_retrieval/{run}.log",
    conda:
        "../../envs/torch.yaml"
    threads: 2
    params:
        train=get_train_params,
    script:
        "../scripts/evaluate_retrieval.py"
