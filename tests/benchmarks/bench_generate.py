"""Benchmark: guided-generation steps/s on CPU for the tiny preset, alone and batched.

The tiny VQGAN (f=4) and the tiny random BriVL encoder (128 px input). For each batch size
B, B clips are optimised together; the figures are optimiser steps/s of the batch and
clip-steps/s (B x steps/s), whose ratio to B=1 says what batching clips buys. A breakdown
of one B=1 step (decode, cutouts, encoder forward+backward) shows where the time goes.
Prints figures; asserts nothing.

    .venv/bin/python tests/benchmarks/bench_generate.py [--cutouts 8] [--size 64] [--steps 6]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from wavbrivl.encoders.registry import build_tiny
from wavbrivl.generate import CutoutRng, GenerateConfig, generate, make_cutouts
from wavbrivl.generate.loop import init_random_tokens, latent_grid, synthesize
from wavbrivl.vqgan import build_tiny_vqgan


def steps_per_second(vqgan, encoder, cfg: GenerateConfig, n_clips: int, repeats: int = 3) -> float:
    targets = F.normalize(torch.randn(n_clips, encoder.dim), dim=1)
    ids = [f"c{i}_0" for i in range(n_clips)]
    kwargs = dict(clip_ids=ids, seeds=list(range(n_clips)), log=lambda line: None)
    generate(vqgan, encoder, targets, GenerateConfig(**(cfg.to_dict() | {"steps": 1})), **kwargs)
    # Best of a few runs: the machine is shared, and interference only ever slows a run.
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        generate(vqgan, encoder, targets, cfg, **kwargs)
        best = min(best, time.perf_counter() - start)
    # One extra decode + encode for the final image is included: small against the steps.
    return cfg.steps / best


def breakdown(vqgan, encoder, cfg: GenerateConfig, repeats: int = 5) -> dict[str, float]:
    """Seconds per step of each part, for one clip (best of ``repeats``)."""
    codebook = vqgan.codebook.detach()
    z = init_random_tokens(codebook, latent_grid(vqgan, cfg.size), [0]).requires_grad_(True)
    rng = [CutoutRng(0)]
    size = encoder.preprocess.img_size
    parts = {"decode fwd+bwd": float("inf"), "cutouts fwd+bwd": float("inf")}
    parts["encoder fwd+bwd"] = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        image = synthesize(vqgan, z)
        torch.autograd.grad(image.sum(), [z])
        t1 = time.perf_counter()
        pixels = image.detach().requires_grad_(True)
        cuts = make_cutouts(pixels, size, cfg.cutout_settings(), rng)
        torch.autograd.grad(cuts.sum(), [pixels])
        t2 = time.perf_counter()
        leaf = cuts.detach().requires_grad_(True)
        torch.autograd.grad(encoder.encode_images(leaf).sum(), [leaf])
        t3 = time.perf_counter()
        for key, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2), strict=True):
            parts[key] = min(parts[key], dt)  # best of the repeats, as above
    return parts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cutouts", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    vqgan, encoder = build_tiny_vqgan(seed=0), build_tiny(seed=0)
    print(
        f"tiny VQGAN f={vqgan.downsample_factor}, tiny BriVL {encoder.preprocess.img_size} px, "
        f"image {args.size}x{args.size}, {args.cutouts} cutouts/clip, {args.threads} threads"
    )
    print(f"{'clips/batch':>11} {'steps/s':>8} {'clip-steps/s':>13} {'per-clip gain':>14}")
    base = None
    for n_clips in (1, 2, 4):
        cfg = GenerateConfig(
            steps=args.steps,
            cutouts=args.cutouts,
            size=(args.size, args.size),
            batch_clips=n_clips,
        )
        rate = steps_per_second(vqgan, encoder, cfg, n_clips)
        base = base or rate
        print(f"{n_clips:>11} {rate:>8.2f} {rate * n_clips:>13.2f} {rate * n_clips / base:>14.2f}")
    cfg = GenerateConfig(cutouts=args.cutouts, size=(args.size, args.size))
    print("one step, one clip:")
    for part, seconds in breakdown(vqgan, encoder, cfg).items():
        print(f"  {part:<16} {seconds * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
