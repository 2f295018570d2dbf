"""Audio models the benchmark harness scores, behind one interface, built by name.

An audio model here is what the harness needs to score any audio encoder the same way:

- ``name`` (what the weights are), ``sample_rate`` (Hz of the arrays ``embed`` takes), ``dim``
  (D), ``fingerprint`` (hex SHA-256 of what changes its embeddings), ``min_samples`` (the
  shortest clip it can embed);
- ``space``: the frozen image--text space its embeddings live in (:class:`Space`: a name and,
  when known, the fingerprint of that space's encoder), so the harness pairs it with the text
  tower of the same space (:func:`check_text_side`);
- ``embed(clips)``: a list of 1-D float32 arrays at ``sample_rate`` -> (N, D) float32 unit
  rows. Memory is bounded: each clip is cut into consecutive windows of ``window_s`` seconds,
  windows are embedded in batches of ``batch_size``, and a clip's embedding is the mean of its
  window embeddings weighted by their lengths, L2-normalised again (a final piece shorter
  than ``min_samples`` is dropped). A clip no longer than one window is embedded whole.
  A clip that cannot be embedded raises :class:`AudioModelError` naming its index;
  :func:`embed_clips` instead skips it with the reason, for the harness's status rows.

Entries of :data:`AUDIO_MODELS`:

``wavbrivl``
    A trained run (``audio_encoder.pt`` or its run folder) or an export folder, through
    :func:`wavbrivl.load` (docs/usage.md). Windows and pooling are the run's own
    (``AudioModel.embed_windows``: the training window, evaluation's embedding of a window).
    Its space is the image encoder the run was trained on (the fingerprint the run records).

``wav2clip``
    Wav2CLIP (Wu et al., ICASSP 2022), the ``wav2clip`` PyPI package's ResNet-18 on log
    spectrograms of 16 kHz audio plus its audio MLP (``ResNetExtractor`` with
    ``transform=True``, what ``wav2clip.get_model()`` builds), 512-d, in the image space of
    OpenAI's CLIP ViT-B/32 (HF ``openai/clip-vit-base-patch32``, OpenCLIP ``ViT-B-32`` /
    ``openai``): zero-shot needs that CLIP's text tower. Weights come from a LOCAL file in the
    release format of ``Wav2CLIP.pt`` (never downloaded here): what ``get_model()`` passes
    to ``ResNetExtractor`` is ``torch.load`` of that file, a flat state dict of the pre-training
    module whose ``audio_encoder.*`` entries are the ResNet's weights (spectrogram window
    included) and ``audio_transform.*`` the MLP's (``sequential.0`` / ``sequential.3``); other
    entries (``image_transform.*``) are ignored, as the package ignores them. Plain tensors
    need no pickled code, so the file is read with ``weights_only=True``; a file that needs
    more is refused, naming what it would run (:mod:`wavbrivl.checkpoints`), and there is no
    opt-in to unpickle it, since the release format never needs one.

    The package's ``ResNet.forward`` standardises the log spectrogram with the mean and std of
    the whole batch, so its embedding of a clip depends on the other clips batched with it.
    Here each window is standardised on its own: a clip of at most ``window_s`` (default
    10 s, VGGSound's clip length; ESC-50 clips are 5 s, UrbanSound8K's at most 4 s) gets
    exactly ``wav2clip.embed_audio(clip, model)`` of the package called on that clip alone,
    normalised, whatever else is in the batch. Windows of equal length share a batch.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
import torch

from wavbrivl.api import ImageSpaceMismatch, split_windows
from wavbrivl.checkpoints import CheckpointError, check_state_fits, read_checkpoint
from wavbrivl.warn import warn_caller

PathLike = str | os.PathLike
SAMPLE_RATE = 16_000

#: The image--text space Wav2CLIP was distilled into: OpenAI's CLIP ViT-B/32.
WAV2CLIP_SPACE = "openai/clip-vit-base-patch32"
WAV2CLIP_DIM = 512
#: The shortest input Wav2CLIP's spectrogram takes: its centred STFT reflect-pads
#: n_fft / 2 = 256 samples on each side, which needs more samples than that.
WAV2CLIP_MIN_SAMPLES = 257


class AudioModelError(ValueError):
    """A model cannot be built, or a clip cannot be embedded; the message says which."""


@dataclass(frozen=True)
class Space:
    """The frozen image--text space an audio model's embeddings live in."""

    name: str  # the space's model, e.g. "openai/clip-vit-base-patch32"
    fingerprint: str | None  # the fingerprint of that space's encoder, when known
    dim: int


