"""Use a trained run outside the workflow: ``wavbrivl.load(path)``.

``path`` is a run's ``audio_encoder.pt``, the run folder holding it
(``results/models/<run>/``), or a folder written by ``wavbrivl export``
(:mod:`wavbrivl.export`). The returned :class:`AudioModel` offers

- ``embed_audio(audio, sample_rate=...)``: g(audio) in the image space, L2-normalised;
- ``search(audio, embeddings, k)``: audio -> image retrieval over embedding Parquet files;
- ``classify(audio, labels, encoder)``: zero-shot through the image space's text side;
- ``generate(audio, vqgan=..., encoder=...)``: images steered towards g(audio);
- ``info``: what the model is (image space fingerprint, steps, window, metrics).

**How audio of any length is embedded.** Audio is decoded to 16 kHz mono and cut into
consecutive, non-overlapping windows of the run's training window ``window_s``; each window
is embedded as evaluation embeds a clip (``CrossModalMoCo.embed_audio`` with the true
length, padding masked), and the file's embedding is the mean of the window embeddings
weighted by their lengths, L2-normalised again. A clip no longer than one window is thus
embedded exactly as the evaluation stage embeds it (docs/stages.md, evaluate); a longer one
is the pooled average of all its windows rather than evaluation's single centred window,
so nothing of it is ignored. A final piece shorter than WavLM's receptive field (400 samples,
25 ms) gives no frame and is dropped; a file shorter than that is an error.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wavbrivl.audiofile import AudioFileError, iter_windows, to_mono_16k
from wavbrivl.extract.media import SAMPLE_RATE
from wavbrivl.warn import warn_caller

PathLike = str | os.PathLike
AudioInput = PathLike | np.ndarray | torch.Tensor
ARTEFACT_NAME = "audio_encoder.pt"


class ImageSpaceMismatch(ValueError):
    """Two artefacts from different frozen image spaces; the message names both fingerprints."""


class NoTextSide(ValueError):
    """The image space has no text tower, so zero-shot classification is not possible."""


def split_windows(samples: np.ndarray, window: int) -> Iterator[np.ndarray]:
    """An in-memory signal as the same consecutive windows a file is read in."""
    for start in range(0, len(samples), window):
        yield samples[start : start + window]


def check_same_space(ours: str | None, theirs: str | None, what: str, where: Any) -> None:
    """Refuse ``where`` (``what``: embeddings, a text encoder...) from another image space."""
    if ours is None:
        warn_caller(f"the model records no image space fingerprint; cannot check {where}")
        return
    if theirs != ours:
        raise ImageSpaceMismatch(
            f"{where}: {what} of image space {theirs or '(none)'}, but the model was trained "
            f"in image space {ours}; use {what} made by the encoder the model was trained on"
        )


@dataclass
class Match:
    """One search hit: the clip whose (clean-frame) image embedding is near the audio."""

    clip_id: str
    score: float  # cosine similarity


class AudioModel:
    """A trained audio encoder ready for use: see the module docstring."""

    def __init__(self, model: torch.nn.Module, info: dict[str, Any], device: torch.device):
        self.model = model.eval()
        self.info = info
        self.device = device
        self.dim: int = model.cfg.image_dim
        self.window = max(1, round(float(info["window_s"]) * SAMPLE_RATE))
        self.min_samples: int = model.audio_encoder.min_samples()

    @property
    def fingerprint(self) -> str | None:
        """The image space's fingerprint (None for a model trained before it was recorded)."""
        return self.info["image_space"]["fingerprint"]

    # -- embedding -------------------------------------------------------------------------

    @torch.no_grad()
    def embed_windows(self, windows: Iterable[np.ndarray], *, batch_size: int = 8) -> np.ndarray:
        """(D,) pooled embedding of consecutive 16 kHz windows (see the module docstring)."""
        total = np.zeros(self.dim, dtype=np.float64)
        weight = 0
        batch: list[np.ndarray] = []
        n_samples = 0

        def flush() -> None:
            nonlocal total, weight
            lengths = torch.tensor([len(w) for w in batch])
            padded = torch.zeros(len(batch), self.window)
            for i, w in enumerate(batch):
                padded[i, : len(w)] = torch.from_numpy(np.asarray(w, dtype=np.float32))
            emb = self.model.embed_audio(padded.to(self.device), lengths.to(self.device))
            emb = emb.float().cpu().numpy().astype(np.float64)
            total += (emb * lengths.numpy()[:, None]).sum(axis=0)
            weight += int(lengths.sum())
            batch.clear()

        for w in windows:
            n_samples += len(w)
            if len(w) < self.min_samples:
                continue  # too short for one WavLM frame: only the last window can be
            batch.append(w)
            if len(batch) == batch_size:
                flush()
        if batch:
            flush()
        if weight == 0:
            raise AudioFileError(
                f"too short: {n_samples} samples at {SAMPLE_RATE} Hz, one WavLM frame needs "
                f"{self.min_samples}"
            )
        norm = np.linalg.norm(total)
        return (total / norm if norm > 0 else total).astype(np.float32)

    def embed_one(self, audio: AudioInput, sample_rate: int | None = None) -> np.ndarray:
        """(D,) embedding of one file path or one array (``sample_rate`` required for arrays)."""
        if isinstance(audio, str | os.PathLike):
            try:
                return self.embed_windows(iter_windows(audio, self.window))
            except AudioFileError as exc:
                if str(exc).startswith("too short"):
                    raise AudioFileError(f"{audio}: {exc}") from None
                raise
        if sample_rate is None:
            raise ValueError("sample_rate is required for audio given as an array")
        if isinstance(audio, torch.Tensor):
            audio = audio.detach().cpu().numpy()
        samples = to_mono_16k(audio, sample_rate)
        return self.embed_windows(split_windows(samples, self.window))

    def embed_audio(
        self, audio: AudioInput | Sequence[AudioInput], sample_rate: int | None = None
    ) -> np.ndarray:
        """(N, D) float32 unit rows: one per file path or array in ``audio`` (one item is
        also accepted and gives (1, D)). Arrays are (T,) or (C, T) at ``sample_rate`` Hz and
        are resampled to 16 kHz mono; files are read by ffmpeg at any rate. The first bad
        input raises (:class:`~wavbrivl.audiofile.AudioFileError` for a file), naming it;
        :meth:`embed_files` instead reports each failure and goes on."""
        items = _as_items(audio)
        return (
            np.stack([self.embed_one(a, sample_rate) for a in items])
            if items
            else np.zeros((0, self.dim), np.float32)
        )

    def embed_files(
        self, paths: Iterable[PathLike], progress: Callable[[Iterable], Iterable] | None = None
    ) -> Iterator[tuple[Path, np.ndarray | None, str | None]]:
        """``(path, embedding, None)`` or ``(path, None, error line)`` for each file."""
        paths = list(paths)
        for path in progress(paths) if progress else paths:
            try:
                yield Path(path), self.embed_one(path), None
            except AudioFileError as exc:
                yield Path(path), None, str(exc)

    # -- search and classification ---------------------------------------------------------

    def search(
        self,
        audio: AudioInput | Sequence[AudioInput] | np.ndarray,
        embeddings: PathLike | Sequence[PathLike],
        k: int = 5,
        *,
        sample_rate: int | None = None,
    ) -> list[list[Match]]:
        """The ``k`` clips whose clean-frame image embeddings (view 0 of the embedding
        Parquet files, :mod:`wavbrivl.embed.store`) are nearest to each audio, best first.

        Files of another image space than the model's are refused, naming both fingerprints.
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        ids, matrix = self.image_index(embeddings)
        queries = self.embed_audio(audio, sample_rate)
        return rank(queries, ids, matrix, k)

    def image_index(
        self, embeddings: PathLike | Sequence[PathLike]
    ) -> tuple[list[str], np.ndarray]:
        """``(clip_ids, (M, D))``: the clean-frame rows of embedding files of the model's
        image space (files of another space are refused, naming both fingerprints)."""
        from wavbrivl.embed.store import read_common_header, read_embeddings

        files = [embeddings] if isinstance(embeddings, str | os.PathLike) else list(embeddings)
        header = read_common_header(files)
        check_same_space(self.fingerprint, header.fingerprint, "embeddings", header.path)
        return read_embeddings(files, view=0)

    def classify(
        self,
        audio: AudioInput | Sequence[AudioInput],
        labels: Sequence[str],
        encoder: Any,
        *,
        template: str = "{}",
        sample_rate: int | None = None,
    ) -> list[dict[str, float]]:
        """Zero-shot: for each audio, a softmax over ``labels`` of its cosine similarity
        with ``encoder.encode_text(template.format(label))``, the labels in that order.

        ``encoder`` is the frozen image encoder of the run's space (``wavbrivl.encoders``);
        it must offer ``encode_text`` (a space with a text side) and have the model's
        fingerprint. Scaled by 100 before the softmax, as CLIP-style zero-shot does.
        """
        text = self.text_embeddings(labels, encoder, template=template)
        queries = self.embed_audio(audio, sample_rate)
        return [dict(zip(labels, map(float, p), strict=True)) for p in zero_shot(queries, text)]

    def text_embeddings(
        self, labels: Sequence[str], encoder: Any, *, template: str = "{}"
    ) -> np.ndarray:
        """(L, D) unit rows: the prompts of ``labels`` through the encoder's text side, once
        the encoder is checked to be of the model's image space and to have a text side."""
        if not labels:
            raise ValueError("classify needs at least one label")
        name = getattr(encoder, "name", type(encoder).__name__)
        check_same_space(
            self.fingerprint, getattr(encoder, "fingerprint", None), "a text encoder", name
        )
        encode_text = getattr(encoder, "encode_text", None)
        if encode_text is None:
            raise NoTextSide(
                f"the run's image space ({name}, fingerprint {self.fingerprint}) has no text "
                "side: zero-shot classification needs an encoder with encode_text"
            )
        with torch.no_grad():
            text = encode_text([template.format(label) for label in labels])
        text = torch.as_tensor(text).float().cpu()
        return torch.nn.functional.normalize(text, dim=-1).numpy()

    # -- generation ----------------------------------------------------------------------

    def generate(
        self,
        audio: AudioInput | Sequence[AudioInput],
        *,
        vqgan: torch.nn.Module,
        encoder: Any,
        cfg: Any = None,
        names: Sequence[str] | None = None,
        sample_rate: int | None = None,
        log: Callable[[str], None] = lambda _line: None,
    ) -> list[Any]:
        """One image per audio, steered towards its embedding by the run's generator: the
        VQGAN latent loop of :mod:`wavbrivl.generate.loop` with the frozen ``encoder`` of the
        model's image space (refused, naming both fingerprints, if it is another).

        ``cfg`` is a :class:`~wavbrivl.generate.loop.GenerateConfig` (default: the config
        schema's defaults); ``names`` label the results (default ``audio0``, ``audio1``...) and
        fix each one's seed as the workflow does (:func:`wavbrivl.generate.stage.clip_seed`).
        Returns :class:`~wavbrivl.generate.loop.GenerationResult` objects (``.image`` is PIL).
        """
        from wavbrivl.generate.loop import GenerateConfig, generate
        from wavbrivl.generate.stage import clip_seed

        name = getattr(encoder, "name", type(encoder).__name__)
        check_same_space(
            self.fingerprint, getattr(encoder, "fingerprint", None), "an image encoder", name
        )
        cfg = cfg or GenerateConfig()
        targets = self.embed_audio(audio, sample_rate)
        names = list(names) if names is not None else [f"audio{i}" for i in range(len(targets))]
        if len(names) != len(targets):
            raise ValueError(f"{len(names)} names for {len(targets)} audio inputs")
        return generate(
            vqgan,
            encoder,
            torch.from_numpy(targets),
            cfg,
            clip_ids=names,
            seeds=[clip_seed(cfg.seed, n) for n in names],
            device=self.device,
            log=log,
        )


