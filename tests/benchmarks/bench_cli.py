"""Benchmark: ``wavbrivl embed-audio`` on 10-s files against the bare model forward (CPU),
and peak memory on a one-hour file.

Model: the tiny demo architecture (tiny WavLM + head, 2-s window), saved in a temporary
folder. Inputs: N 10-s FLAC files (44.1 kHz stereo, so decoding resamples and downmixes)
and one 3600-s FLAC file. Figures, each measured in a fresh process:

- ``embed``: ``AudioModel.embed_files`` over the N files (ffmpeg decode, windowing, forward,
  pooling), clips/s;
- ``forward``: ``CrossModalMoCo.embed_audio`` on the same windows, already decoded, in the
  same batches, clips/s; the ratio says what decoding and pooling cost;
- ``cli``: ``python -m wavbrivl embed-audio`` on the N files, wall time with start-up;
- peak RSS of ``embed`` on one 10-s file and on the one-hour file: with one window in memory
  at a time the two differ by far less than the hour of float32 samples (230 MB).

Prints figures; asserts nothing.

    .venv/bin/python tests/benchmarks/bench_cli.py [--files 12] [--skip-hour]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WINDOW_S = 2.0
BATCH = 8


def save_model(directory: Path) -> Path:
    import torch

    from wavbrivl.audio.encoder import AudioEncoderConfig, build_audio_encoder
    from wavbrivl.audio.tiny import TINY_AUDIO, TINY_MOCO, save_tiny_wavlm
    from wavbrivl.train.checkpoint import save_audio_encoder
    from wavbrivl.train.moco import CrossModalMoCo, MoCoConfig

    save_tiny_wavlm(directory / "wavlm", seed=0)
    torch.manual_seed(0)
    model = CrossModalMoCo(
        build_audio_encoder(AudioEncoderConfig(wavlm=str(directory / "wavlm"), **TINY_AUDIO)),
        MoCoConfig(**(TINY_MOCO | {"queue_size": 8})),
    )
    return save_audio_encoder(
        directory / "audio_encoder.pt", model, step=0, train_config={"window_s": WINDOW_S}
    )


def make_audio(path: Path, seconds: float) -> Path:
    from wavbrivl.ffmpeg_bin import ffmpeg_exe

    source = f"anoisesrc=duration={seconds}:sample_rate=44100:amplitude=0.3:seed=1"
    subprocess.run(
        [
            ffmpeg_exe(),
            "-y",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            source,
            "-ac",
            "2",
            str(path),
        ],
        check=True,
    )
    return path


def run_embed(model_path: str, files: list[str], queue) -> None:
    import torch

    from wavbrivl.api import load

    torch.set_num_threads(2)
    model = load(model_path)
    start = time.perf_counter()
    failed = sum(error is not None for _, _, error in model.embed_files(files))
    seconds = time.perf_counter() - start
    queue.put((seconds, failed, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def run_forward(model_path: str, files: list[str], queue) -> None:
    import torch

    from wavbrivl.api import load
    from wavbrivl.audiofile import iter_windows

    torch.set_num_threads(2)
    model = load(model_path)
    windows = [w for f in files for w in iter_windows(f, model.window)]  # decoded beforehand
    batches = []
    for i in range(0, len(windows), BATCH):
        group = windows[i : i + BATCH]
        padded = torch.zeros(len(group), model.window)
        for j, w in enumerate(group):
            padded[j, : len(w)] = torch.from_numpy(w)
        batches.append((padded, torch.tensor([len(w) for w in group])))
    start = time.perf_counter()
    with torch.no_grad():
        for padded, lengths in batches:
            model.model.embed_audio(padded, lengths)
    queue.put((time.perf_counter() - start, 0, 0.0))


def measure(target, *args):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=12)
    parser.add_argument("--skip-hour", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = str(save_model(tmp))
        files = [str(make_audio(tmp / f"clip{i}.flac", 10)) for i in range(args.files)]
        n = len(files)

        embed_s, failed, _ = measure(run_embed, model, files)
        forward_s, _, _ = measure(run_forward, model, files)
        print(
            f"embed-audio (decode + windows + forward + pool): {n / embed_s:.2f} clips/s ({failed} failed)"
        )
        print(f"bare forward on decoded windows, batch {BATCH}:   {n / forward_s:.2f} clips/s")
        print(f"ratio embed / forward: {forward_s / embed_s:.2f}")

        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2] / "src"))
        start = time.perf_counter()
        cli = [
            sys.executable,
            "-m",
            "wavbrivl",
            "embed-audio",
            model,
            *files,
            "-o",
            str(tmp / "o.parquet"),
        ]
        subprocess.run([*cli, "--no-progress"], check=True, capture_output=True, env=env)
        print(
            f"wavbrivl embed-audio on {n} files, start-up included: {time.perf_counter() - start:.1f} s"
        )

        if not args.skip_hour:
            _, _, rss_small = measure(run_embed, model, files[:1])
            hour = str(make_audio(tmp / "hour.flac", 3600))
            hour_s, failed, rss_hour = measure(run_embed, model, [hour])
            print(
                f"peak RSS, one 10-s file: {rss_small:.0f} MB; one-hour file: {rss_hour:.0f} MB "
                f"(+{rss_hour - rss_small:.0f} MB; the hour as float32 is 230 MB); "
                f"hour embedded in {hour_s:.0f} s, {failed} failed"
            )


if __name__ == "__main__":
    main()
