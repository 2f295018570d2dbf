rule extract_media:
    input:
        manifest=get_manifest_for_shard,
        status="results/download/{dataset}/{shard}.status.parquet",
    output:
        "results/media/{dataset}/{shard}.parquet",
    log:
        "logs/extract_media/{dataset}/{shard}.log",
    benchmark:
        "benchmarks/extract_media/{dataset}/{shard}.tsv"
    conda:
        "../../envs/media.yaml"
    threads: 2
    params:
        clips=get_shard_digest,
        media_dir=get_download_dir,
        extract=config["extract"],
    script:
        "../scripts/extract_media.py"
