"""Benchmark: training throughput of the tiny preset on CPU, and the data loader against the step.

Three figures on the same synthetic shards (10 s clips, 3 s windows, batch 16):
- loader alone: batches from TrainData (FLAC decode, windows, shuffle buffer, 1 worker);
- step alone: forward + CXLoss + backward + AdamW + momentum/queue update on batches
  already in memory;
- train(): the whole loop (loader, step, logging, checkpoints).
The loader must not be the bottleneck: loader/step ratio well above 1. Peak RSS of the
main process is printed. Prints figures; asserts nothing.

    .venv/bin/python tests/benchmarks/bench_train.py
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the shard writers

from test_train_data import FINGERPRINT, simple_shards, write_dataset  # noqa: E402

from wavbrivl.audio.tiny import TINY_AUDIO, TINY_MOCO, save_tiny_wavlm  # noqa: E402
from wavbrivl.train.config import TrainConfig  # noqa: E402
from wavbrivl.train.loop import train  # noqa: E402
from wavbrivl.train.loss import cx_loss  # noqa: E402
from wavbrivl.train.schedule import make_optimizer  # noqa: E402
from wavbrivl.train.stage import build_model  # noqa: E402

BATCH, WINDOW_S, STEPS, DIM = 16, 3.0, 30, TINY_MOCO["image_dim"]


def main() -> None:
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        manifest, pairs, _ = write_dataset(root, simple_shards(4, 24, seconds=10.0), dim=DIM)
        wavlm = save_tiny_wavlm(root / "wavlm", seed=0)
        cfg = TrainConfig.from_dict(
            dict(
                steps=STEPS,
                batch_size=BATCH,
                warmup_steps=3,
                ckpt_every=STEPS,
                eval_every=0,
                log_every=10,
                window_s=WINDOW_S,
                num_workers=1,
                shuffle_buffer=32,
                val_fraction=0.0,
            )
        )

        def model():
            torch.manual_seed(0)
            return build_model(
                {**TINY_AUDIO, "freeze_wavlm": False},
                {k: v for k, v in TINY_MOCO.items() if k != "image_dim"},
                wavlm=str(wavlm),
                image_dim=DIM,
            )

        from wavbrivl.train.data import TrainData

        data = TrainData(manifest, pairs, cfg.data, fingerprint=FINGERPRINT, image_dim=DIM)
        batches = data.train_batches()
        next(batches)  # worker start-up
        start = time.perf_counter()
        cached = [next(batches)[0] for _ in range(STEPS)]
        loader = STEPS * BATCH / (time.perf_counter() - start)

        m = model().train()
        opt = make_optimizer(m, cfg)
        start = time.perf_counter()
        for batch in cached:
            out = m(batch["waveforms"], batch["lengths"], batch["image_emb"])
            loss, _ = cx_loss(out, m)
            opt.zero_grad()
            loss.backward()
            opt.step()
            m.momentum_update()
            m.enqueue(out)
        step = STEPS * BATCH / (time.perf_counter() - start)

        start = time.perf_counter()
        train(model(), data, cfg, root / "run", device=torch.device("cpu"), log=lambda s: None)
        full = STEPS * BATCH / (time.perf_counter() - start)

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"tiny preset, CPU, batch {BATCH}, {WINDOW_S:g} s windows, {STEPS} steps")
    print(f"loader alone : {loader:8.1f} clips/s")
    print(f"step alone   : {step:8.1f} clips/s")
    print(f"train()      : {full:8.1f} clips/s")
    print(f"loader/step  : {loader / step:8.2f}   (>1: the loader is not the bottleneck)")
    print(f"peak RSS     : {rss:8.0f} MB (main process)")


if __name__ == "__main__":
    main()
