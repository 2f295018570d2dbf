# One job per shard. params hold everything that changes the embeddings (encoder identity,
# the weights' SHA-256, preprocessing, views), so a change to any of them reruns this stage;
# batch size and device are read from the config inside the job and never trigger a rerun.
rule embed_images:
    input:
        media="results/media/{dataset}/{shard}.parquet",
        weights=get_encoder_weights,
        checked_weights=get_checked_weights,
    output:
        "results/embeddings/{encoder}/{dataset}/{shard}.parquet",
    log:
        "logs/embed_images/{encoder}/{dataset}/{shard}.log",
    benchmark:
        "benchmarks/embed_images/{encoder}/{dataset}/{shard}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        gpu=0,
    params:
        identity=get_encoder_identity,
    script:
        "../scripts/embed_images.py"
