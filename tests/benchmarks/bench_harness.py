"""Benchmark: clips/s of the benchmark harness's audio path against the bare audio-model forward.

For each audio model of the registry (``wavbrivl.benchmark.audio_models``): ``wav2clip`` (the
package's full-size ResNet-18 + MLP, random weights saved in the release format) and
``wavbrivl`` (the tiny test-size run, 0.5 s windows), the harness path (ffmpeg decode of ESC-50-
like WAVs, 5 s at 44.1 kHz 16-bit, to 16 kHz mono with ``wavbrivl.audiofile.read_audio``, as
the harness's dataset readers decode files, then ``embed_clips`` through the registry) is
timed against the model's bare forward on pre-decoded 16 kHz tensors at the same batch size
(wav2clip: the package's own ``ResNetExtractor`` on (B, T); wavbrivl: ``CrossModalMoCo.
embed_audio`` on the same padded windows). Decode alone is timed too. Each measurement runs
in a fresh process. CPU, 2 threads, batch 8. Prints figures; asserts nothing.

    .venv/bin/python tests/benchmarks/bench_harness.py [--clips N]
"""

from __future__ import annotations

import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

BATCH = 8
CLIP_S = 5.0
FILE_RATE = 44_100


def make_files(folder: Path, n: int) -> list[str]:
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        samples = 0.2 * rng.standard_normal(int(CLIP_S * FILE_RATE))
        path = folder / f"1-{i}-A-{i % 50}.wav"
        sf.write(path, samples, FILE_RATE, subtype="PCM_16")
        paths.append(str(path))
    return paths


def make_models(folder: Path) -> dict[str, Path]:
    import torch
    from wav2clip.model.encoder import MLPLayers
    from wav2clip.model.resnet import BasicBlock, ResNet

    from wavbrivl.audio.encoder import AudioEncoderConfig, build_audio_encoder
    from wavbrivl.audio.tiny import TINY_AUDIO, TINY_MOCO, save_tiny_wavlm
    from wavbrivl.train.checkpoint import save_audio_encoder
    from wavbrivl.train.moco import CrossModalMoCo, MoCoConfig

    torch.manual_seed(0)
    release = {
        f"audio_encoder.{k}": v
        for k, v in ResNet(BasicBlock, [2, 2, 2, 2], pool="avgpool").state_dict().items()
    }
    release |= {f"audio_transform.{k}": v for k, v in MLPLayers().state_dict().items()}
    torch.save(release, folder / "Wav2CLIP.pt")
    save_tiny_wavlm(folder / "wavlm", seed=0)
    model = CrossModalMoCo(
        build_audio_encoder(AudioEncoderConfig(wavlm=str(folder / "wavlm"), **TINY_AUDIO)),
        MoCoConfig(**(TINY_MOCO | {"queue_size": 8})),
    )
    run = save_audio_encoder(
        folder / "run" / "audio_encoder.pt", model, step=1, train_config={"window_s": 0.5}
    )
    return {"wav2clip": folder / "Wav2CLIP.pt", "wavbrivl": run}


def build(name: str, path: str):
    import torch

    from wavbrivl.benchmark.audio_models import build_audio_model

    torch.set_num_threads(2)
    return build_audio_model(name, path, batch_size=BATCH)


def run_harness(name: str, path: str, files: list[str], queue) -> None:
    from wavbrivl.audiofile import read_audio
    from wavbrivl.benchmark.audio_models import embed_clips

    model = build(name, path)
    embed_clips(model, [read_audio(f) for f in files[:BATCH]], chunk=BATCH)  # warm-up
    start = time.perf_counter()
    out = embed_clips(model, [read_audio(f) for f in files], chunk=BATCH)
    queue.put((len(out.kept) / (time.perf_counter() - start), None))


def run_decode(files: list[str], queue) -> None:
    from wavbrivl.audiofile import read_audio

    start = time.perf_counter()
    for f in files:
        read_audio(f)
    queue.put((len(files) / (time.perf_counter() - start), None))


def run_bare(name: str, path: str, n: int, queue) -> None:
    import torch

    model = build(name, path)
    samples = int(CLIP_S * 16_000)
    if name == "wav2clip":
        # The package's own model, batches of whole clips.
        from wav2clip.model.encoder import ResNetExtractor

        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        net = ResNetExtractor(checkpoint=checkpoint, scenario="frozen", transform=True).eval()
        batches = [torch.randn(BATCH, samples) for _ in range(n // BATCH)]

        def forward(x):
            return net(x)
    else:
        # CrossModalMoCo.embed_audio on the clips' windows, padded, BATCH windows a call.
        net = model.model.model
        window = model.model.window
        n_windows = (n // BATCH) * BATCH * (samples // window)
        batches = [torch.randn(BATCH, window) for _ in range(n_windows // BATCH)]
        lengths = torch.full((BATCH,), window)

        def forward(x):
            return net.embed_audio(x, lengths)

    with torch.inference_mode():
        forward(batches[0])  # warm-up
        start = time.perf_counter()
        for x in batches:
            forward(x)
    queue.put(((n // BATCH) * BATCH / (time.perf_counter() - start), None))


def in_child(target, *args):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    n = int(sys.argv[sys.argv.index("--clips") + 1]) if "--clips" in sys.argv else 32
    with tempfile.TemporaryDirectory() as tmp:
        files = make_files(Path(tmp), n)
        models = make_models(Path(tmp))
        decode, _ = in_child(run_decode, files)
        print(f"{n} clips of {CLIP_S:g} s at {FILE_RATE} Hz; decode alone: {decode:.1f} clips/s")
        print(f"{'model':<9} {'harness clips/s':>15} {'bare clips/s':>13} {'ratio':>6}")
        for name, path in models.items():
            harness, _ = in_child(run_harness, name, str(path), files)
            bare, _ = in_child(run_bare, name, str(path), n)
            print(f"{name:<9} {harness:>15.2f} {bare:>13.2f} {harness / bare:>6.2f}")


if __name__ == "__main__":
    main()
