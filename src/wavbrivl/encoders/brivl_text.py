"""The BriVL text encoder (released BriVL-1.0), written to match the public model exactly.

Pipeline for a batch of B texts, tokenised to exactly ``max_tokens`` ids (padded):

    BERT (chinese-roberta-wwm-ext)   (B, T) ids            -> (B, T, H)   ["backbone.bert"]
    L2 norm per token                (B, T, H)
    transformer encoder, pad masked  (B, T, H)             -> (B, T, H)   ["textAtt"]
    masked mean over real tokens     (B, T, H)             -> (B, H)
    Linear-ReLU-Linear               (B, H)                -> (B, D)      ["textFC"]
    L2 norm                          (B, D)

Parameter names equal the public ``TextLearnableEncoder`` (``backbone.bert.*``,
``learnable.textFC.*``, ``learnable.textAtt.*``), so the official checkpoint's
``textencoder.*`` entries load strictly. One public quirk is kept on purpose because the
released weights were trained with it: BERT is called on the ids alone, *without* an attention
mask, so it attends to the ``[PAD]`` tokens too; the padding mask only enters the 4-layer
transformer and the mean. Texts are therefore always padded to ``max_tokens`` (80), as the
public dataset code does: a shorter padding would change every embedding.

The BERT architecture comes from the ``config.json`` of a local Hugging Face folder of
``hfl/chinese-roberta-wwm-ext`` (which also holds the tokenizer's ``vocab.txt``); its weights
come from the BriVL checkpoint (BriVL fine-tuned BERT's last layers). docs/stages.md, "The
BriVL text encoder", says what users need.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from wavbrivl.checkpoints import (
    SHOW,
    CheckpointError,
    check_state_fits,
    read_checkpoint,
    state_dict_entry,
)
from wavbrivl.configs import from_mapping
from wavbrivl.hashing import sha256_of
from wavbrivl.nn_blocks import MLP
from wavbrivl.warn import warn_caller

TEXT_PREFIX = "textencoder."
#: Buffers that transformers < 4.31 saved with BERT's weights (the released checkpoint was
#: written with 4.5.1) and later versions rebuild instead: accepted only with these values.
LEGACY_BUFFERS = ("backbone.bert.embeddings.position_ids",)
#: The BERT fields read from the folder's config.json (the rest of BertConfig is unused).
BERT_FIELDS = {
    "vocab_size": "vocab_size",
    "hidden_size": "hidden_size",
    "num_hidden_layers": "bert_layers",
    "num_attention_heads": "bert_heads",
    "intermediate_size": "intermediate_size",
    "hidden_act": "hidden_act",
    "max_position_embeddings": "max_position_embeddings",
    "type_vocab_size": "type_vocab_size",
    "layer_norm_eps": "layer_norm_eps",
}


class TextFolderError(ValueError):
    """The tokenizer/BERT folder is missing or does not hold a BERT tokenizer and config."""


@dataclass(frozen=True)
class BriVLTextConfig:
    """Architecture of the BriVL text encoder; defaults are the released BriVL-1.0, whose
    BERT is ``hfl/chinese-roberta-wwm-ext`` (a BERT-base with a 21128-piece Chinese vocab)."""

    # BERT (its config.json); hidden_size is TEXT_FEATURE_DIM of the public config.
    vocab_size: int = 21128
    hidden_size: int = 768
    bert_layers: int = 12
    bert_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    # BriVL's head on top of BERT.
    n_layers: int = 4  # TEXT_TRANSFORMER_LAYER
    n_heads: int = 4  # TEXT_TRANSFORMER_HEAD
    ff_dim: int = 2048  # transformer feed-forward width (torch default in the public code)
    dropout: float = 0.1  # torch default in the public code; inactive in eval mode
    out_dim: int = 2048  # D: the joint space (textFC hidden and output width = IMG_FEATURE_DIM)
    max_tokens: int = 80  # MAX_TEXT_LEN: [CLS] + up to 78 word pieces + [SEP], padded

    def to_dict(self) -> dict[str, Any]:
        """Plain types only, for JSON fingerprints."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> BriVLTextConfig:
        return from_mapping(cls, values, "BriVLTextConfig")

    def bert_config(self):
        """The transformers ``BertConfig`` of the backbone (dropouts are off in eval mode)."""
        from transformers import BertConfig

        return BertConfig(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.bert_layers,
            num_attention_heads=self.bert_heads,
            intermediate_size=self.intermediate_size,
            hidden_act=self.hidden_act,
            max_position_embeddings=self.max_position_embeddings,
            type_vocab_size=self.type_vocab_size,
            layer_norm_eps=self.layer_norm_eps,
        )

    def with_bert_folder(self, folder: str | os.PathLike) -> BriVLTextConfig:
        """This head with the BERT architecture of ``folder/config.json`` (an HF BERT folder)."""
        values = read_bert_config(folder)
        return dataclasses.replace(self, **{ours: values[hf] for hf, ours in BERT_FIELDS.items()})


