"""The benchmark harness: one fixed, recorded protocol for us and our peers (docs/benchmarks.md).

Datasets in their official layouts (ESC-50, UrbanSound8K, the VGGSound test split), zero-shot
classification through a space's text side, a linear probe over the official folds, and an
audio-model registry so that this project's runs and its peers (Wav2CLIP) go through one code path.
"""
