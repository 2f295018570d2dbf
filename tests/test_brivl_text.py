"""BriVL's text tower: numerical parity with the public code, its tokenizer (80 tokens,
Chinese + Latin, empty text), strict loading of the checkpoint's ``textencoder.*`` keys, and
the registry's optional text side (absent without ``embed.text_tokenizer``)."""

from __future__ import annotations

import dataclasses
import json
import locale
import shutil
import warnings
from pathlib import Path

import pytest
import torch

# Imported once here: the text tower imports transformers lazily (image-only users never pay
# for it), which would otherwise cost each forked test process (mutmut's) several seconds.
from transformers import BertModel, BertTokenizer  # noqa: F401

from wavbrivl.checkpoints import CheckpointError, CheckpointMismatchError
from wavbrivl.encoders.brivl import TINY_BRIVL
from wavbrivl.encoders.brivl_text import (
    BRIVL_TEXT_1_0,
    TINY_BRIVL_TEXT,
    BriVLText,
    BriVLTextConfig,
    BriVLTextEncoder,
    BriVLTokenizer,
    LazyText,
    TextFolderError,
    build_brivl_text,
    build_random_text,
    load_brivl_text_state,
    load_brivl_text_weights,
)
from wavbrivl.encoders.from_config import encoder_from_config
from wavbrivl.encoders.registry import build_brivl, build_tiny

FIXTURES = Path(__file__).parent / "fixtures"
PARITY = FIXTURES / "brivl_text_parity_tiny.pt"
IMAGE_PARITY = FIXTURES / "brivl_parity_tiny.pt"
FOLDER = FIXTURES / "brivl_text_tiny"  # toy hfl-style folder: config.json + vocab.txt
# Max |ours - public| on the fixture, CPU float32: 7.5e-8. A LayerNorm eps of 1e-6 instead
# of 1e-5 in the transformer, or BERT given the attention mask, fails this bound.
PARITY_ATOL = 1e-6
POSITION_IDS = "textencoder.backbone.bert.embeddings.position_ids"


def vocab_ids(*pieces: str) -> list[int]:
    """Ids of word pieces, read from the fixture folder's vocab.txt by line number."""
    vocab = (FOLDER / "vocab.txt").read_text(encoding="utf-8").splitlines()
    return [vocab.index(p) for p in pieces]


CLS, SEP, PAD, UNK = vocab_ids("[CLS]", "[SEP]", "[PAD]", "[UNK]")


def parity() -> dict:
    return torch.load(PARITY, weights_only=True)


def save_learnable(path: Path, learnable: dict) -> Path:
    torch.save({"learnable": learnable}, path)
    return path


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    """The fixture's weights as an official checkpoint (text + decoy entries)."""
    return save_learnable(tmp_path / "brivl.pth", parity()["learnable"])


def tiny_model() -> BriVLTextEncoder:
    torch.manual_seed(1)
    return BriVLTextEncoder(TINY_BRIVL_TEXT)


# -- parity with the public code ----------------------------------------------------------


def test_fixture_is_the_tiny_architecture_and_the_folder_describes_its_bert():
    fixture = parity()
    assert BriVLTextConfig.from_dict(fixture["config"]) == TINY_BRIVL_TEXT
    assert TINY_BRIVL_TEXT.with_bert_folder(FOLDER) == TINY_BRIVL_TEXT
    assert TINY_BRIVL_TEXT.max_tokens == BRIVL_TEXT_1_0.max_tokens == 80


def test_config_round_trips_and_refuses_unknown_keys():
    assert TINY_BRIVL_TEXT.to_dict() == parity()["config"]
    assert BriVLTextConfig.from_dict(BRIVL_TEXT_1_0.to_dict()) == BRIVL_TEXT_1_0
    with pytest.raises(ValueError, match=r"unknown BriVLTextConfig key\(s\) \['heads'\]"):
        BriVLTextConfig.from_dict({"heads": 4})


def test_bert_config_carries_every_bert_field():
    cfg = BriVLTextConfig(
        vocab_size=70,
        hidden_size=48,
        bert_layers=3,
        bert_heads=6,
        intermediate_size=96,
        hidden_act="relu",
        max_position_embeddings=90,
        type_vocab_size=3,
        layer_norm_eps=1e-5,
    )
    bert = cfg.bert_config()
    assert bert.model_type == "bert"
    assert (bert.vocab_size, bert.hidden_size, bert.num_hidden_layers) == (70, 48, 3)
    assert (bert.num_attention_heads, bert.intermediate_size, bert.hidden_act) == (6, 96, "relu")
    assert (bert.max_position_embeddings, bert.type_vocab_size) == (90, 3)
    assert bert.layer_norm_eps == 1e-5


