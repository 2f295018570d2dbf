"""Make tests/fixtures/brivl_parity_tiny.pt by running the PUBLIC BriVL image encoder.

The public code (BAAI-WuDao/BriVL, ``BriVL-code-inference/models/vl_model.py``,
``ImgLearnableEncoder``) is imported from a checkout outside this repository; nothing of ours
computes the expected output. See tests/parity/README.md for how to fetch it.

    python tests/parity/make_brivl_fixture.py --public /tmp/pub/BriVL-code-inference \
        --out tests/fixtures/brivl_parity_tiny.pt
    python tests/parity/make_brivl_fixture.py --public ... --check tests/fixtures/brivl_parity_tiny.pt

Shims (only construction-time arguments the public code hard-codes, no change to its maths):
``timm.create_model`` is called with ``pretrained=False`` (the public code asks for the
ImageNet weights, which are random-overwritten anyway and cannot be downloaded here) and with
``channel_multiplier=0.5`` (toy backbone); ``nn.TransformerEncoderLayer`` gets
``dim_feedforward=256`` (the public code takes torch's default 2048; toy size). The public
``models`` package imports ``transformers`` (for its text tower, not built here).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

# The fixture's config, in the format of wavbrivl's BriVLImageConfig.to_dict() (the tests
# check it equals TINY_BRIVL); the public model reads the same numbers from its own cfg names.
CONFIG = {
    "backbone": "test_efficientnet",
    "backbone_kwargs": {"channel_multiplier": 0.5},
    "img_size": 128,
    "roi_grid": 4,
    "feature_dim": 128,
    "n_layers": 2,
    "n_heads": 4,
    "ff_dim": 256,
    "dropout": 0.1,
    "max_boxes": 37,
    "out_dim": 128,
}
SEED = 0


@contextlib.contextmanager
def _construction_shims(timm_module, cfg: dict):
    """Patch the two hard-coded construction arguments, restore them afterwards."""
    create, layer = timm_module.create_model, nn.TransformerEncoderLayer

    def create_model(name, pretrained=False, **kwargs):
        return create(name, pretrained=False, **{**cfg["backbone_kwargs"], **kwargs})

    class TransformerEncoderLayer(layer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{"dim_feedforward": cfg["ff_dim"], **kwargs})

    timm_module.create_model = create_model
    nn.TransformerEncoderLayer = TransformerEncoderLayer
    try:
        yield
    finally:
        timm_module.create_model, nn.TransformerEncoderLayer = create, layer


def build_public(public: Path, cfg: dict) -> nn.Module:
    """The public ImgLearnableEncoder at toy size, default init (seed the RNG before)."""
    sys.path.insert(0, str(public))
    import models.vl_model as vl  # the public module

    model_cfg = SimpleNamespace(
        CNN=cfg["backbone"],
        IMG_SIZE=cfg["img_size"],
        IMG_FEATURE_DIM=cfg["feature_dim"],
        IMG_TRANSFORMER_HEAD=cfg["n_heads"],
        IMG_TRANSFORMER_LAYER=cfg["n_layers"],
        GRID_SIZE=cfg["roi_grid"],
    )
    with _construction_shims(vl.timm, cfg), contextlib.redirect_stdout(io.StringIO()):
        return vl.ImgLearnableEncoder(model_cfg).eval()  # init_param prints every name


@torch.no_grad()
def randomise_norms(model: nn.Module, gen: torch.Generator) -> None:
    """Move BatchNorm statistics and norm affines off their identity init, so that a wrong
    eps, a skipped affine or swapped statistics change the output measurably."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d | nn.LayerNorm):
            m.weight.copy_(torch.empty_like(m.weight).uniform_(0.75, 1.25, generator=gen))
            m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=gen))
            # Small variances make BatchNorm's eps matter (1e-3 vs 1e-5 shows clearly).
            m.running_var.copy_(torch.empty_like(m.running_var).uniform_(0.02, 1.5, generator=gen))