def zero_shot(audio: np.ndarray, text: np.ndarray, scale: float = 100.0) -> np.ndarray:
    """(N, D), (L, D) unit rows -> (N, L) softmax of ``scale`` x cosine similarity."""
    logits = scale * (audio.astype(np.float64) @ text.astype(np.float64).T)
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def rank(queries: np.ndarray, ids: Sequence[str], matrix: np.ndarray, k: int) -> list[list[Match]]:
    """The ``k`` best rows of ``matrix`` (unit rows) per query by cosine, ties by clip id."""
    if matrix.shape[0] == 0:
        return [[] for _ in range(len(queries))]
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    unit = matrix / np.where(norms > 0, norms, 1.0)
    scores = queries.astype(np.float64) @ unit.astype(np.float64).T  # (N, M)
    out = []
    for row in scores:
        order = sorted(range(len(ids)), key=lambda j: (-row[j], ids[j]))[:k]
        out.append([Match(ids[j], float(row[j])) for j in order])
    return out


def _as_items(audio: Any) -> list[Any]:
    if isinstance(audio, str | os.PathLike):
        return [audio]
    if isinstance(audio, np.ndarray | torch.Tensor):
        # One (T,) signal or (C, T) multichannel signal: a list of signals is a list.
        return [audio]
    return list(audio)