def test_released_sizes_are_chinese_roberta_wwm_ext_and_the_public_text_head():
    # hfl/chinese-roberta-wwm-ext: BERT-base, 21128 pieces; BriVL cfg: 4 layers, 4 heads, 2048-d.
    c = BRIVL_TEXT_1_0
    bert = (c.vocab_size, c.hidden_size, c.bert_layers, c.bert_heads, c.intermediate_size)
    assert bert == (21128, 768, 12, 12, 3072)
    assert (c.max_position_embeddings, c.type_vocab_size, c.layer_norm_eps) == (512, 2, 1e-12)
    assert (c.n_layers, c.n_heads, c.ff_dim, c.out_dim, c.max_tokens) == (4, 4, 2048, 2048, 80)
    assert c.hidden_act == "gelu" and c.dropout == 0.1


def test_text_embeddings_equal_the_public_code_on_its_random_weights(checkpoint):
    fixture = parity()
    text = build_brivl_text(checkpoint, FOLDER, head=TINY_BRIVL_TEXT)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fixture's long text is truncated (tested below)
        ours = text.encode_text(fixture["texts"])
    assert ours.shape == fixture["expected"].shape == (7, 128)
    torch.testing.assert_close(ours, fixture["expected"], atol=PARITY_ATOL, rtol=0)


def test_encode_tokens_on_the_public_token_ids_equals_the_public_output(checkpoint):
    fixture = parity()
    model = BriVLTextEncoder(TINY_BRIVL_TEXT)
    load_brivl_text_weights(model, checkpoint)
    with torch.no_grad():
        ours = model(fixture["input_ids"], fixture["lengths"])
    torch.testing.assert_close(ours, fixture["expected"], atol=PARITY_ATOL, rtol=0)
    torch.testing.assert_close(ours.norm(dim=-1), torch.ones(7))


def test_the_outputs_depend_on_the_padding_as_the_public_bert_sees_it(checkpoint):
    # BERT gets no attention mask: the [PAD] ids are part of its input, so other ids past
    # the length change the embedding (measured 3.3e-3; given BERT the mask, the parity
    # test's outputs move by 2.1e-3).
    fixture = parity()
    model = BriVLTextEncoder(TINY_BRIVL_TEXT)
    load_brivl_text_weights(model, checkpoint)
    ids = fixture["input_ids"][:1].clone()
    length = fixture["lengths"][:1]
    assert length.item() == 7
    other = ids.clone()
    other[0, 7:] = UNK
    with torch.no_grad():
        assert (model(ids, length) - model(other, length)).abs().max() > 1e-3


def test_a_text_does_not_depend_on_its_batch_neighbours(checkpoint):
    text = build_brivl_text(checkpoint, FOLDER, head=TINY_BRIVL_TEXT)
    alone = text.encode_text(["狗叫"])
    together = text.encode_text(["一只猫在叫", "狗叫", ""])
    torch.testing.assert_close(together[1:2], alone, atol=1e-6, rtol=0)
    text.batch_size = 2
    torch.testing.assert_close(text.encode_text(["一只猫在叫", "狗叫", ""]), together)


# -- tokenizer ---------------------------------------------------------------------------


