"""Training the audio encoder (docs/architecture.md, "Artefacts", stage ``train``).

Modules: ``schedule`` (the pure learning-rate schedule), ``data`` (media + embedding shards
-> batches, split by the manifest), ``loop`` (the resumable training loop), ``checkpoint``
(resume checkpoints and the ``audio_encoder.pt`` artefact); ``moco`` and ``loss`` hold the
cross-modal MoCo model and its CXLoss.

Import the submodules directly: this package module stays light (no torch import) so that
reading it costs nothing.
"""
