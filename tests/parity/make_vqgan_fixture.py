"""Make tests/fixtures/vqgan_parity_tiny.pt by running taming-transformers' own VQModel.

The public code (CompVis/taming-transformers, ``taming/models/vqgan.py`` ``VQModel`` with its
``Encoder``, ``Decoder`` and ``VectorQuantizer2``) is imported from a checkout outside this
repository; nothing of ours computes the expected outputs. See tests/parity/README.md.

    python tests/parity/make_vqgan_fixture.py --public /tmp/pub/taming --deps /tmp/pub/deps \
        --out tests/fixtures/vqgan_parity_tiny.pt
    python tests/parity/make_vqgan_fixture.py --public ... --deps ... \
        --check tests/fixtures/vqgan_parity_tiny.pt

Shims: ``VQModel`` derives from ``pytorch_lightning.LightningModule`` and builds its loss with
``main.instantiate_from_config`` (taming's training script, which imports Lightning,
OmegaConf and the data code). Neither is installed here, so two stand-in modules are put in
``sys.modules``: ``pytorch_lightning`` whose ``LightningModule`` is ``torch.nn.Module`` (VQModel's
inference path uses nothing else of it) and ``main`` with an ``instantiate_from_config`` that
imports ``target`` and calls it with ``params``. The loss is taming's ``DummyLoss`` (the real
``VQLPIPSWithDiscriminator`` downloads VGG weights); two ``loss.*`` entries shaped like the
real loss's are added to the state dict, as a Lightning checkpoint carries them. ``einops``
(needed by ``VectorQuantizer2``) is the real package, installed under ``--deps``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import types
from pathlib import Path

import torch
from torch import nn

# The fixture's config, in the format of wavbrivl's VQGANConfig.to_dict() (the tests check it
# equals TINY_VQGAN): taming's ddconfig plus embed_dim and n_embed.
CONFIG = {
    "embed_dim": 16,
    "n_embed": 64,
    "ch": 32,
    "ch_mult": [2, 1, 1],
    "num_res_blocks": 1,
    "attn_resolutions": [8],
    "z_channels": 32,
    "resolution": 32,
    "in_channels": 3,
    "out_ch": 3,
    "dropout": 0.0,
    "double_z": False,
}
SEED = 0


def _instantiate_from_config(config):
    module, name = config["target"].rsplit(".", 1)
    return getattr(importlib.import_module(module), name)(**config.get("params", {}))


def _install_stand_ins() -> None:
    lightning = types.ModuleType("pytorch_lightning")
    lightning.LightningModule = nn.Module
    main = types.ModuleType("main")
    main.instantiate_from_config = _instantiate_from_config
    sys.modules.setdefault("pytorch_lightning", lightning)
    sys.modules.setdefault("main", main)


def build_public(public: Path, deps: Path | None, cfg: dict) -> nn.Module:
    """taming's VQModel at toy size, default init (seed the RNG before), eval mode."""
    for path in (deps, public):
        if path is not None:
            sys.path.insert(0, str(path))
    _install_stand_ins()
    from taming.models.vqgan import VQModel  # the public module

    ddconfig = {k: v for k, v in cfg.items() if k not in ("embed_dim", "n_embed")}
    return VQModel(
        ddconfig=ddconfig,
        lossconfig={"target": "taming.modules.losses.DummyLoss"},
        n_embed=cfg["n_embed"],
        embed_dim=cfg["embed_dim"],
        sane_index_shape=True,  # indices (B, h, w); does not change the numbers
    ).eval()


@torch.no_grad()
def randomise(model: nn.Module, gen: torch.Generator) -> None:
    """GroupNorm affines off identity (so eps / affine mistakes show) and a codebook on the
    scale of the encoder's outputs (taming initialises it to +-1/n_embed, where every latent
    would pick the same few codes)."""
    for m in model.modules():
        if isinstance(m, nn.GroupNorm):
            m.weight.copy_(1 + 0.25 * torch.randn(m.weight.shape, generator=gen))
            m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
    book = model.quantize.embedding.weight
    book.copy_(0.25 * torch.randn(book.shape, generator=gen))


@torch.no_grad()
def run_public(model: nn.Module, x: torch.Tensor, z: torch.Tensor) -> dict:
    """Decode z; encode x up to the quantiser (VQModel.encode without its last step, which
    replaces the latent by the codebook vector); quantise those latents."""
    encoded = model.quant_conv(model.encoder(x))
    quantized, _, (_, _, indices) = model.quantize(encoded)
    return {
        "expected_decode": model.decode(z),
        "expected_encode": encoded,
        "expected_indices": indices,
        "expected_quantized": quantized,
    }


def make_fixture(public: Path, deps: Path | None) -> dict:
    torch.manual_seed(SEED)
    model = build_public(public, deps, CONFIG)
    gen = torch.Generator().manual_seed(SEED)
    randomise(model, gen)
    x = torch.rand(2, CONFIG["in_channels"], 32, 32, generator=gen) * 2 - 1  # images in [-1, 1]
    z = torch.randn(2, CONFIG["embed_dim"], 8, 8, generator=gen)  # latents (f = 4)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    # What VQLPIPSWithDiscriminator would add to a Lightning checkpoint (first layers only).
    state["loss.discriminator.main.0.weight"] = torch.randn(4, 3, 4, 4, generator=gen)
    state["loss.perceptual_loss.lin0.model.1.weight"] = torch.randn(1, 4, 1, 1, generator=gen)
    return {
        "state_dict": state,
        "config": CONFIG,
        "z": z,
        "x": x,
        **run_public(model, x, z),
        "source": (
            "CompVis/taming-transformers @3ba01b2 taming.models.vqgan.VQModel (Encoder, Decoder, "
            "VectorQuantizer2 legacy), tests/parity/make_vqgan_fixture.py, "
            f"torch {torch.__version__}, random weights seed {SEED}, eval mode, float32"
        ),
    }


KEYS = ("z", "x", "expected_decode", "expected_encode", "expected_indices", "expected_quantized")


@torch.no_grad()
def check(public: Path, deps: Path | None, path: Path) -> None:
    """Rerun taming on a fixture's own weights and inputs, and compare with a fresh build;
    exits 1 if taming's outputs are not reproduced."""
    old = torch.load(path, weights_only=True)
    model = build_public(public, deps, old["config"])
    weights = {k: v for k, v in old["state_dict"].items() if not k.startswith("loss.")}
    model.load_state_dict(weights)
    again = run_public(model, old["x"], old["z"])
    worst = 0.0
    for key, value in again.items():
        diff = (value.double() - old[key].double()).abs().max().item()
        worst = max(worst, diff)
        print(f"taming on {path.name}'s weights and inputs: {key} max |diff| = {diff:.3g}")
    fresh = make_fixture(public, deps)
    same = all(torch.equal(fresh[k], old[k]) for k in KEYS) and all(
        torch.equal(v, old["state_dict"].get(k)) for k, v in fresh["state_dict"].items()
    )
    print(f"a fresh build is bit-identical to {path.name}: {same}")
    sys.exit(0 if worst <= 1e-5 else 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--public", type=Path, required=True, help="taming-transformers dir")
    parser.add_argument("--deps", type=Path, help="directory with einops (pip --target)")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--out", type=Path, help="write a fresh fixture here")
    what.add_argument("--check", type=Path, help="verify an existing fixture")
    args = parser.parse_args()
    if args.check:
        check(args.public, args.deps, args.check)
    torch.save(make_fixture(args.public, args.deps), args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