# -- loading -------------------------------------------------------------------------------


def resolve_wavlm(recorded: str, artefact: Path) -> str:
    """The recorded WavLM directory, found either as given or relative to the workflow's
    working directory (``<dir>/results/models/<run>/audio_encoder.pt`` -> ``<dir>``)."""
    if Path(recorded).expanduser().is_dir() or Path(recorded).is_absolute():
        return recorded
    parents = artefact.resolve().parents
    if len(parents) > 3 and (parents[3] / recorded).is_dir():
        return str(parents[3] / recorded)
    return recorded


def artefact_info(state: dict[str, Any], source: Path) -> dict[str, Any]:
    """What :class:`AudioModel` says about itself, from ``audio_encoder.pt``'s contents."""
    from wavbrivl.configs import schema_default
    from wavbrivl.train.checkpoint import audio_model_fingerprint

    window_s = state.get("train_config", {}).get("window_s", schema_default("train", "window_s"))
    return {
        "source": str(source),
        "format": state["format"],
        "step": state.get("step"),
        "window_s": window_s,
        "sample_rate": SAMPLE_RATE,
        "image_space": {
            "fingerprint": state.get("image_encoder_fingerprint"),
            "dim": state["moco_config"]["image_dim"],
        },
        "model_fingerprint": audio_model_fingerprint(state),
        "audio_config": state["audio_config"],
        "moco_config": state["moco_config"],
        "train_config": state.get("train_config", {}),
        "metrics": state.get("metrics", {}),
    }