#: The released BriVL-1.0 text encoder (checkpoint BriVL-1.0-5500w.pth, 2048-d output).
BRIVL_TEXT_1_0 = BriVLTextConfig()

#: The same architecture at toy size for tests and the demo (untrained), matching
#: TINY_BRIVL's 128-d output; max_tokens stays 80.
TINY_BRIVL_TEXT = BriVLTextConfig(
    vocab_size=64,
    hidden_size=32,
    bert_layers=2,
    bert_heads=4,
    intermediate_size=64,
    max_position_embeddings=128,
    n_layers=2,
    n_heads=4,
    ff_dim=64,
    out_dim=128,
)


def read_bert_config(folder: str | os.PathLike) -> dict[str, Any]:
    """The BERT fields of ``folder/config.json``; one-line errors name the file and key."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise TextFolderError(
            f"{path}: not found; the text folder must be a local copy of "
            "hfl/chinese-roberta-wwm-ext with config.json and vocab.txt (weights/README.md)"
        )
    try:
        # json decodes bytes as UTF-8 itself: the locale's encoding plays no part
        values = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as err:
        raise TextFolderError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(values, dict) or values.get("model_type") != "bert":
        model_type = values.get("model_type") if isinstance(values, dict) else None
        raise TextFolderError(f"{path}: not a BERT config (model_type: {model_type})")
    missing = [key for key in BERT_FIELDS if key not in values]
    if missing:
        raise TextFolderError(f"{path}: BERT config lacks {missing}")
    return values


class BriVLTextEncoder(nn.Module):
    """BriVL text tower: padded token ids + lengths -> unit-norm embeddings (B, out_dim).

    Always frozen: no parameter gradients, pinned in eval mode (BERT's and the transformer's
    dropout off even under a parent's ``.train()``).
    """

    def __init__(self, cfg: BriVLTextConfig = BRIVL_TEXT_1_0) -> None:
        super().__init__()
        from transformers import BertModel

        self.cfg = cfg
        # BertModel with its pooler: the checkpoint holds pooler.dense.* (unused here).
        self.backbone = nn.ModuleDict({"bert": BertModel(cfg.bert_config())})
        h = cfg.hidden_size
        layer = nn.TransformerEncoderLayer(
            d_model=h,
            nhead=cfg.n_heads,
            dim_feedforward=cfg.ff_dim,
            dropout=cfg.dropout,
            batch_first=True,  # (B, T, H); parameter names do not depend on the layout
        )
        # Insertion order = the public module's, so state_dict() lists keys in the same order.
        self.learnable = nn.ModuleDict(
            {
                "textFC": MLP(h, cfg.out_dim, cfg.out_dim),  # the public ``FakeTransformer``
                "textAtt": nn.TransformerEncoder(
                    layer, num_layers=cfg.n_layers, enable_nested_tensor=False
                ),
            }
        )
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> BriVLTextEncoder:
        return super().train(False)  # frozen: never dropout

    def encode_tokens(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """input_ids: (B, max_tokens) ids padded with [PAD]; lengths: (B,) real tokens
        ([CLS] and [SEP] included, >= 1). Returns (B, out_dim) unit vectors."""
        t = self.cfg.max_tokens
        if input_ids.dim() != 2 or input_ids.shape[1] != t:
            raise ValueError(f"input_ids must be (B, {t}), got {tuple(input_ids.shape)}")
        b = input_ids.shape[0]
        if lengths.shape != (b,) or lengths.is_floating_point():
            raise ValueError(f"lengths must be ({b},) integers, got {tuple(lengths.shape)}")
        if bool((lengths < 1).any()) or bool((lengths > t).any()):
            raise ValueError(f"lengths must be in 1..{t}, got {lengths.tolist()}")
        lengths = lengths.to(input_ids.device)
        padding = torch.arange(t, device=input_ids.device)[None] >= lengths[:, None]  # (B, T)

        # No attention_mask: BERT sees the [PAD] tokens, as BriVL was trained (module doc).
        tokens = self.backbone["bert"](input_ids=input_ids).last_hidden_state  # (B, T, H)
        tokens = F.normalize(tokens, dim=-1)
        tokens = self.learnable["textAtt"](tokens, src_key_padding_mask=padding)  # (B, T, H)
        keep = (~padding).to(tokens.dtype).unsqueeze(-1)  # (B, T, 1)
        pooled = (tokens * keep).sum(dim=1) / keep.sum(dim=1)  # (B, H)
        return F.normalize(self.learnable["textFC"](pooled), dim=-1)  # (B, D)

    forward = encode_tokens


class BriVLTokenizer:
    """hfl/chinese-roberta-wwm-ext's WordPiece tokenizer from a LOCAL folder (``vocab.txt``).

    Every text becomes exactly ``max_tokens`` ids: ``[CLS]``, its word pieces, ``[SEP]``,
    then ``[PAD]``. Chinese characters are split one per piece, Latin text is lower-cased and
    split into word pieces. A text longer than ``max_tokens - 2`` pieces is TRUNCATED to its
    first ``max_tokens - 2`` pieces (as the public code does; a warning says how many were);
    an empty text is ``[CLS] [SEP]`` (length 2).
    """

    def __init__(self, folder: str | os.PathLike, max_tokens: int = 80) -> None:
        path = Path(folder)
        require_vocab(path)
        from transformers import BertTokenizer  # the tokenizers-backed (fast) one

        self.folder = path
        self.max_tokens = max_tokens
        self.tokenizer = BertTokenizer.from_pretrained(str(path), local_files_only=True)
        self.vocab_size = len(self.tokenizer)

    def __call__(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input_ids (N, max_tokens) long, lengths (N,) long)``."""
        if isinstance(texts, str):
            raise TypeError("texts must be a list of strings, not one string")
        texts = list(texts)
        bad = [i for i, text in enumerate(texts) if not isinstance(text, str)]
        if bad:
            raise TypeError(f"texts[{bad[0]}] is a {type(texts[bad[0]]).__name__}, not a str")
        if not texts:
            return torch.zeros(0, self.max_tokens, dtype=torch.long), torch.zeros(
                0, dtype=torch.long
            )
        full = self.tokenizer(texts, add_special_tokens=True)["input_ids"]
        cut = sum(len(ids) > self.max_tokens for ids in full)
        if cut:
            warn_caller(
                f"{cut} of {len(texts)} texts are longer than {self.max_tokens} tokens and were "
                f"truncated to their first {self.max_tokens - 2} word pieces"
            )
        encoded = self.tokenizer(
            texts,
            padding="max_length",
            truncation=True,
            max_length=self.max_tokens,
            return_tensors="pt",
        )
        return encoded["input_ids"].long(), encoded["attention_mask"].sum(dim=1).long()


class BriVLText:
    """The text side of a BriVL space: tokenizer + frozen text tower on a device."""

    def __init__(
        self,
        model: BriVLTextEncoder,
        tokenizer: BriVLTokenizer,
        *,
        device: str | torch.device = "cpu",
        batch_size: int = 64,
    ) -> None:
        if tokenizer.max_tokens != model.cfg.max_tokens:
            raise ValueError(
                f"tokenizer gives {tokenizer.max_tokens} tokens, model expects {model.cfg.max_tokens}"
            )
        if tokenizer.vocab_size > model.cfg.vocab_size:
            raise TextFolderError(
                f"{tokenizer.folder / 'vocab.txt'}: {tokenizer.vocab_size} entries but the "
                f"text tower has {model.cfg.vocab_size} token embeddings; wrong tokenizer folder?"
            )
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.dim = model.cfg.out_dim

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """(N, D) float32 unit rows on ``self.device``, one per text, in order."""
        input_ids, lengths = self.tokenizer(texts)
        out = [torch.zeros(0, self.dim, device=self.device)] + [
            self.model.encode_tokens(
                input_ids[i : i + self.batch_size].to(self.device),
                lengths[i : i + self.batch_size].to(self.device),
            )
            for i in range(0, len(input_ids), self.batch_size)
        ]
        return torch.cat(out).float()


class LazyText:
    """A text side that is built on its first ``encode_text`` call.

    Stages that only embed images (most jobs) then never read BERT's weights; the folder is
    checked when this is made (:func:`check_text_folder`), so a wrong path still fails early.
    """

    def __init__(self, build: Callable[[], BriVLText], *, dim: int) -> None:
        self._build = build
        self._text: BriVLText | None = None
        self.dim = dim

    @property
    def text(self) -> BriVLText:
        if self._text is None:
            text = self._build()
            if text.dim != self.dim:
                raise ValueError(f"text tower gives {text.dim}-d rows, not {self.dim}-d")
            self._text = text
        return self._text

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """(N, D) float32 unit rows, one per text (builds the tower on the first call)."""
        return self.text.encode_text(texts)


def check_text_folder(folder: str | os.PathLike) -> None:
    """Raise :class:`TextFolderError` unless ``folder`` has a BERT config.json and vocab.txt."""
    read_bert_config(folder)
    require_vocab(folder)


def require_vocab(folder: str | os.PathLike) -> Path:
    """``folder/vocab.txt``, or a :class:`TextFolderError` saying where it should be."""
    vocab = Path(folder) / "vocab.txt"
    if not vocab.is_file():
        raise TextFolderError(
            f"{vocab}: not found; the text tokenizer folder must be a local copy of "
            "hfl/chinese-roberta-wwm-ext with vocab.txt (weights/README.md)"
        )
    return vocab


# --- loading the textencoder.* keys of an official checkpoint --------------------------------


def load_brivl_text_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The text encoder's state dict from an official BriVL checkpoint, prefix stripped.

    Only ``textencoder.*`` entries are kept (``textencoder_mom.*`` and ``imgencoder*`` are
    dropped); ``textencoder.learnable.textFC.fc1.weight`` becomes ``learnable.textFC.fc1.weight``.
    """
    learnable = state_dict_entry(read_checkpoint(path), "learnable", path, "a BriVL checkpoint")
    # "textencoder_mom." does not match: no dot after "textencoder".
    state = {k[len(TEXT_PREFIX) :]: v for k, v in learnable.items() if k.startswith(TEXT_PREFIX)}
    if not state:
        raise CheckpointError(
            f"{path}: 'learnable' has no '{TEXT_PREFIX}*' entries (no text tower); "
            f"first keys: {list(learnable)[:SHOW]}"
        )
    return state


def drop_legacy_buffers(
    state: dict[str, torch.Tensor], model: BriVLTextEncoder, path: str | os.PathLike
) -> dict[str, torch.Tensor]:
    """``state`` without the BERT buffers old transformers saved, once each is checked to
    hold exactly what the model rebuilds (else the checkpoint is refused, naming the key)."""
    buffers = dict(model.named_buffers())
    kept = dict(state)
    for key in LEGACY_BUFFERS:
        if key in kept and key not in model.state_dict():
            value, ours = kept.pop(key), buffers[key]
            if tuple(value.shape) != tuple(ours.shape) or not torch.equal(
                value.long(), ours.long()
            ):
                raise CheckpointError(
                    f"{path}: {TEXT_PREFIX}{key} is not the positions 0..{ours.shape[-1] - 1} "
                    f"(shape {tuple(value.shape)}); this checkpoint's BERT differs from BriVL-1.0's"
                )
    return kept


def load_brivl_text_weights(model: BriVLTextEncoder, path: str | os.PathLike) -> str:
    """Load an official checkpoint's text encoder into ``model``, strictly.

    Returns the file's SHA-256. Raises a :class:`CheckpointError` subclass naming the file
    and the missing / unexpected / misshapen keys; the model is untouched in that case.
    """
    state = drop_legacy_buffers(load_brivl_text_state(path), model, path)
    check_state_fits(model, state, path, "text encoder weights do not match the model")
    model.load_state_dict(state, strict=True)
    return sha256_of(path)


def build_brivl_text(
    weights: str | os.PathLike,
    folder: str | os.PathLike,
    *,
    head: BriVLTextConfig = BRIVL_TEXT_1_0,
    device: str | torch.device = "cpu",
) -> BriVLText:
    """The BriVL text side: BERT architecture + tokenizer from ``folder`` (config.json +
    vocab.txt of hfl/chinese-roberta-wwm-ext), weights from the checkpoint, loaded strictly."""
    cfg = head.with_bert_folder(folder)
    tokenizer = BriVLTokenizer(folder, max_tokens=cfg.max_tokens)
    model = BriVLTextEncoder(cfg)
    load_brivl_text_weights(model, weights)
    return BriVLText(model, tokenizer, device=device)


def build_random_text(
    folder: str | os.PathLike,
    *,
    seed: int = 0,
    head: BriVLTextConfig = TINY_BRIVL_TEXT,
    device: str | torch.device = "cpu",
) -> BriVLText:
    """A seeded random text tower (the ``tiny`` encoder's): NOT a trained model, so zero-shot
    with it is at chance. BERT architecture and tokenizer from ``folder``."""
    cfg = head.with_bert_folder(folder)
    tokenizer = BriVLTokenizer(folder, max_tokens=cfg.max_tokens)
    with torch.random.fork_rng(devices=[]):  # leave the caller's RNG untouched
        torch.manual_seed(seed)
        model = BriVLTextEncoder(cfg)
    return BriVLText(model, tokenizer, device=device)
