"""Make tests/fixtures/brivl_text_parity_tiny.pt by running the PUBLIC BriVL text encoder.

The public code (BAAI-WuDao/BriVL, ``BriVL-code-inference/models/vl_model.py``,
``TextLearnableEncoder``, its ``models/bert.py`` and ``utils/loss.py`` ``getLanMask``) is
imported from a checkout outside this repository; nothing of ours computes the expected output
or the token ids. See tests/parity/README.md for how to fetch it.

    python tests/parity/make_brivl_text_fixture.py --public /tmp/pub/BriVL/BriVL-code-inference \
        --folder tests/fixtures/brivl_text_tiny --out tests/fixtures/brivl_text_parity_tiny.pt
    python tests/parity/make_brivl_text_fixture.py --public ... --folder ... --check tests/fixtures/brivl_text_parity_tiny.pt
    python tests/parity/make_brivl_text_fixture.py --public ... --keys tests/fixtures/brivl_text_state_keys.json

``--folder`` receives the toy "hfl/chinese-roberta-wwm-ext" folder (config.json + vocab.txt)
that the tests read as the tokenizer folder. The token ids are the public dataset code's
tokenizer call (``AutoTokenizer`` with ``padding='max_length', truncation=True,
max_length=80``) on that folder; the masks are its ``getLanMask``.

Shims (construction only, no change to the public maths): the public ``Bert`` calls
``AutoModel.from_pretrained(cfg.ENCODER)``, so ``ENCODER`` names a temporary folder where a
seeded random toy BERT was saved with ``save_pretrained`` (the hub cannot be reached here);
``nn.TransformerEncoderLayer`` gets ``dim_feedforward=64`` (the public code takes torch's
default 2048; toy size).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

# The fixture's config, in the format of wavbrivl's BriVLTextConfig.to_dict() (the tests
# check it equals TINY_BRIVL_TEXT); the public model reads the same numbers from its cfg names.
CONFIG = {
    "vocab_size": 64,
    "hidden_size": 32,
    "bert_layers": 2,
    "bert_heads": 4,
    "intermediate_size": 64,
    "hidden_act": "gelu",
    "max_position_embeddings": 128,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
    "n_layers": 2,
    "n_heads": 4,
    "ff_dim": 64,
    "dropout": 0.1,
    "out_dim": 128,
    "max_tokens": 80,
}
SEED = 0
# hfl/chinese-roberta-wwm-ext's config.json (its BERT sizes) and BriVL's cfg/test_xyb.yml text
# head: what --keys builds at full size.
FULL = {
    **CONFIG,
    "vocab_size": 21128,
    "hidden_size": 768,
    "bert_layers": 12,
    "bert_heads": 12,
    "intermediate_size": 3072,
    "max_position_embeddings": 512,
    "n_layers": 4,
    "ff_dim": 2048,
    "out_dim": 2048,
}
# A toy WordPiece vocabulary in the layout of chinese-roberta-wwm-ext's vocab.txt: [PAD] = 0,
# [UNK] = 100 there, here 1; special tokens, Chinese characters, Latin words and pieces.
VOCAB = (
    ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    + list("狗猫鸟车雨水火风声音的叫在下吹响一只个大小")
    + ["dog", "cat", "bird", "car", "rain", "bark", "sound", "of", "a", "the", "siren"]
    + ["##s", "##ing", "##ed", "##er", "do", "##g", "b", "##ark"]
    + list("0123456789,.!?")
)
# Chinese, Latin (upper case: lower-cased), mixed, empty, punctuation, unknown characters,
# and one text whose pieces overflow 80 tokens (truncated).
TEXTS = [
    "狗叫的声音",
    "The sound of a dog barking",
    "一只dog在叫",
    "",
    "雨水, 风声!",
    "汽笛 zebra",
    "大" * 50 + " dogs " * 20 + "猫",
]


def build_public_bert_folder(folder: Path, cfg: dict) -> None:
    """A seeded random toy BERT saved with save_pretrained (what ``AutoModel`` loads)."""
    from transformers import BertConfig, BertModel

    bert = BertModel(
        BertConfig(
            vocab_size=cfg["vocab_size"],
            hidden_size=cfg["hidden_size"],
            num_hidden_layers=cfg["bert_layers"],
            num_attention_heads=cfg["bert_heads"],
            intermediate_size=cfg["intermediate_size"],
            hidden_act=cfg["hidden_act"],
            max_position_embeddings=cfg["max_position_embeddings"],
            type_vocab_size=cfg["type_vocab_size"],
            layer_norm_eps=cfg["layer_norm_eps"],
        )
    )
    bert.save_pretrained(folder)


def write_tokenizer_folder(folder: Path, bert_folder: Path) -> None:
    """The toy hfl-style folder the tests read: vocab.txt + the BERT's config.json."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("".join(f"{t}\n" for t in VOCAB), encoding="utf-8")
    config = json.loads((bert_folder / "config.json").read_text())
    config.pop("transformers_version", None)  # keep the committed file version-free
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def _construction_shims(cfg: dict):
    """The toy feed-forward width of the transformer layer, restored afterwards."""
    layer = nn.TransformerEncoderLayer

    class TransformerEncoderLayer(layer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{"dim_feedforward": cfg["ff_dim"], **kwargs})

    nn.TransformerEncoderLayer = TransformerEncoderLayer
    try:
        yield
    finally:
        nn.TransformerEncoderLayer = layer


