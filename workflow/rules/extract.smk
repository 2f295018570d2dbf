rule extract_media:
    input:
        manifest="results/manifest/{dataset}.parquet",
        status="results/download/{dataset}/{shard}.status.parquet",
    output:
        "results/media/{dataset}/{shard}.parquet",
    params:
        media_dir=get_download_dir,
        extract=config["extract"],
    threads: 2
    log:
        "logs/extract_media/{dataset}/{shard}.log",
    benchmark:
        "benchmarks/extract_media/{dataset}/{shard}.tsv"
    conda:
        "../../envs/media.yaml"
    script:
        "../scripts/extract_media.py"