def test_tokenizer_gives_the_public_tokenizer_call_s_ids_and_lengths():
    fixture = parity()
    tokenizer = BriVLTokenizer(FOLDER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ids, lengths = tokenizer(fixture["texts"])
    assert torch.equal(ids, fixture["input_ids"])
    assert torch.equal(lengths, fixture["lengths"])


def test_chinese_characters_are_single_pieces_and_latin_is_lower_cased_word_pieces():
    ids, lengths = BriVLTokenizer(FOLDER)(["狗叫的声音", "Dogs BARKING", "一只dog在叫"])
    expected = [
        vocab_ids("[CLS]", "狗", "叫", "的", "声", "音", "[SEP]"),
        vocab_ids("[CLS]", "dog", "##s", "bark", "##ing", "[SEP]"),  # longest pieces first
        vocab_ids("[CLS]", "一", "只", "dog", "在", "叫", "[SEP]"),
    ]
    assert lengths.tolist() == [7, 6, 7]
    assert ids.shape == (3, 80) and ids.dtype == torch.long
    for row, want in zip(ids.tolist(), expected, strict=True):
        assert row == want + [PAD] * (80 - len(want))


def test_unknown_characters_and_words_become_unk():
    ids, lengths = BriVLTokenizer(FOLDER)(["汽笛 zebra"])
    assert ids[0, :5].tolist() == [CLS, UNK, UNK, UNK, SEP] and lengths.tolist() == [5]


def test_empty_text_is_cls_sep_and_embeds_to_a_unit_row(checkpoint):
    ids, lengths = BriVLTokenizer(FOLDER)([""])
    assert ids[0].tolist() == [CLS, SEP] + [PAD] * 78 and lengths.tolist() == [2]
    row = build_brivl_text(checkpoint, FOLDER, head=TINY_BRIVL_TEXT).encode_text([""])
    assert row.shape == (1, 128) and torch.isfinite(row).all()
    assert abs(row.norm().item() - 1) < 1e-5


@pytest.mark.parametrize("n_chars, truncated", [(77, False), (78, False), (79, True), (200, True)])
def test_texts_are_cut_at_80_tokens_with_a_warning(n_chars, truncated):
    tokenizer = BriVLTokenizer(FOLDER)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ids, lengths = tokenizer(["大" * n_chars, "猫"])
    (big,) = vocab_ids("大")
    kept = min(n_chars, 78)
    assert ids.shape == (2, 80)
    assert ids[0].tolist() == [CLS] + [big] * kept + [SEP] + [PAD] * (78 - kept)
    assert lengths.tolist() == [kept + 2, 3]
    messages = [str(w.message) for w in caught]
    if truncated:
        assert messages == [
            "1 of 2 texts are longer than 80 tokens and were truncated to their first 78 "
            "word pieces"
        ]
        assert caught[0].filename == __file__  # the caller's line, not wavbrivl's
    else:
        assert messages == []


def test_max_tokens_is_the_tokenizer_s_setting():
    with pytest.warns(UserWarning, match="longer than 6 tokens.*first 4 word pieces"):
        ids, lengths = BriVLTokenizer(FOLDER, max_tokens=6)(["狗叫的声音", "狗"])
    assert ids.tolist() == [
        vocab_ids("[CLS]", "狗", "叫", "的", "声", "[SEP]"),
        vocab_ids("[CLS]", "狗", "[SEP]", "[PAD]", "[PAD]", "[PAD]"),
    ]
    assert lengths.tolist() == [6, 3]


def test_tokenizer_refuses_a_single_string_and_non_strings():
    tokenizer = BriVLTokenizer(FOLDER)
    with pytest.raises(TypeError) as info:
        tokenizer("狗")
    assert str(info.value) == "texts must be a list of strings, not one string"
    with pytest.raises(TypeError, match=r"texts\[1\] is a int, not a str"):
        tokenizer(["狗", 3])


def test_no_texts_give_an_empty_batch_on_the_encoder_s_device():
    rows = BriVLText(tiny_model(), BriVLTokenizer(FOLDER), device="meta").encode_text([])
    assert rows.shape == (0, 128) and rows.device.type == "meta"


def test_no_texts_give_an_empty_batch(checkpoint):
    ids, lengths = BriVLTokenizer(FOLDER)([])
    assert ids.shape == (0, 80) and lengths.shape == (0,)
    assert ids.dtype == lengths.dtype == torch.long
    rows = build_brivl_text(checkpoint, FOLDER, head=TINY_BRIVL_TEXT).encode_text([])
    assert rows.shape == (0, 128)


# -- the folder: config.json + vocab.txt --------------------------------------------------


def copy_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "roberta"
    shutil.copytree(FOLDER, folder)
    return folder


def test_a_folder_without_vocab_txt_is_refused_naming_the_file(tmp_path):
    folder = copy_folder(tmp_path)
    (folder / "vocab.txt").unlink()
    with pytest.raises(TextFolderError) as info:
        BriVLTokenizer(folder)
    assert str(info.value) == (
        f"{folder / 'vocab.txt'}: not found; the text tokenizer folder must be a local copy of "
        "hfl/chinese-roberta-wwm-ext with vocab.txt (weights/README.md)"
    )


def test_a_missing_folder_is_refused_naming_config_json(tmp_path):
    with pytest.raises(TextFolderError) as info:
        TINY_BRIVL_TEXT.with_bert_folder(tmp_path / "nowhere")
    assert str(info.value) == (
        f"{tmp_path / 'nowhere' / 'config.json'}: not found; the text folder must be a local "
        "copy of hfl/chinese-roberta-wwm-ext with config.json and vocab.txt (weights/README.md)"
    )


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        ('{"model_type": "roberta"}', r"not a BERT config \(model_type: roberta\)"),
        ("[1, 2]", r"not a BERT config \(model_type: None\)"),
        ('{"model_type": "bert", "hidden_size": 32}', r"BERT config lacks \['vocab_size'"),
    ],
)
def test_a_bad_config_json_is_refused_in_one_line(tmp_path, content, message):
    folder = copy_folder(tmp_path)
    (folder / "config.json").write_text(content)
    with pytest.raises(TextFolderError, match=message) as info:
        TINY_BRIVL_TEXT.with_bert_folder(folder)
    assert str(folder / "config.json") in str(info.value) and "\n" not in str(info.value)


