"""The demo's toy text-tower folder: a BERT ``config.json`` and a ``vocab.txt`` at toy size.

BriVL's text side reads its BERT architecture and WordPiece vocabulary from a local folder
(``embed.text_tokenizer``, docs/stages.md). The demo's ``tiny`` encoder gets a seeded random
text tower from this folder, so the benchmark's zero-shot protocol runs end to end; being
untrained, it scores at chance, and the results say so. The vocabulary holds single letters
and digits (whole-word and ``##`` continuation pieces), so every English class name becomes a
distinct token sequence instead of ``[UNK]``.
"""

from __future__ import annotations

import json
import os
import shutil
import string
import tempfile
from pathlib import Path

SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
PIECES = string.ascii_lowercase + string.digits
PUNCTUATION = tuple(".,'-_()/&")


def tiny_vocab() -> list[str]:
    """Special tokens, then letters/digits, their continuations, and punctuation."""
    return [*SPECIAL, *PIECES, *(f"##{c}" for c in PIECES), *PUNCTUATION]


def tiny_bert_config(vocab_size: int) -> dict:
    """A two-layer BERT of width 32: the text tower's toy size (docs/stages.md)."""
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": vocab_size,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": 128,
        "type_vocab_size": 2,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-12,
        "pad_token_id": 0,
    }


def save_tiny_text_folder(path: str | os.PathLike) -> Path:
    """Write the folder at ``path`` (which must not exist or be empty), atomically."""
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise FileExistsError(f"{path} exists and is not an empty directory")
    vocab = tiny_vocab()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        (tmp / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
        config = json.dumps(tiny_bert_config(len(vocab)), indent=2) + "\n"
        (tmp / "config.json").write_text(config, encoding="utf-8")
        os.replace(tmp, path)  # replaces an empty directory atomically
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


__all__ = ["save_tiny_text_folder", "tiny_bert_config", "tiny_vocab"]
