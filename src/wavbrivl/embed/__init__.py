"""The frozen image embedding stage: media shard in, embedding Parquet out (docs/architecture.md, "Artefacts")."""