def test_the_bert_architecture_is_read_from_config_json(tmp_path):
    folder = copy_folder(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config.update(hidden_size=48, num_hidden_layers=3, intermediate_size=96, vocab_size=70)
    (folder / "config.json").write_text(json.dumps(config))
    cfg = BRIVL_TEXT_1_0.with_bert_folder(folder)
    assert (cfg.hidden_size, cfg.bert_layers, cfg.intermediate_size, cfg.vocab_size) == (
        48,
        3,
        96,
        70,
    )
    assert (cfg.n_layers, cfg.ff_dim, cfg.out_dim) == (4, 2048, 2048)  # the head stays


def test_config_json_is_read_as_utf8_whatever_the_locale(tmp_path):
    # A config with a non-ASCII value (hfl's own name for the model), read while the C
    # locale makes ASCII the default text encoding.
    folder = copy_folder(tmp_path)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config["_name_or_path"] = "哈工大/chinese-roberta-wwm-ext"
    config["vocab_size"] = 61
    (folder / "config.json").write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    old = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")
    try:
        assert BRIVL_TEXT_1_0.with_bert_folder(folder).vocab_size == 61
    finally:
        locale.setlocale(locale.LC_CTYPE, old)


def test_a_vocab_bigger_than_the_embedding_table_is_refused(tmp_path):
    folder = copy_folder(tmp_path)
    with open(folder / "vocab.txt", "a", encoding="utf-8") as fh:
        fh.writelines(f"extra{i}\n" for i in range(10))  # 69 pieces, 64 embeddings
    with pytest.raises(TextFolderError, match=r"69 entries but the text tower has 64") as info:
        BriVLText(tiny_model(), BriVLTokenizer(folder))
    assert str(info.value).startswith(f"{folder / 'vocab.txt'}: ")


def test_a_vocab_as_big_as_the_embedding_table_is_fine(tmp_path):
    folder = copy_folder(tmp_path)
    with open(folder / "vocab.txt", "a", encoding="utf-8") as fh:
        fh.writelines(f"extra{i}\n" for i in range(5))  # 64 pieces, 64 embeddings
    text = BriVLText(tiny_model(), BriVLTokenizer(folder))
    assert text.tokenizer.vocab_size == 64
    assert text.encode_text(["extra4"]).shape == (1, 128)


def test_a_lazy_text_side_builds_once_and_checks_its_dimension():
    calls = []

    def build():
        calls.append(1)
        return build_random_text(FOLDER, seed=0)

    lazy = LazyText(build, dim=128)
    assert calls == []
    rows = lazy.encode_text(["狗"])
    lazy.encode_text(["猫"])
    assert calls == [1] and rows.shape == (1, 128)
    assert lazy.text is lazy.text
    wrong = LazyText(lambda: build_random_text(FOLDER, seed=0), dim=2048)
    for _ in range(2):  # a wrong tower is never kept
        with pytest.raises(ValueError, match="text tower gives 128-d rows, not 2048-d"):
            wrong.encode_text(["狗"])


def test_tokenizer_and_model_must_agree_on_the_length():
    with pytest.raises(ValueError, match="tokenizer gives 40 tokens, model expects 80"):
        BriVLText(tiny_model(), BriVLTokenizer(FOLDER, max_tokens=40))


# -- loading textencoder.* strictly --------------------------------------------------------


def test_loader_keeps_only_textencoder_keys_and_strips_the_prefix(checkpoint):
    state = load_brivl_text_state(checkpoint)
    assert "learnable.textFC.fc1.weight" in state
    assert "backbone.bert.embeddings.word_embeddings.weight" in state
    assert not any(k.startswith(("textencoder", "imgencoder", "_mom")) for k in state)
    # the fixture holds one decoy each of textencoder_mom.* and imgencoder.*
    assert len(state) == len(parity()["learnable"]) - 2


def test_our_keys_are_the_public_keys(checkpoint):
    public = {k for k in parity()["learnable"] if k.startswith("textencoder.")}
    public.discard(POSITION_IDS)  # a buffer old transformers saved (tested below)
    ours = {f"textencoder.{k}" for k in tiny_model().state_dict()}
    assert ours == public


def test_full_size_state_dict_matches_the_public_text_encoder():
    """Key names, order and shapes equal the public TextLearnableEncoder at BriVL-1.0's sizes
    (frozen in the fixture from the public code), so the official checkpoint loads strictly."""
    public = json.loads((FIXTURES / "brivl_text_state_keys.json").read_text())["state_keys"]
    with torch.device("meta"):  # full size without allocating weights
        model = BriVLTextEncoder(BRIVL_TEXT_1_0)
    ours = [[key, list(t.shape)] for key, t in model.state_dict().items()]
    assert len(ours) == len(public) == 251
    assert ours == public


def test_a_missing_key_is_named(tmp_path):
    learnable = dict(parity()["learnable"])
    del learnable["textencoder.learnable.textAtt.layers.1.linear2.bias"]
    path = save_learnable(tmp_path / "c.pth", learnable)
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointMismatchError) as info:
        load_brivl_text_weights(model, path)
    message = str(info.value)
    assert message == (
        f"{path}: text encoder weights do not match the model; "
        "1 missing: ['learnable.textAtt.layers.1.linear2.bias']"
    )
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # untouched


