# One job per shard. Only the status table is a declared output: Snakemake deletes declared
# outputs before a rerun, and the media folder must survive so finished clips are skipped.
rule download_clips:
    input:
        manifest=get_manifest_for_shard,
        # Written by a shard the breaker stopped: the next plain run retries its deferred clips.
        retry=get_retry_marker,
    output:
        status="results/download/{dataset}/{shard}.status.parquet",
    log:
        "logs/download_clips/{dataset}/{shard}.log",
    benchmark:
        "benchmarks/download_clips/{dataset}/{shard}.tsv"
    conda:
        "../../envs/media.yaml"
    threads: 4
    # `--resources download_jobs=N` caps shards downloading at once (be polite to YouTube).
    resources:
        download_jobs=1,
    params:
        clips=get_shard_digest,
        media_dir=get_download_dir,
        download=get_download_identity,
        # A changed source (a mirror added) reruns the shard; finished clips are kept.
        source=get_dataset_source,
        index_dir=get_tar_index_dir,
    script:
        "../scripts/download_clips.py"


# The exact set a dataset's download produced: clip id, source, SHA-256 of the bytes.
rule list_used_clips:
    input:
        get_dataset_statuses,
    output:
        "results/download/{dataset}/used_clips.csv",
    log:
        "logs/list_used_clips/{dataset}.log",
    localrule: True
    conda:
        "../../envs/media.yaml"
    script:
        "../scripts/list_used_clips.py"


# Clips per status per class over all of a dataset's shards: a TSV and a bar plot (report).
rule report_availability:
    input:
        manifest="results/manifest/{dataset}.parquet",
        statuses=get_dataset_statuses,
    output:
        table=report(
            "results/reports/availability/{dataset}.tsv",
            caption="../report/availability.rst",
            category="Data",
        ),
        plot=report(
            "results/reports/availability/{dataset}.png",
            caption="../report/availability.rst",
            category="Data",
        ),
    log:
        "logs/report_availability/{dataset}.log",
    localrule: True
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/report_availability.py"
