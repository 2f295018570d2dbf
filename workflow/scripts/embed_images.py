"""Snakemake adapter: embed one media shard's frames with the frozen image encoder."""

from wavbrivl.embed.stage import EmbedSettings, embed_shard
from wavbrivl.encoders.from_config import encoder_from_config
from wavbrivl.joblog import job_log

with job_log(snakemake.log[0]) as log:
    cfg = snakemake.config["embed"]
    encoder = encoder_from_config(cfg)
    print(
        f"encoder: {encoder.name} on {encoder.device}, fingerprint {encoder.fingerprint}", file=log
    )
    embed_shard(
        snakemake.input.media,
        snakemake.output[0],
        encoder,
        EmbedSettings(n_views=cfg["n_views"], seed=cfg["view_seed"]),
        batch_size=cfg["batch_size"],
        log=log,
    )