def make_inputs(cfg: dict, gen: torch.Generator):
    """Three images: a 6x6 grid + whole image (37 boxes), the whole image alone, and three
    detector-like random boxes + the whole image; padding rows are zeros."""
    s, n_max = cfg["img_size"], cfg["max_boxes"]
    images = torch.randn(3, 3, s, s, generator=gen)
    boxes = torch.zeros(3, n_max, 4)
    cell = s / 6
    grid = [
        [x * cell, y * cell, (x + 1) * cell, (y + 1) * cell] for x in range(6) for y in range(6)
    ]
    boxes[0, :37] = torch.tensor(grid + [[0.0, 0.0, s, s]])
    boxes[1, 0] = torch.tensor([0.0, 0.0, s, s])
    corners = torch.rand(3, 2, 2, generator=gen) * s  # (box, corner, xy)
    lo, hi = corners.min(dim=1).values, corners.max(dim=1).values
    boxes[2, :3] = torch.cat([lo, hi], dim=1)
    boxes[2, 3] = torch.tensor([0.0, 0.0, s, s])
    n_boxes = torch.tensor([37, 1, 4])
    return images, boxes, n_boxes


@torch.no_grad()
def run_public(model: nn.Module, images, boxes, n_boxes) -> torch.Tensor:
    """The public forward + the L2 norm that VL_model.extract applies: (B, out_dim)."""
    mask = (torch.arange(boxes.shape[1])[None] < n_boxes[:, None]).long()  # maskImages
    return F.normalize(model(images, mask, boxes), p=2, dim=-1)


def make_fixture(public: Path) -> dict:
    torch.manual_seed(SEED)  # default init of the public modules
    model = build_public(public, CONFIG)
    gen = torch.Generator().manual_seed(SEED)
    randomise_norms(model, gen)
    images, boxes, n_boxes = make_inputs(CONFIG, gen)
    expected = run_public(model, images, boxes, n_boxes)
    # The checkpoint's "learnable" layout: the image tower under imgencoder.*, plus one entry
    # each of the momentum and text towers that a loader must leave out.
    learnable = {f"imgencoder.{k}": v.clone() for k, v in model.state_dict().items()}
    out = CONFIG["out_dim"]
    learnable["imgencoder_mom.learnable.imgFC.fc2.bias"] = torch.zeros(out)
    learnable["textencoder.learnable.textFC.fc2.bias"] = torch.ones(out)
    learnable["textencoder_mom.learnable.textFC.fc2.bias"] = torch.ones(out)
    import timm

    return {
        "learnable": learnable,
        "images": images,
        "boxes": boxes,
        "n_boxes": n_boxes,
        "expected": expected,
        "config": CONFIG,
        "source": (
            "BAAI-WuDao/BriVL @bb8d95b BriVL-code-inference ImgLearnableEncoder (public code), "
            f"tests/parity/make_brivl_fixture.py, timm {timm.__version__}, "
            f"torch {torch.__version__}, random weights seed {SEED}, eval mode, float32"
        ),
    }


@torch.no_grad()
def check(public: Path, path: Path) -> None:
    """Rerun the public code on a fixture's own weights and inputs, and compare with a fresh
    build: prints the differences; exits 1 if the public output is not reproduced."""
    old = torch.load(path, weights_only=True)
    model = build_public(public, old["config"])
    state = {k.removeprefix("imgencoder."): v for k, v in old["learnable"].items()}
    model.load_state_dict(
        {k: v for k, v in state.items() if not k.startswith(("imgencoder_", "text"))}
    )
    again = run_public(model, old["images"], old["boxes"], old["n_boxes"])
    diff = (again - old["expected"]).abs().max().item()
    print(f"public code on {path.name}'s weights and inputs: max |diff| vs stored = {diff:.3g}")
    fresh = make_fixture(public)
    same = all(
        torch.equal(fresh[k], old[k]) for k in ("images", "boxes", "n_boxes", "expected")
    ) and all(torch.equal(v, old["learnable"].get(k)) for k, v in fresh["learnable"].items())
    print(f"a fresh build is bit-identical to {path.name}: {same}")
    sys.exit(0 if diff <= 1e-6 else 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--public", type=Path, required=True, help="BriVL-code-inference dir")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--out", type=Path, help="write a fresh fixture here")
    what.add_argument("--check", type=Path, help="verify an existing fixture")
    args = parser.parse_args()
    if args.check:
        check(args.public, args.check)
    torch.save(make_fixture(args.public), args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
