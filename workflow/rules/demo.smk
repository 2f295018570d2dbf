rule synthesise_demo:
    output:
        vggsound_csv="results/demo/vggsound.csv",
        sources="results/demo/sources.csv",
        audioset_csv="results/demo/audioset/segments.csv",
        audioset_labels="results/demo/audioset/class_labels_indices.csv",
        info="results/demo/demo_info.json",
        videos=directory("results/demo/videos"),
    log:
        "logs/synthesise_demo/demo.log",
    benchmark:
        "benchmarks/synthesise_demo/demo.tsv"
    conda:
        "../../envs/media.yaml"
    threads: 2
    params:
        # The benchmark set has its own rule: its size must not rerun the demo's videos.
        demo={k: v for k, v in config["demo"].items() if k != "benchmark_clips_per_class"},
    script:
        "../scripts/synthesise_demo.py"


# A sound-only set in ESC-50's layout from the same classes: the benchmark harness's demo input.
rule synthesise_demo_benchmark:
    output:
        csv="results/demo/esc50/meta/esc50.csv",
        audio=directory("results/demo/esc50/audio"),
    log:
        "logs/synthesise_demo/benchmark.log",
    conda:
        "../../envs/media.yaml"
    threads: 2
    params:
        seed=config["demo"]["seed"],
        n_classes=config["demo"]["n_classes"],
        clips_per_class=config["demo"]["benchmark_clips_per_class"],
    script:
        "../scripts/synthesise_demo_benchmark.py"
