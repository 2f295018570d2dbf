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
        demo=config["demo"],
    script:
        "../scripts/synthesise_demo.py"
