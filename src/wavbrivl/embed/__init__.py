"""The frozen image embedding stage: media shard in, embedding Parquet out.

Modules: ``stage`` (the entry module: one media shard -> one embedding Parquet), ``store``
(the embedding Parquet's writer and header), ``reader`` (embeddings joined to their media rows,
for training). See docs/architecture.md, "Artefacts".
"""