def test_an_unexpected_key_and_a_wrong_shape_are_named(tmp_path):
    learnable = dict(parity()["learnable"])
    learnable["textencoder.learnable.textAtt.layers.2.linear1.weight"] = torch.zeros(64, 32)
    learnable["textencoder.learnable.textFC.fc2.bias"] = torch.zeros(2048)
    path = save_learnable(tmp_path / "c.pth", learnable)
    with pytest.raises(CheckpointMismatchError) as info:
        load_brivl_text_weights(tiny_model(), path)
    message = str(info.value)
    assert "1 unexpected: ['learnable.textAtt.layers.2.linear1.weight']" in message
    assert "learnable.textFC.fc2.bias: checkpoint (2048,) vs model (128,)" in message


def test_a_file_without_learnable_is_refused_naming_it(tmp_path):
    path = tmp_path / "c.pth"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(CheckpointError) as info:
        load_brivl_text_state(path)
    assert str(info.value) == (
        f"{path}: no 'learnable' entry (not a BriVL checkpoint?); top-level keys: ['state_dict']"
    )


def test_a_checkpoint_without_a_text_tower_is_refused(tmp_path):
    image_only = torch.load(IMAGE_PARITY, weights_only=True)["learnable"]
    image_only = {k: v for k, v in image_only.items() if not k.startswith("text")}
    path = save_learnable(tmp_path / "c.pth", image_only)
    with pytest.raises(CheckpointError, match=r"no 'textencoder\.\*' entries \(no text tower\)"):
        load_brivl_text_state(path)


def test_the_position_ids_buffer_of_old_transformers_is_optional(tmp_path):
    learnable = dict(parity()["learnable"])
    del learnable[POSITION_IDS]  # as transformers >= 4.31 saves a BERT
    path = save_learnable(tmp_path / "c.pth", learnable)
    model = tiny_model()
    load_brivl_text_weights(model, path)
    with torch.no_grad():
        out = model(parity()["input_ids"], parity()["lengths"])
    torch.testing.assert_close(out, parity()["expected"], atol=PARITY_ATOL, rtol=0)


def test_the_position_ids_buffer_may_be_stored_as_int32(tmp_path):
    learnable = dict(parity()["learnable"])
    learnable[POSITION_IDS] = torch.arange(128, dtype=torch.int32)[None]
    path = save_learnable(tmp_path / "c.pth", learnable)
    load_brivl_text_weights(tiny_model(), path)  # no error


