# A checkpoint: once a manifest is rebuilt, Snakemake re-evaluates the jobs that read it,
# and the per-shard digests (common.smk) rerun only the shards whose rows changed.
checkpoint build_manifest:
    input:
        get_manifest_inputs,
    output:
        "results/manifest/{dataset}.parquet",
    log:
        "logs/build_manifest/{dataset}.log",
    localrule: True
    conda:
        "../../envs/media.yaml"
    params:
        dataset=get_dataset_config,
        cache_dir="results/manifest/_downloads",
    script:
        "../scripts/build_manifest.py"