def find_artefact(path: PathLike) -> Path:
    """``audio_encoder.pt`` itself, or the one inside a run folder; one-line errors."""
    path = Path(path)
    if path.is_dir():
        if (path / ARTEFACT_NAME).is_file():
            return path / ARTEFACT_NAME
        raise FileNotFoundError(
            f"{path}: neither an export folder (config.json + model.safetensors) nor a run "
            f"folder holding {ARTEFACT_NAME}"
        )
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such model file or folder")
    return path


def load(
    path: PathLike, *, device: str | torch.device = "cpu", wavlm: str | None = None
) -> AudioModel:
    """The trained model at ``path`` (see the module docstring), in eval mode on ``device``.

    ``wavlm`` replaces the WavLM directory recorded at training time (another machine); an
    export folder carries its WavLM's configuration and needs none.
    """
    from wavbrivl.devices import pick_device
    from wavbrivl.export import is_export, load_export
    from wavbrivl.train.checkpoint import build_trained_model, read_audio_encoder

    device = pick_device(str(device))
    if is_export(path):
        model, info = load_export(path, device=device)
        return AudioModel(model, info, device)
    artefact = find_artefact(path)
    state = read_audio_encoder(artefact)
    chosen = wavlm or resolve_wavlm(state["audio_config"]["wavlm"], artefact)
    model = build_trained_model(state, device=device, wavlm=chosen)
    return AudioModel(model, artefact_info(state, artefact), device)


__all__ = [
    "AudioModel",
    "ImageSpaceMismatch",
    "Match",
    "NoTextSide",
    "check_same_space",
    "load",
    "rank",
    "split_windows",
    "zero_shot",
]
