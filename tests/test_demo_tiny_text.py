"""The demo's toy text-tower folder (wavbrivl.demo.tiny_text): a real BERT config and vocabulary
that BriVL's text side reads, giving distinct prompts for the demo's class names."""

from __future__ import annotations

import json

import numpy as np
import pytest

from wavbrivl.demo.classes import DEMO_CLASSES
from wavbrivl.demo.tiny_text import save_tiny_text_folder, tiny_bert_config, tiny_vocab
from wavbrivl.encoders.brivl_text import BriVLTokenizer
from wavbrivl.encoders.from_config import encoder_from_config


def test_the_vocabulary_has_the_specials_first_and_no_duplicates():
    vocab = tiny_vocab()
    assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert len(set(vocab)) == len(vocab) == 5 + 36 + 36 + 9
    assert {"a", "##a", "z", "##9", "-"} <= set(vocab)
    assert tiny_bert_config(7)["vocab_size"] == 7


def test_the_folder_holds_a_bert_config_and_the_vocabulary(tmp_path):
    path = save_tiny_text_folder(tmp_path / "text")
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "vocab.txt"]
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == "bert"
    assert config["vocab_size"] == len(tiny_vocab())
    assert (path / "vocab.txt").read_text().splitlines() == tiny_vocab()
    assert [p.name for p in tmp_path.iterdir()] == ["text"]  # no temporary folder left


def test_a_non_empty_folder_is_refused(tmp_path):
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "x").write_text("keep")
    with pytest.raises(FileExistsError, match="exists and is not an empty directory"):
        save_tiny_text_folder(tmp_path / "text")
    assert (tmp_path / "text" / "x").read_text() == "keep"
    (tmp_path / "empty").mkdir()
    assert (save_tiny_text_folder(tmp_path / "empty") / "vocab.txt").is_file()


def test_class_names_become_distinct_token_sequences_without_unknowns(tmp_path):
    path = save_tiny_text_folder(tmp_path / "text")
    tokenizer = BriVLTokenizer(path, max_tokens=80)
    vocab = tiny_vocab()
    seen = set()
    for cls in DEMO_CLASSES:
        ids = tokenizer([f"a sound of {cls.name}."])[0][0].tolist()
        assert vocab.index("[UNK]") not in ids, cls.name
        seen.add(tuple(ids))
    assert len(seen) == len(DEMO_CLASSES)


def test_the_tiny_encoder_gets_a_text_side_from_the_folder(tmp_path):
    path = save_tiny_text_folder(tmp_path / "text")
    base = {"encoder": "tiny", "seed": 0, "box_mode": "whole", "device": "cpu"}
    assert not hasattr(encoder_from_config(base), "encode_text")
    encoder = encoder_from_config({**base, "text_tokenizer": str(path)})
    rows = np.asarray(encoder.encode_text(["a sound of rain", "a sound of a dog"]))
    assert rows.shape == (2, encoder.dim)
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(rows[0], rows[1])


def test_the_config_is_the_toy_bert_written_down_here(tmp_path):
    # The toy tower's whole specification, by hand: a change to it is a change to the demo.
    config = json.loads((save_tiny_text_folder(tmp_path / "t") / "config.json").read_text())
    assert config == {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": 86,
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


def test_missing_parents_are_made_and_a_failed_write_leaves_nothing(tmp_path, monkeypatch):
    assert (save_tiny_text_folder(tmp_path / "a" / "b" / "t") / "vocab.txt").is_file()

    def refuse(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("wavbrivl.demo.tiny_text.os.replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        save_tiny_text_folder(tmp_path / "c" / "t")
    assert list((tmp_path / "c").iterdir()) == []
