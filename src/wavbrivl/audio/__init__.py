"""The audio encoder: a (frozen or fine-tuned) WavLM with a trainable head (WavBriVL paper).

Typical use::

    from wavbrivl.audio import AudioEncoderConfig, build_audio_encoder
    enc = build_audio_encoder(AudioEncoderConfig(wavlm="/models/wavlm-base-plus"))
    emb = enc.encode_audio(waveforms, lengths)  # (B, T) 16 kHz, (B,) -> (B, 2048), not normalised

The embedding used downstream is ``CrossModalMoCo.embed_audio`` (``wavbrivl.train.moco``):
g(audio) in the image space, L2-normalised.
"""

from wavbrivl.audio.encoder import (
    AudioEncoder,
    AudioEncoderConfig,
    AudioHead,
    WavLMLoadError,
    build_audio_encoder,
    load_wavlm,
)
from wavbrivl.audio.tiny import TINY_AUDIO, TINY_MOCO, save_tiny_wavlm

__all__ = [
    "TINY_AUDIO",
    "TINY_MOCO",
    "AudioEncoder",
    "AudioEncoderConfig",
    "AudioHead",
    "WavLMLoadError",
    "build_audio_encoder",
    "load_wavlm",
    "save_tiny_wavlm",
]
