"""Benchmark: guided-generation steps/s on CPU for the tiny preset, alone and batched; and
images/s of both generation methods (VQGAN loop, Stable unCLIP) at equal batch.

The tiny VQGAN (f=4) and the tiny random BriVL encoder (128 px input). For each batch size
B, B clips are optimised together; the figures are optimiser steps/s of the batch and
clip-steps/s (B x steps/s), whose ratio to B=1 says what batching clips buys. A breakdown
of one B=1 step (decode, cutouts, encoder forward+backward) shows where the time goes.

``--methods``: both methods judged by the same tiny HF CLIP encoder (tests/clip_models.py) on
32 x 32 images, for each batch size: the VQGAN loop (tiny VQGAN, ``--vqgan-steps`` steps, the
demo's 60 by default) and the tiny random Stable unCLIP pipeline (tests/unclip_models.py,
``--unclip-steps`` denoising steps with guidance, 20 by default), whole images per second
(every image measured against its target afterwards on both sides) and the per-image time
ratio unCLIP / VQGAN. Tiny models: the ratio says how the two loops scale with steps and
batch, not what real models cost (docs/generation-unclip.md, "Speed").
Prints figures; asserts nothing.

    .venv/bin/python tests/benchmarks/bench_generate.py [--cutouts 8] [--size 64] [--steps 6]
    PYTHONPATH=src .venv/bin/python tests/benchmarks/bench_generate.py --methods [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path

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


def best_seconds(run, repeats: int) -> float:
    """Best wall time of ``run()`` over ``repeats`` runs, after one warm-up run."""
    run()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def compare_methods(args) -> None:
    """Images/s of the VQGAN loop and of Stable unCLIP at equal batch, and their ratio."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the tiny models
    from unclip_models import cached_clip_and_unclip

    from wavbrivl.encoders.clip import build_clip
    from wavbrivl.generate.unclip import UnclipConfig, generate_unclip, load_unclip_pipeline

    clip_folder, pipeline_folder, _ = cached_clip_and_unclip()
    encoder = build_clip(clip_folder)
    pipeline = load_unclip_pipeline(pipeline_folder)
    vqgan = build_tiny_vqgan(seed=0)
    print(
        f"\nimages/s at equal batch: tiny VQGAN {args.vqgan_steps} steps ({args.cutouts} cutouts)"
        f" vs tiny Stable unCLIP {args.unclip_steps} steps (guidance 10), 32x32, tiny HF CLIP "
        f"{encoder.dim}-d, {args.threads} threads"
    )
    print(f"{'batch':>5} {'vqgan img/s':>12} {'unclip img/s':>13} {'time ratio unclip/vqgan':>24}")
    for batch in args.batches:
        targets = F.normalize(torch.randn(batch, encoder.dim), dim=1)
        ids = [f"c{i}_0" for i in range(batch)]
        vq_cfg = GenerateConfig(
            steps=args.vqgan_steps, cutouts=args.cutouts, size=(32, 32), batch_clips=batch
        )
        un_cfg = UnclipConfig(steps=args.unclip_steps, batch_clips=batch)
        common = dict(clip_ids=ids, seeds=list(range(batch)), log=lambda line: None)
        vq = best_seconds(partial(generate, vqgan, encoder, targets, vq_cfg, **common), 2)
        un = best_seconds(
            partial(
                generate_unclip,
                pipeline,
                encoder,
                targets,
                [1.0] * batch,
                un_cfg,
                labels=ids,
                scale=5.0,
                **common,
            ),  # fmt: skip
            2,
        )
        print(f"{batch:>5} {batch / vq:>12.2f} {batch / un:>13.2f} {un / vq:>24.3f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cutouts", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--methods", action="store_true", help="only the two-method comparison")
    parser.add_argument("--vqgan-steps", type=int, default=60)
    parser.add_argument("--unclip-steps", type=int, default=20)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.methods:
        compare_methods(args)
        return
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
