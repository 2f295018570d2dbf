"""The WavBriVL audio encoder: a WavLM backbone and a small trainable head.

Pipeline for a batch of B clips of 16 kHz mono audio, right-padded to T samples:

    per-clip waveform normalisation   (B, T)                     only if the checkpoint's
                                                                 preprocessor asks for it
    WavLM, all hidden states          (B, T)        -> (S, B, F, H)  S = layers + 1
    softmax-weighted layer sum        (S, B, F, H)  -> (B, F, H)
    transformer encoder, pad masked   (B, F, H)     -> (B, F, H)
    masked mean over valid frames     (B, F, H)     -> (B, H)
    Linear-ReLU-Linear                (B, H)        -> (B, D_audio)

The output lives in the "audio space" and is not normalised; the projection into the image
space (``g``) and the normalisation belong to :mod:`wavbrivl.train.moco`.

Padding never changes a clip's embedding: padded samples are zeroed, the frame padding mask
comes from WavLM's own conv-stack length formula, and WavLM checkpoints whose first conv layer
uses GroupNorm over time (``feat_extract_norm="group"``, the Base models) are run once per
distinct clip length, because their normalisation would otherwise see the padding.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import Wav2Vec2FeatureExtractor, WavLMModel

from wavbrivl.configs import check_block, default_field, from_mapping
from wavbrivl.extract.media import SAMPLE_RATE
from wavbrivl.nn_blocks import MLP
from wavbrivl.warn import warn_caller

#: Config overrides applied when loading any WavLM: no SpecAugment-style masking and no
#: layerdrop. The weighted layer sum expects every layer every step, and the frozen
#: backbone must be a fixed function of the waveform.
WAVLM_OVERRIDES: dict[str, Any] = {
    "mask_time_prob": 0.0,
    "mask_feature_prob": 0.0,
    "layerdrop": 0.0,
    "apply_spec_augment": False,
}


class WavLMLoadError(ValueError):
    """A WavLM backbone cannot be loaded; the message names the source and the reason."""


@dataclass(frozen=True)
class AudioEncoderConfig:
    """Architecture of the audio encoder; defaults follow the paper's description."""

    wavlm: str  # local HF-format directory (config.json + weights) or a hub id
    # The workflow's `audio` block; defaults and valid ranges come from the config schema.
    freeze_wavlm: bool = default_field("audio", "freeze_wavlm")  # eval mode, no gradients
    n_layers: int = default_field("audio", "n_layers")  # transformer layers on the layer sum
    n_heads: int = default_field("audio", "n_heads")  # must divide WavLM's hidden size
    ff_dim: int = default_field("audio", "ff_dim")  # transformer feed-forward width
    dropout: float = default_field("audio", "dropout")  # transformer dropout
    mlp_hidden: int = default_field("audio", "mlp_hidden")  # output MLP's hidden width
    out_dim: int = default_field("audio", "out_dim")  # D_audio: size of the "audio space"

    def __post_init__(self) -> None:
        check_block(self, "audio")

    def to_dict(self) -> dict[str, Any]:
        """Plain types only, for JSON fingerprints and weights-only checkpoints."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> AudioEncoderConfig:
        return from_mapping(cls, values, "AudioEncoderConfig")


def weighted_layer_sum(states: torch.Tensor, layer_logits: torch.Tensor) -> torch.Tensor:
    """Softmax-weighted sum over the layer axis: (S, B, F, H), (S,) -> (B, F, H)."""
    weights = torch.softmax(layer_logits.float(), dim=0).to(states.dtype)  # (S,)
    return torch.einsum("s,sbfh->bfh", weights, states)


def masked_mean(x: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
    """Mean over valid frames: (B, F, H), padding (B, F) True = padded -> (B, H)."""
    keep = (~padding).unsqueeze(-1).to(x.dtype)  # (B, F, 1)
    return (x * keep).sum(dim=1) / keep.sum(dim=1)


class AudioHead(nn.Module):
    """Everything trainable above WavLM: layer weights, transformer, pooling, MLP.

    Kept as one module so the MoCo momentum copy can duplicate the head while sharing a
    frozen backbone.
    """

    def __init__(self, n_states: int, width: int, cfg: AudioEncoderConfig) -> None:
        super().__init__()
        if width % cfg.n_heads:
            raise ValueError(
                f"n_heads={cfg.n_heads} does not divide WavLM's hidden size {width} "
                f"(WavLM {cfg.wavlm!r}); pick a divisor"
            )
        # Zero logits = equal weights at the start; softmax keeps them a convex combination.
        self.layer_logits = nn.Parameter(torch.zeros(n_states))
        layer = nn.TransformerEncoderLayer(
            d_model=width,
            nhead=cfg.n_heads,
            dim_feedforward=cfg.ff_dim,
            dropout=cfg.dropout,
            batch_first=True,  # (B, F, H)
        )
        # Nested tensors would zero padded frames only in some modes; keep one code path.
        self.transformer = nn.TransformerEncoder(
            layer, num_layers=cfg.n_layers, enable_nested_tensor=False
        )
        self.mlp = MLP(width, cfg.mlp_hidden, cfg.out_dim)

    def forward(self, states: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        """(S, B, F, H) hidden states, (B, F) padding mask -> (B, D_audio)."""
        if states.shape[0] != self.layer_logits.shape[0]:
            raise ValueError(
                f"got {states.shape[0]} hidden states, the head weights "
                f"{self.layer_logits.shape[0]} (WavLM layers + 1)"
            )
        x = weighted_layer_sum(states, self.layer_logits)  # (B, F, H)
        x = self.transformer(x, src_key_padding_mask=padding)  # (B, F, H)
        return self.mlp(masked_mean(x, padding))  # (B, D_audio)


class AudioEncoder(nn.Module):
    """WavLM + :class:`AudioHead`: 16 kHz waveforms -> audio-space embeddings (B, out_dim).

    With ``cfg.freeze_wavlm`` the backbone gets ``requires_grad=False``, runs without
    autograd, and stays in eval mode when a parent module calls ``.train()``.
    """

    sample_rate: int = SAMPLE_RATE

    def __init__(
        self, cfg: AudioEncoderConfig, wavlm: WavLMModel, *, normalize_waveform: bool
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.wavlm = wavlm
        # Set by the checkpoint's preprocessor (do_normalize): part of the model's input
        # contract, so it lives with the model rather than in the data pipeline.
        self.normalize_waveform = normalize_waveform
        wcfg = wavlm.config
        self.head = AudioHead(wcfg.num_hidden_layers + 1, wcfg.hidden_size, cfg)
        if cfg.freeze_wavlm:
            self.wavlm.requires_grad_(False)
            self.wavlm.train(False)

    @property
    def frozen(self) -> bool:
        return self.cfg.freeze_wavlm

    @property
    def n_states(self) -> int:
        """S: hidden states WavLM returns (embedding output + one per layer)."""
        return self.wavlm.config.num_hidden_layers + 1

    def train(self, mode: bool = True) -> AudioEncoder:
        super().train(mode)
        if self.frozen:
            self.wavlm.train(False)  # no dropout in the fixed feature extractor
        return self

    def frame_counts(self, lengths: torch.Tensor) -> torch.Tensor:
        """Valid WavLM frames per clip: (B,) samples -> (B,) frames (WavLM's own formula)."""
        return self.wavlm._get_feat_extract_output_lengths(lengths, add_adapter=False).long()

    def wavlm_states(
        self, waveforms: torch.Tensor, lengths: torch.Tensor, wavlm: WavLMModel | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run WavLM: (B, T) float at 16 kHz, (B,) valid samples -> states, frame padding.

        Returns hidden states (S, B, F, H) and a (B, F) bool mask, True on padded frames.
        Padded frames of ``states`` hold arbitrary values; only the mask says which are real.
        ``wavlm`` replaces the backbone (the MoCo momentum copy); default ``self.wavlm``.
        """
        wavlm = self.wavlm if wavlm is None else wavlm
        lengths = self._check_inputs(waveforms, lengths)
        n_frames = self.frame_counts(lengths)  # (B,)
        short = (n_frames < 1).nonzero().flatten().tolist()
        if short:
            raise ValueError(
                "clips shorter than one WavLM frame (the conv stack needs "
                f"{self.min_samples()} samples): batch rows {short} with lengths "
                f"{lengths[short].tolist()}"
            )
        t = int(lengths.max())
        waveforms = waveforms[:, :t].float()
        valid = torch.arange(t, device=waveforms.device)[None] < lengths[:, None]  # (B, T)
        # Zero the padding so whatever the caller left there (garbage, NaN) cannot leak in.
        waveforms = torch.where(valid, waveforms, torch.zeros_like(waveforms))
        if self.normalize_waveform:
            waveforms = normalize_per_clip(waveforms, valid)

        grad = contextlib.nullcontext() if not self.frozen else torch.no_grad()
        with grad:
            if wavlm.config.feat_extract_norm == "layer":
                # Per-frame LayerNorm conv stack: padding-safe, so one batched call with
                # WavLM's attention mask is exact.
                states = _run_wavlm(wavlm, waveforms, valid.long())
            else:
                states = _run_wavlm_per_length(wavlm, waveforms, lengths)
        if states.shape[0] != self.n_states:
            raise RuntimeError(
                f"WavLM returned {states.shape[0]} hidden states, not {self.n_states}"
            )
        f = int(n_frames.max())
        return states[:, :, :f], frame_padding_mask(n_frames, f)  # (S, B, F, H), (B, F)

    def encode_audio(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T) float32 at 16 kHz, (B,) valid samples -> (B, out_dim), NOT normalised."""
        states, padding = self.wavlm_states(waveforms, lengths)
        return self.head(states, padding)

    forward = encode_audio

    def min_samples(self) -> int:
        """Shortest clip (samples) that gives one WavLM frame: the conv receptive field."""
        field = 1
        for kernel, stride in reversed(
            list(zip(self.wavlm.config.conv_kernel, self.wavlm.config.conv_stride, strict=True))
        ):
            field = (field - 1) * stride + kernel
        return field

    def _check_inputs(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if waveforms.dim() != 2 or not waveforms.is_floating_point():
            raise ValueError(
                f"waveforms must be a (B, T) float tensor, got {waveforms.dtype} "
                f"{tuple(waveforms.shape)}"
            )
        b, t = waveforms.shape
        if lengths.shape != (b,) or lengths.is_floating_point():
            raise ValueError(
                f"lengths must be ({b},) integers, got {lengths.dtype} {tuple(lengths.shape)}"
            )
        lengths = lengths.to(waveforms.device).long()
        bad = ((lengths < 1) | (lengths > t)).nonzero().flatten().tolist()
        if bad:
            raise ValueError(
                f"lengths must be in 1..{t} (the padded length); rows {bad} have "
                f"{lengths[bad].tolist()}"
            )
        return lengths


def normalize_per_clip(waveforms: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance over each clip's valid samples, padding left at 0.

    (B, T), (B, T) bool -> (B, T). Same statistics as HF's ``Wav2Vec2FeatureExtractor``
    (population variance + 1e-7), computed on the valid part only.
    """
    keep = valid.to(waveforms.dtype)
    n = keep.sum(dim=1, keepdim=True)  # (B, 1)
    mean = (waveforms * keep).sum(dim=1, keepdim=True) / n
    var = (((waveforms - mean) * keep) ** 2).sum(dim=1, keepdim=True) / n
    return (waveforms - mean) / torch.sqrt(var + 1e-7) * keep


def _run_wavlm(
    wavlm: WavLMModel, waveforms: torch.Tensor, attention_mask: torch.Tensor | None
) -> torch.Tensor:
    """(B, T) -> all hidden states stacked (S, B, F, H)."""
    out = wavlm(waveforms, attention_mask=attention_mask, output_hidden_states=True)
    return torch.stack(out.hidden_states)


def _run_wavlm_per_length(
    wavlm: WavLMModel, waveforms: torch.Tensor, lengths: torch.Tensor
) -> torch.Tensor:
    """GroupNorm conv stacks normalise over time, so padding would shift every frame.

    Run each group of equal-length clips unpadded (a training batch of fixed windows is one
    group) and scatter the results into a zero-padded (S, B, F_max, H) tensor.
    """
    groups = [(int(n), (lengths == n).nonzero().flatten()) for n in torch.unique(lengths)]
    if len(groups) == 1:
        return _run_wavlm(wavlm, waveforms[:, : groups[0][0]], None)
    parts = [(rows, _run_wavlm(wavlm, waveforms[rows, :n], None)) for n, rows in groups]
    f_max = max(p.shape[2] for _, p in parts)
    s, _, _, h = parts[0][1].shape
    states = parts[0][1].new_zeros(s, waveforms.shape[0], f_max, h)
    for rows, part in parts:
        states[:, rows, : part.shape[2]] = part
    return states


def _looks_like_path(source: str) -> bool:
    """A hub id is ``name`` or ``org/name``; anything else is meant as a directory."""
    return source.startswith(("/", ".", "~")) or source.count("/") > 1 or "\\" in source


def load_wavlm(source: str, *, local_files_only: bool = False) -> WavLMModel:
    """``WavLMModel.from_pretrained`` with masking and layerdrop off, and clear errors.

    ``source`` is a local HF-format directory (loaded with ``local_files_only``) or a hub
    id (the HF cache, or the network unless ``local_files_only``). A checkpoint that leaves
    any model weight uninitialised is refused rather than silently half-random.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        _check_wavlm_dir(path)
        target, local_only = str(path), True
    elif _looks_like_path(source):
        raise WavLMLoadError(f"WavLM directory {source!r} not found")
    else:
        target, local_only = source, local_files_only
    try:
        model, info = WavLMModel.from_pretrained(
            target, local_files_only=local_only, output_loading_info=True, **WAVLM_OVERRIDES
        )
    except (OSError, ValueError, RuntimeError) as err:
        where = (
            f"directory {source!r}"
            if local_only and path.is_dir()
            else (
                f"{source!r}: not a local directory, and the Hugging Face hub/cache could not "
                "provide it (offline? Download it once with `huggingface-cli download "
                f"{source} --local-dir DIR` and point the config at DIR)"
            )
        )
        raise WavLMLoadError(f"cannot load WavLM from {where}: {_first_line(err)}") from err
    problems = {k: info.get(k) for k in ("missing_keys", "mismatched_keys") if info.get(k)}
    if problems:
        raise WavLMLoadError(
            f"WavLM {source!r}: the checkpoint does not cover the model: "
            + "; ".join(f"{k}: {sorted(map(str, v))[:10]}" for k, v in problems.items())
        )
    return model


def _check_wavlm_dir(path: Path) -> None:
    config = path / "config.json"
    if not config.is_file():
        raise WavLMLoadError(f"WavLM directory {path}: no config.json (not an HF model folder)")
    try:
        model_type = json.loads(config.read_text()).get("model_type")
    except (OSError, json.JSONDecodeError) as err:
        raise WavLMLoadError(f"{config}: unreadable ({err})") from err
    if model_type != "wavlm":
        raise WavLMLoadError(f"{config}: model_type is {model_type!r}, expected 'wavlm'")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def waveform_normalization(
    source: str, wavlm: WavLMModel, *, local_files_only: bool = False
) -> bool:
    """Whether the checkpoint expects per-clip zero-mean unit-variance input.

    Read from its ``preprocessor_config.json`` (``do_normalize``). Without one, fall back to
    the fairseq convention (LayerNorm conv stacks, the Large models, were trained on
    normalised audio; GroupNorm ones, the Base models, on raw audio) and warn.
    """
    path = Path(source).expanduser()
    target = str(path) if path.is_dir() else source
    try:
        extractor = Wav2Vec2FeatureExtractor.from_pretrained(
            target, local_files_only=local_files_only or path.is_dir()
        )
    except (OSError, ValueError):
        guess = wavlm.config.feat_extract_norm == "layer"
        warn_caller(
            f"WavLM {source!r} has no preprocessor_config.json; assuming do_normalize={guess} "
            f"from feat_extract_norm={wavlm.config.feat_extract_norm!r}"
        )
        return guess
    if extractor.sampling_rate != SAMPLE_RATE:
        raise WavLMLoadError(
            f"WavLM {source!r} expects {extractor.sampling_rate} Hz audio; this pipeline "
            f"feeds {SAMPLE_RATE} Hz"
        )
    return bool(extractor.do_normalize)


def build_audio_encoder(cfg: AudioEncoderConfig, *, local_files_only: bool = False) -> AudioEncoder:
    """Load WavLM from ``cfg.wavlm`` and put a freshly initialised head on top of it."""
    wavlm = load_wavlm(cfg.wavlm, local_files_only=local_files_only)
    normalize = waveform_normalization(cfg.wavlm, wavlm, local_files_only=local_files_only)
    return AudioEncoder(cfg, wavlm, normalize_waveform=normalize)


def frame_padding_mask(n_frames: torch.Tensor, n_max: int) -> torch.Tensor:
    """(B,) valid frame counts -> (B, n_max) bool, True on padded frames."""
    return torch.arange(n_max, device=n_frames.device)[None] >= n_frames[:, None]


__all__ = [
    "WAVLM_OVERRIDES",
    "AudioEncoder",
    "AudioEncoderConfig",
    "AudioHead",
    "MLP",
    "WavLMLoadError",
    "build_audio_encoder",
    "frame_padding_mask",
    "load_wavlm",
    "masked_mean",
    "normalize_per_clip",
    "waveform_normalization",
    "weighted_layer_sum",
]
