# The benchmark harness (docs/benchmarks.md): each audio model embeds each dataset once, then
# each protocol scores the embeddings. Which protocols run is decided when the DAG is built
# (wavbrivl.benchmark.stage.protocols_for): zero-shot where the model's space has a text side,
# the linear probe where the dataset has three folds or more.
rule benchmark_embeddings:
    input:
        unpack(get_benchmark_inputs),
    output:
        "results/benchmarks/{model}/{dataset}/embeddings.npz",
    log:
        "logs/benchmark_embeddings/{model}/{dataset}.log",
    benchmark:
        "benchmarks/benchmark_embeddings/{model}/{dataset}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 2
    params:
        model=get_benchmark_model_params,
        dataset=lambda w: benchmark_entry("datasets", w.dataset),
    script:
        "../scripts/benchmark_embeddings.py"


rule benchmark_zeroshot:
    input:
        "results/benchmarks/{model}/{dataset}/embeddings.npz",
        text=get_text_side_inputs,
    output:
        json=report(
            "results/benchmarks/{model}/{dataset}/zeroshot.json",
            caption="../report/benchmark.rst",
            category="Benchmarks",
            subcategory="{model}",
        ),
        tsv="results/benchmarks/{model}/{dataset}/zeroshot.tsv",
        per_class="results/benchmarks/{model}/{dataset}/zeroshot_per_class.tsv",
        confusion=report(
            "results/benchmarks/{model}/{dataset}/confusion.png",
            caption="../report/benchmark.rst",
            category="Benchmarks",
            subcategory="{model}",
        ),
    log:
        "logs/benchmark_zeroshot/{model}/{dataset}.log",
    conda:
        "../../envs/torch.yaml"
    params:
        protocol="zeroshot",
        text=get_text_side_config,
        language=config["benchmarks"]["language"],
        templates=config["benchmarks"]["templates"],
    script:
        "../scripts/benchmark_protocol.py"


rule benchmark_linear_probe:
    input:
        "results/benchmarks/{model}/{dataset}/embeddings.npz",
    output:
        json=report(
            "results/benchmarks/{model}/{dataset}/linear_probe.json",
            caption="../report/benchmark.rst",
            category="Benchmarks",
            subcategory="{model}",
        ),
        tsv="results/benchmarks/{model}/{dataset}/linear_probe.tsv",
        per_class="results/benchmarks/{model}/{dataset}/linear_probe_per_class.tsv",
        confusion=report(
            "results/benchmarks/{model}/{dataset}/linear_probe_confusion.png",
            caption="../report/benchmark.rst",
            category="Benchmarks",
            subcategory="{model}",
        ),
    log:
        "logs/benchmark_linear_probe/{model}/{dataset}.log",
    conda:
        "../../envs/torch.yaml"
    params:
        protocol="linear_probe",
        c_grid=config["benchmarks"]["c_grid"],
        seed=config["benchmarks"]["seed"],
    script:
        "../scripts/benchmark_protocol.py"


# One table of every result beside the peers' published figures (Markdown + TSV).
rule benchmark_table:
    input:
        [p for p in get_benchmark_results() if p.endswith(".json")],
    output:
        md=report(
            "results/benchmarks/table.md",
            caption="../report/benchmark.rst",
            category="Benchmarks",
        ),
        tsv="results/benchmarks/table.tsv",
    log:
        "logs/benchmark_table.log",
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/benchmark_table.py"