@pytest.mark.parametrize(
    "value", [torch.arange(128)[None].flip(-1), torch.arange(64)[None], torch.arange(128)]
)
def test_a_position_ids_buffer_other_than_the_positions_is_refused(tmp_path, value):
    learnable = dict(parity()["learnable"])
    learnable[POSITION_IDS] = value
    path = save_learnable(tmp_path / "c.pth", learnable)
    with pytest.raises(CheckpointError) as info:
        load_brivl_text_weights(tiny_model(), path)
    assert str(info.value) == (
        f"{path}: {POSITION_IDS} is not the positions 0..127 (shape {tuple(value.shape)}); "
        "this checkpoint's BERT differs from BriVL-1.0's"
    )


def test_loading_returns_the_file_sha256(checkpoint):
    import hashlib

    assert (
        load_brivl_text_weights(tiny_model(), checkpoint)
        == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    )


# -- the module --------------------------------------------------------------------------


def test_the_tower_is_frozen_and_stays_in_eval_mode():
    model = tiny_model()
    assert not any(p.requires_grad for p in model.parameters())
    model.train()
    assert not any(m.training for m in model.modules())
    ids, lengths = BriVLTokenizer(FOLDER)(["狗叫", "猫"])
    with torch.no_grad():
        torch.testing.assert_close(model(ids, lengths), model(ids, lengths), atol=0, rtol=0)


@pytest.mark.parametrize(
    "ids, lengths, message",
    [
        (torch.zeros(2, 79, dtype=torch.long), torch.tensor([2, 2]), r"must be \(B, 80\)"),
        (torch.zeros(80, dtype=torch.long), torch.tensor([2]), r"must be \(B, 80\)"),
        (torch.zeros(2, 80, dtype=torch.long), torch.tensor([2]), r"lengths must be \(2,\)"),
        (torch.zeros(2, 80, dtype=torch.long), torch.tensor([2.0, 2.0]), "integers"),
        (torch.zeros(2, 80, dtype=torch.long), torch.tensor([0, 2]), r"in 1\.\.80"),
        (torch.zeros(2, 80, dtype=torch.long), torch.tensor([2, 81]), r"in 1\.\.80"),
    ],
)
def test_bad_token_batches_are_refused(ids, lengths, message):
    with pytest.raises(ValueError, match=message):
        tiny_model()(ids, lengths)


def test_token_batches_on_another_device_than_their_lengths_run_there():
    # lengths arrive on the CPU (from the tokenizer); ids and the tower on the device
    model = tiny_model().to("meta")
    ids = torch.zeros(2, 80, dtype=torch.long, device="meta")
    out = model(ids, torch.tensor([1, 80]))
    assert out.device.type == "meta" and out.shape == (2, 128)


def test_a_single_token_is_a_valid_length():
    ids, _ = BriVLTokenizer(FOLDER)(["狗"])
    with torch.no_grad():
        row = tiny_model()(ids, torch.tensor([1]))  # [CLS] alone
    assert row.shape == (1, 128) and torch.isfinite(row).all()


def test_full_length_texts_are_accepted():
    ids, lengths = BriVLTokenizer(FOLDER)(["一" * 78])
    assert lengths.tolist() == [80]
    with torch.no_grad():
        assert torch.isfinite(tiny_model()(ids, lengths)).all()


# -- the registry's optional text side ----------------------------------------------------


def test_without_a_tokenizer_folder_the_encoder_has_no_text_side():
    encoder = build_tiny(seed=0)
    assert not hasattr(encoder, "encode_text")
    encoder = encoder_from_config(
        {"encoder": "tiny", "seed": 0, "box_mode": "whole", "device": "cpu"}
    )
    assert not hasattr(encoder, "encode_text")


