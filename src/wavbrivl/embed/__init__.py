"""The frozen image embedding stage: media shard in, embedding Parquet out (DESIGN.md)."""