def import_public(public: Path):
    sys.path.insert(0, str(public))
    import models.vl_model as vl  # the public module
    from utils import getLanMask  # the public mask helper

    return vl, getLanMask


def build_public(public: Path, cfg: dict, bert_folder: Path) -> nn.Module:
    """The public TextLearnableEncoder at toy size (seed the RNG before)."""
    vl, _ = import_public(public)
    model_cfg = SimpleNamespace(
        ENCODER=str(bert_folder),
        TEXT_FEATURE_DIM=cfg["hidden_size"],
        TEXT_TRANSFORMER_HEAD=cfg["n_heads"],
        TEXT_TRANSFORMER_LAYER=cfg["n_layers"],
        IMG_FEATURE_DIM=cfg["out_dim"],
        MAX_TEXT_LEN=cfg["max_tokens"],
    )
    with _construction_shims(cfg), contextlib.redirect_stdout(io.StringIO()):
        return vl.TextLearnableEncoder(model_cfg).eval()  # init_param prints names


@torch.no_grad()
def randomise_norms(model: nn.Module, gen: torch.Generator) -> None:
    """Move LayerNorm affines off their identity init, so that a wrong eps or a skipped
    affine changes the output measurably."""
    for m in model.modules():
        if isinstance(m, nn.LayerNorm):
            m.weight.copy_(torch.empty_like(m.weight).uniform_(0.75, 1.25, generator=gen))
            m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))


def public_tokens(public: Path, folder: Path, texts: list[str], max_len: int):
    """The public dataset's tokenizer call, and its getLanMask."""
    from transformers import AutoTokenizer

    _, get_lan_mask = import_public(public)
    tok = AutoTokenizer.from_pretrained(str(folder))
    info = tok(
        texts, padding="max_length", truncation=True, max_length=max_len, return_tensors="pt"
    )
    lengths = info.attention_mask.sum(dim=1)
    return info.input_ids, lengths, get_lan_mask(lengths, max_len)


@torch.no_grad()
def run_public(model: nn.Module, input_ids, mask) -> torch.Tensor:
    """The public forward + the L2 normalisation VL_model.extract applies: (B, out_dim)."""
    return F.normalize(model(input_ids, mask), p=2, dim=-1)