def test_tiny_with_a_folder_has_a_seeded_random_text_side_in_its_space():
    plain, with_text = build_tiny(seed=3), build_tiny(seed=3, text_folder=FOLDER)
    assert with_text.fingerprint == plain.fingerprint  # same image space, same caches
    rows = with_text.encode_text(["狗叫", "猫", "狗叫"])
    assert rows.shape == (3, TINY_BRIVL.out_dim) and rows.dtype == torch.float32
    torch.testing.assert_close(rows.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(rows[0], rows[2])
    assert (rows[0] - rows[1]).abs().max() > 1e-3
    again = build_random_text(FOLDER, seed=3).encode_text(["狗叫"])
    torch.testing.assert_close(again, rows[:1])
    other = build_random_text(FOLDER, seed=4).encode_text(["狗叫"])
    assert (other - rows[:1]).abs().max() > 1e-3


def test_random_text_defaults_to_seed_0_and_places_the_tower_on_the_device():
    default = build_random_text(FOLDER).encode_text(["狗叫"])
    torch.testing.assert_close(default, build_random_text(FOLDER, seed=0).encode_text(["狗叫"]))
    on_meta = build_random_text(FOLDER, device="meta")
    assert on_meta.device.type == "meta"
    assert {p.device.type for p in on_meta.model.parameters()} == {"meta"}


def test_builders_tokenize_to_the_head_s_max_tokens(checkpoint):
    head = dataclasses.replace(TINY_BRIVL_TEXT, max_tokens=40)
    for text in (
        build_random_text(FOLDER, head=head),
        build_brivl_text(checkpoint, FOLDER, head=head),
    ):
        assert text.tokenizer.max_tokens == text.model.cfg.max_tokens == 40
        assert text.encode_text(["狗叫"]).shape == (1, 128)


def test_the_checkpoint_s_tower_goes_to_the_device(checkpoint):
    text = build_brivl_text(checkpoint, FOLDER, head=TINY_BRIVL_TEXT, device="meta")
    assert text.device.type == "meta"
    assert {p.device.type for p in text.model.parameters()} == {"meta"}


def test_random_text_leaves_the_caller_s_rng_alone():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    build_random_text(FOLDER, seed=0)
    assert torch.equal(torch.rand(3), expected)


def joint_checkpoint(path: Path, text: bool = True) -> Path:
    """The image fixture's imgencoder.* and (optionally) the text fixture's textencoder.*."""
    learnable = dict(torch.load(IMAGE_PARITY, weights_only=True)["learnable"])
    learnable = {k: v for k, v in learnable.items() if not k.startswith("text")}
    if text:
        learnable.update(parity()["learnable"])
    return save_learnable(path, learnable)


def test_brivl_with_a_folder_encodes_text_with_the_checkpoint_s_text_tower(tmp_path):
    path = joint_checkpoint(tmp_path / "brivl.pth")
    plain = build_brivl(path, config=TINY_BRIVL)
    encoder = build_brivl(path, config=TINY_BRIVL, text_folder=FOLDER)
    assert not hasattr(plain, "encode_text")
    assert encoder.fingerprint == plain.fingerprint
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = encoder.encode_text(parity()["texts"])
    torch.testing.assert_close(rows, parity()["expected"], atol=PARITY_ATOL, rtol=0)


def test_from_config_reads_embed_text_tokenizer(tmp_path):
    path = joint_checkpoint(tmp_path / "brivl.pth")
    block = {
        "encoder": "brivl",
        "weights": str(path),
        "architecture": "tiny",
        "image_size": None,
        "box_mode": "whole",
        "seed": 0,
        "device": "cpu",
        "text_tokenizer": str(FOLDER),
    }
    rows = encoder_from_config(block).encode_text(["狗叫的声音"])
    torch.testing.assert_close(rows, parity()["expected"][:1], atol=PARITY_ATOL, rtol=0)
    tiny = encoder_from_config({**block, "encoder": "tiny"})
    assert tiny.encode_text(["狗"]).shape == (1, 128)


def test_a_wrong_folder_fails_when_the_encoder_is_built(tmp_path):
    path = joint_checkpoint(tmp_path / "brivl.pth")
    with pytest.raises(TextFolderError, match="config.json: not found"):
        build_brivl(path, config=TINY_BRIVL, text_folder=tmp_path / "nowhere")
    folder = copy_folder(tmp_path)
    (folder / "vocab.txt").unlink()
    with pytest.raises(TextFolderError, match="vocab.txt: not found"):
        build_brivl(path, config=TINY_BRIVL, text_folder=folder)


def test_the_text_weights_load_on_first_use(tmp_path):
    path = joint_checkpoint(tmp_path / "brivl.pth", text=False)
    encoder = build_brivl(path, config=TINY_BRIVL, text_folder=FOLDER)  # image side only: fine
    with pytest.raises(CheckpointError, match="no 'textencoder"):
        encoder.encode_text(["狗"])