class AudioModel(Protocol):
    """What the benchmark harness relies on (see the module docstring)."""

    name: str
    sample_rate: int
    dim: int
    fingerprint: str
    space: Space
    min_samples: int

    def embed(self, clips: Sequence[np.ndarray]) -> np.ndarray: ...

    def metadata(self) -> dict[str, Any]: ...


def clip_problem(clip: Any, min_samples: int) -> str | None:
    """Why ``clip`` cannot be embedded (not a 1-D array, non-finite, too short), or None."""
    shape = np.shape(clip)
    if len(shape) != 1:
        return f"expected a 1-D array of samples, got shape {shape}"
    if shape[0] < min_samples:
        return f"too short: {shape[0]} samples, the model needs at least {min_samples}"
    if not np.isfinite(clip).all():
        return "holds NaN or infinite samples"
    return None


def _checked(clips: Sequence[np.ndarray], min_samples: int) -> list[np.ndarray]:
    out = []
    for i, clip in enumerate(clips):
        problem = clip_problem(clip, min_samples)
        if problem is not None:
            raise AudioModelError(f"clip {i}: {problem}")
        out.append(np.asarray(clip, dtype=np.float32))
    return out


def _unit_rows(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return (rows / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def _identity_sha256(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


# -- wavbrivl: a trained run or an export ---------------------------------------------------


class WavBriVLAudioModel:
    """A trained WavBriVL audio encoder, loaded by :func:`wavbrivl.load`."""

    sample_rate = SAMPLE_RATE

    def __init__(self, model: Any, *, batch_size: int = 8, space_name: str | None = None):
        self.model = model  # wavbrivl.api.AudioModel
        self.batch_size = batch_size
        self.dim: int = model.dim
        self.min_samples: int = model.min_samples
        self.window_s = model.window / SAMPLE_RATE
        self.fingerprint: str = model.info["model_fingerprint"]
        self.name = f"wavbrivl({model.info['source']})"
        space_fp = model.fingerprint
        self.space = Space(
            name=space_name or f"image space {space_fp or '(not recorded)'}",
            fingerprint=space_fp,
            dim=model.dim,
        )

    def embed(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        """(N, D) unit rows: each clip pooled over the run's windows (module docstring)."""
        rows = [
            self.model.embed_windows(
                split_windows(clip, self.model.window), batch_size=self.batch_size
            )
            for clip in _checked(clips, self.min_samples)
        ]
        return np.stack(rows) if rows else np.zeros((0, self.dim), np.float32)

    def metadata(self) -> dict[str, Any]:
        return _metadata(self, "wavbrivl", source=self.model.info["source"])


def build_wavbrivl(
    path: PathLike,
    *,
    device: str = "cpu",
    wavlm: str | None = None,
    batch_size: int = 8,
    space_name: str | None = None,
) -> WavBriVLAudioModel:
    """A run's ``audio_encoder.pt``, its run folder, or an export folder (``wavbrivl.load``).

    ``space_name`` names the run's image space in tables (default: its fingerprint)."""
    from wavbrivl.api import load

    return WavBriVLAudioModel(
        load(path, device=device, wavlm=wavlm), batch_size=batch_size, space_name=space_name
    )


# -- wav2clip: the peer, from a local release-format checkpoint ------------------------------


def read_wav2clip_checkpoint(path: PathLike) -> tuple[dict, dict]:
    """``(encoder_state, transform_state)`` from a file in ``Wav2CLIP.pt``'s release format
    (weights only; errors name the file and say what is missing)."""
    payload = read_checkpoint(path)
    parts: dict[str, dict] = {"audio_encoder": {}, "audio_transform": {}}
    for key, value in payload.items():
        head, _, rest = str(key).partition(".")
        if head in parts:
            parts[head][rest] = value
    for head, state in parts.items():
        if not state:
            raise CheckpointError(
                f"{path}: not a Wav2CLIP release checkpoint: no {head}.* weights; "
                f"top-level keys: {sorted(map(str, payload))[:10]}"
            )
    return parts["audio_encoder"], parts["audio_transform"]


class Wav2CLIPAudioModel:
    """The ``wav2clip`` package's ResNet-18 + audio MLP with release-format weights."""

    sample_rate = SAMPLE_RATE
    dim = WAV2CLIP_DIM
    min_samples = WAV2CLIP_MIN_SAMPLES

    def __init__(
        self,
        extractor: torch.nn.Module,
        *,
        weights_sha256: str,
        source: str,
        device: torch.device,
        window_s: float = 10.0,
        batch_size: int = 16,
        space_fingerprint: str | None = None,
    ):
        self.extractor = extractor.eval().to(device)  # wav2clip.model.encoder.ResNetExtractor
        self.device = device
        self.source = source
        self.window_s = window_s
        self.window = round(window_s * SAMPLE_RATE)
        if self.window < self.min_samples:
            raise AudioModelError(
                f"window_s={window_s}: a window needs at least {self.min_samples} samples"
            )
        self.batch_size = batch_size
        self.name = f"wav2clip({source})"
        self.fingerprint = _identity_sha256(
            {
                "family": "wav2clip",
                "weights_sha256": weights_sha256,
                "window": self.window,
                "sample_rate": SAMPLE_RATE,
            }
        )
        self.space = Space(WAV2CLIP_SPACE, space_fingerprint, WAV2CLIP_DIM)

    @torch.no_grad()
    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """(B, T) equal-length windows -> (B, 512), each window standardised on its own
        (the package's ``ResNet.forward`` on a batch of one, then its MLP)."""
        enc = self.extractor.encoder
        x = enc.spectrogram(windows.unsqueeze(1))  # (B, 1, F, frames)
        x = torch.log(x + 1e-7)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        std = x.std(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) / (std + 1e-9)
        x = enc.maxpool(enc.relu(enc.bn1(enc.conv1(x))))
        x = enc.layer4(enc.layer3(enc.layer2(enc.layer1(x))))
        x = enc.avgpool(x).flatten(1)  # (B, 512)
        return self.extractor.transform(x)

    def embed(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        """(N, 512) unit rows: windows of equal length batched, pooled per clip."""
        clips = _checked(clips, self.min_samples)
        totals = np.zeros((len(clips), self.dim), dtype=np.float64)
        by_length: dict[int, list[tuple[int, np.ndarray]]] = {}
        for i, clip in enumerate(clips):
            for piece in split_windows(clip, self.window):
                if len(piece) >= self.min_samples:  # only a final piece can be shorter
                    by_length.setdefault(len(piece), []).append((i, piece))
        for length, pieces in by_length.items():
            for start in range(0, len(pieces), self.batch_size):
                batch = pieces[start : start + self.batch_size]
                x = torch.from_numpy(np.stack([p for _, p in batch])).to(self.device)
                emb = self.forward(x).double().cpu().numpy()  # (B, 512)
                for (i, _), row in zip(batch, emb, strict=True):
                    totals[i] += length * row
        return _unit_rows(totals)

    def metadata(self) -> dict[str, Any]:
        return _metadata(self, "wav2clip", source=self.source)


def build_wav2clip(
    checkpoint: PathLike,
    *,
    device: str = "cpu",
    window_s: float = 10.0,
    batch_size: int = 16,
    space_fingerprint: str | None = None,
) -> Wav2CLIPAudioModel:
    """Wav2CLIP with weights from a local file in the release format of ``Wav2CLIP.pt``.

    ``space_fingerprint``: the fingerprint of the local CLIP ViT-B/32 encoder whose text
    tower scores it (``wavbrivl.encoders``), when known; then :func:`check_text_side`
    refuses any other."""
    from wav2clip.model.encoder import MLPLayers, ResNetExtractor

    from wavbrivl.checkpoints import state_dict_sha256
    from wavbrivl.devices import pick_device

    encoder_state, transform_state = read_wav2clip_checkpoint(checkpoint)
    extractor = ResNetExtractor(scenario="supervise")  # the architecture, random weights
    extractor.transform = MLPLayers()
    what = "weights do not match the wav2clip package's"
    check_state_fits(extractor.encoder, encoder_state, checkpoint, f"audio_encoder {what} ResNet")
    check_state_fits(
        extractor.transform, transform_state, checkpoint, f"audio_transform {what} MLP"
    )
    extractor.encoder.load_state_dict(encoder_state)
    extractor.transform.load_state_dict(transform_state)
    weights = {f"audio_encoder.{k}": v for k, v in extractor.encoder.state_dict().items()}
    weights |= {f"audio_transform.{k}": v for k, v in extractor.transform.state_dict().items()}
    return Wav2CLIPAudioModel(
        extractor,
        weights_sha256=state_dict_sha256(weights),
        source=str(checkpoint),
        device=pick_device(device),
        window_s=window_s,
        batch_size=batch_size,
        space_fingerprint=space_fingerprint,
    )


# -- the registry and what the harness calls -------------------------------------------------

#: Audio-model builders by name; ``AUDIO_MODELS[name](path, **kwargs) -> AudioModel``.
AUDIO_MODELS: dict[str, Callable[..., AudioModel]] = {
    "wavbrivl": build_wavbrivl,
    "wav2clip": build_wav2clip,
}


def build_audio_model(name: str, path: PathLike, **kwargs: Any) -> AudioModel:
    """``build_audio_model("wav2clip", "weights/Wav2CLIP.pt")``, ``("wavbrivl", run_dir)``."""
    try:
        builder = AUDIO_MODELS[name]
    except KeyError:
        raise AudioModelError(
            f"unknown audio model {name!r}; known: {sorted(AUDIO_MODELS)}"
        ) from None
    return builder(path, **kwargs)


@dataclass
class Embedded:
    """:func:`embed_clips`' answer: rows for the clips that could be embedded."""

    embeddings: np.ndarray  # (K, D) unit rows, in the order of ``kept``
    kept: list[int]  # indices into the clips given
    skipped: dict[int, str]  # index -> reason, for every clip not embedded


def embed_clips(
    model: AudioModel,
    clips: Sequence[np.ndarray],
    *,
    chunk: int = 64,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> Embedded:
    """Embed what can be embedded, ``chunk`` clips per ``model.embed`` call, and give the
    reason for each clip that cannot (never raises for a bad clip)."""
    skipped = {}
    kept = []
    for i, clip in enumerate(clips):
        problem = clip_problem(clip, model.min_samples)
        if problem is None:
            kept.append(i)
        else:
            skipped[i] = problem
    starts = range(0, len(kept), chunk)
    rows = [
        model.embed([clips[i] for i in kept[start : start + chunk]])
        for start in (progress(starts) if progress else starts)
    ]
    embeddings = np.concatenate(rows) if rows else np.zeros((0, model.dim), np.float32)
    return Embedded(embeddings, kept, skipped)


def check_text_side(model: AudioModel, encoder: Any) -> None:
    """Refuse a text encoder of another space than ``model``'s, naming both.

    The fingerprints decide when the model's space records one; without it (a Wav2CLIP
    built without ``space_fingerprint``) only the dimension can be checked, and a warning
    names the space the text tower must come from."""
    name = getattr(encoder, "name", type(encoder).__name__)
    theirs = getattr(encoder, "fingerprint", None)
    if model.space.fingerprint is not None and theirs != model.space.fingerprint:
        raise ImageSpaceMismatch(
            f"{name}: text encoder of image space {theirs or '(none)'}, but {model.name} "
            f"lives in image space {model.space.name} ({model.space.fingerprint})"
        )
    if getattr(encoder, "dim", None) != model.dim:
        raise ImageSpaceMismatch(
            f"{name}: text encoder of dimension {getattr(encoder, 'dim', None)}, but "
            f"{model.name} embeds into {model.dim} dimensions ({model.space.name})"
        )
    if model.space.fingerprint is None:
        warn_caller(
            f"{model.name} records no fingerprint of its space; cannot check that {name} is "
            f"{model.space.name}"
        )


def _metadata(model: Any, family: str, **extra: Any) -> dict[str, Any]:
    """What results files record about the audio model."""
    return {
        "name": model.name,
        "family": family,
        "fingerprint": model.fingerprint,
        "sample_rate": model.sample_rate,
        "dim": model.dim,
        "window_s": model.window_s,
        "space": asdict(model.space),
        **extra,
    }


__all__ = [
    "AUDIO_MODELS",
    "WAV2CLIP_SPACE",
    "AudioModel",
    "AudioModelError",
    "Embedded",
    "Space",
    "Wav2CLIPAudioModel",
    "WavBriVLAudioModel",
    "build_audio_model",
    "build_wav2clip",
    "build_wavbrivl",
    "check_text_side",
    "clip_problem",
    "embed_clips",
    "read_wav2clip_checkpoint",
]