def make_fixture(public: Path, folder: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        bert_folder = Path(tmp)
        torch.manual_seed(SEED)  # default init of the BERT and of the public modules
        build_public_bert_folder(bert_folder, CONFIG)
        write_tokenizer_folder(folder, bert_folder)
        model = build_public(public, CONFIG, bert_folder)
    gen = torch.Generator().manual_seed(SEED)
    randomise_norms(model, gen)
    input_ids, lengths, mask = public_tokens(public, folder, TEXTS, CONFIG["max_tokens"])
    expected = run_public(model, input_ids, mask)
    # The checkpoint's "learnable" layout: the text tower under textencoder.*, the BERT
    # position_ids buffer that transformers 4.5.1 (the release's) saved, and one entry each
    # of the momentum and image towers that a loader must leave out.
    learnable = {f"textencoder.{k}": v.clone() for k, v in model.state_dict().items()}
    n_pos = CONFIG["max_position_embeddings"]
    learnable["textencoder.backbone.bert.embeddings.position_ids"] = torch.arange(n_pos)[None]
    out = CONFIG["out_dim"]
    learnable["textencoder_mom.learnable.textFC.fc2.bias"] = torch.zeros(out)
    learnable["imgencoder.learnable.imgFC.fc2.bias"] = torch.ones(out)
    import transformers

    return {
        "learnable": learnable,
        "texts": TEXTS,
        "input_ids": input_ids,
        "lengths": lengths,
        "expected": expected,
        "config": CONFIG,
        "source": (
            "BAAI-WuDao/BriVL @bb8d95b BriVL-code-inference TextLearnableEncoder + AutoTokenizer "
            "+ getLanMask (public code), tests/parity/make_brivl_text_fixture.py, transformers "
            f"{transformers.__version__}, torch {torch.__version__}, random weights seed {SEED}, "
            "eval mode, float32"
        ),
    }


@torch.no_grad()
def check(public: Path, folder: Path, path: Path) -> None:
    """Rerun the public code on a fixture's own weights and inputs; exit 1 if it differs."""
    from transformers import BertConfig, BertModel

    old = torch.load(path, weights_only=True)
    state = {k.removeprefix("textencoder."): v for k, v in old["learnable"].items()}
    state = {k: v for k, v in state.items() if not k.startswith(("textencoder_", "img"))}
    state.pop("backbone.bert.embeddings.position_ids")
    with tempfile.TemporaryDirectory() as tmp:
        BertModel(BertConfig.from_pretrained(folder)).save_pretrained(tmp)
        model = build_public(public, old["config"], Path(tmp))
    model.load_state_dict(state)
    ids, lengths, mask = public_tokens(public, folder, old["texts"], old["config"]["max_tokens"])
    same_ids = torch.equal(ids, old["input_ids"]) and torch.equal(lengths, old["lengths"])
    print(f"public tokenizer reproduces the stored ids and lengths: {same_ids}")
    diff = (run_public(model, old["input_ids"], mask) - old["expected"]).abs().max().item()
    print(f"public code on {path.name}'s weights and inputs: max |diff| vs stored = {diff:.3g}")
    sys.exit(0 if diff <= 1e-6 and same_ids else 1)


def write_keys(public: Path, out: Path) -> None:
    """The full-size public text tower's state-dict keys and shapes, in order."""
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(SEED)
        build_public_bert_folder(Path(tmp), FULL)
        model = build_public(public, FULL, Path(tmp))
    keys = [[k, list(v.shape)] for k, v in model.state_dict().items()]
    import transformers

    source = (
        "BAAI-WuDao/BriVL @bb8d95b BriVL-code-inference models/vl_model.py TextLearnableEncoder, "
        "cfg TEXT_FEATURE_DIM=768 TEXT_TRANSFORMER_HEAD=4 TEXT_TRANSFORMER_LAYER=4 "
        "IMG_FEATURE_DIM=2048, BERT sizes of hfl/chinese-roberta-wwm-ext's config.json, "
        f"transformers {transformers.__version__} (4.5.1, the release's, also saved the buffer "
        "backbone.bert.embeddings.position_ids), tests/parity/make_brivl_text_fixture.py --keys; "
        "checkpoint keys are these with the prefix textencoder."
    )
    doc = {"source": source, "n_keys": len(keys), "state_keys": keys}
    out.write_text(json.dumps(doc) + "\n")
    print(f"wrote {out} ({len(keys)} keys)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--public", type=Path, required=True, help="BriVL-code-inference dir")
    parser.add_argument("--folder", type=Path, help="toy tokenizer folder (--out, --check)")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--keys", type=Path, help="write the full-size key list here")
    what.add_argument("--out", type=Path, help="write a fresh fixture (and the folder) here")
    what.add_argument("--check", type=Path, help="verify an existing fixture")
    args = parser.parse_args()
    if args.keys:
        write_keys(args.public, args.keys)
        return
    if args.folder is None:
        parser.error("--folder is needed with --out and --check")
    if args.check:
        check(args.public, args.folder, args.check)
    torch.save(make_fixture(args.public, args.folder), args.out)
    print(f"wrote {args.out} and {args.folder}/")


if __name__ == "__main__":
    main()
