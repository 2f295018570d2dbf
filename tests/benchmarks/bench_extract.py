"""Benchmark: extraction clips/s against a bare ffmpeg loop doing the same decode work.

Two kinds of clip, each a 10 s window of H.264/AAC:

* ``demo``: the demo's own clips (160x120, 12 fps, 12 s files), where per-process cost
  dominates;
* ``360p``: realistic ones like YouTube's 360p (640x360, 25 fps testsrc2 + a sine tone,
  libx264 + AAC stereo, 10 s files), where decoding dominates.

The baseline runs, per clip, one plain ffmpeg call that seeks to the clip, writes one
square frame and 16 kHz mono FLAC (the same decode work), and nothing else: no JPEG
re-encode, no Parquet, no thread pool, no time limit. The stage runs ``extract.batch_size``
clips per ffmpeg process (the config's default, or ``--batch-size``; 1 is a process per
clip, as the baseline), so it pays a process start-up once per batch where the baseline
pays it per clip. The stage at ``threads=N`` is a job
given N cores, so each row runs the bare loop and the stage on the same N cores (CPU
affinity, inherited by every ffmpeg): ``ratio`` = stage clips/s / bare clips/s on those
cores shows what the stage's bookkeeping costs (N=1) and what its thread pool buys (N=2).
``vs all`` divides by the bare loop on all of the machine's cores instead (ffmpeg threads
its demuxer, decoder, filters and encoders even with ``-threads 1``). Each round measures
every row; the table gives every round and the median ratio per row, and the load average,
because the figures mean little on a busy machine. Prints figures; asserts nothing.

    .venv/bin/python tests/benchmarks/bench_extract.py [--clips N] [--rounds R] [--kinds demo,360p]
        [--batch-size B]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import pandas as pd

from wavbrivl.demo.stage import synthesise_demo
from wavbrivl.extract import ExtractConfig, extract_shard
from wavbrivl.ffmpeg_bin import ffmpeg_exe

WINDOW_S = 10.0


def cpu_seconds() -> float:
    """CPU time of this process and its finished children so far (user + system)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def demo_clips(root: Path, n_clips: int) -> tuple[pd.DataFrame, Path]:
    """``(manifest with a file column, videos dir)`` for ``n_clips`` demo clips."""
    n_classes = 8
    synthesise_demo(
        root,
        clips_per_class=max(1, -(-n_clips // n_classes)),
        audioset_clips_per_class=1,
        n_classes=n_classes,
        log=lambda msg: None,
    )
    rows = pd.read_csv(root / "vggsound.csv", header=None, names=["id", "start", "label", "split"])
    rows = rows.head(n_clips)
    manifest = pd.DataFrame(
        {
            "clip_id": rows["id"] + "_" + (rows["start"] * 1000).astype(str),
            "start_s": rows["start"].astype(float),
            "end_s": rows["start"].astype(float) + WINDOW_S,
            "file": [f"{i}.mp4" for i in rows["id"]],
        }
    )
    return manifest, root / "videos"


def realistic_clips(root: Path, n_clips: int) -> tuple[pd.DataFrame, Path]:
    """``n_clips`` 10 s 640x360 H.264/AAC files like YouTube's 360p, made with lavfi."""
    videos = root / "videos"
    videos.mkdir(parents=True)
    ffmpeg = ffmpeg_exe()
    ids = [f"real{i:04d}" for i in range(n_clips)]
    for i, clip in enumerate(ids):
        subprocess.run(  # noqa: S603 - fixed argv, no shell
            [
                ffmpeg,
                "-hide_banner",
                "-loglevel",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                f"testsrc2=s=640x360:r=25:d={WINDOW_S:g}",
                "-f",
                "lavfi",
                "-i",
                f"sine=f={220 + 55 * i}:sample_rate=44100:d={WINDOW_S:g}",
                "-c:v",
                "libx264",
                "-pix_fmt",
                "yuv420p",
                "-g",
                "50",
                "-c:a",
                "aac",
                "-b:a",
                "128k",
                "-ac",
                "2",
                "-movflags",
                "+faststart",
                str(videos / f"{clip}.mp4"),
            ],
            check=True,
        )
    manifest = pd.DataFrame(
        {
            "clip_id": [f"{clip}_0" for clip in ids],
            "start_s": 0.0,
            "end_s": WINDOW_S,
            "file": [f"{clip}.mp4" for clip in ids],
        }
    )
    return manifest, videos


def bare_loop(manifest: pd.DataFrame, videos: Path, out: Path, size: int) -> tuple[float, float]:
    """``(seconds, CPU seconds)`` for one plain ffmpeg call per clip (frame at the middle +
    16 kHz FLAC)."""
    ffmpeg = ffmpeg_exe()
    cpu = cpu_seconds()
    start = time.perf_counter()
    for name, start_s in zip(manifest["file"], manifest["start_s"], strict=True):
        subprocess.run(  # noqa: S603 - fixed argv, no shell
            [
                ffmpeg,
                "-v",
                "error",
                "-y",
                "-ss",
                str(start_s),
                "-t",
                f"{WINDOW_S:g}",
                "-i",
                str(videos / name),
                "-map",
                "0:v:0",
                "-vf",
                f"select=gte(t\\,{WINDOW_S / 2:g}),crop=min(iw\\,ih):min(iw\\,ih),"
                f"scale={size}:{size}",
                "-frames:v",
                "1",
                str(out / "f.jpg"),
                "-map",
                "0:a:0",
                "-ac",
                "1",
                "-ar",
                "16000",
                str(out / "a.flac"),
            ],
            check=True,
        )
    return time.perf_counter() - start, cpu_seconds() - cpu


def stage_run(
    manifest: pd.DataFrame, videos: Path, out: Path, cfg: ExtractConfig, threads: int
) -> tuple[float, float, int]:
    """``(seconds, CPU seconds, ok clips)`` for ``extract_shard`` over the clips."""
    status = pd.DataFrame(
        {
            "clip_id": manifest["clip_id"],
            "status": "ok",
            "reason": "",
            "file": manifest["file"],
            "section_start_s": 0.0,
            "section_end_s": float("nan"),
        }
    )
    cpu = cpu_seconds()
    start = time.perf_counter()
    with open(os.devnull, "w") as devnull:
        table = extract_shard(
            manifest[["clip_id", "start_s", "end_s"]],
            status,
            videos,
            out / f"m{threads}.parquet",
            cfg,
            threads=threads,
            log=devnull,
        )
    seconds = time.perf_counter() - start
    return seconds, cpu_seconds() - cpu, int((table["status"] == "ok").sum())


@contextlib.contextmanager
def on_cores(n: int | None):
    """Run the block (and every process it starts) on the first ``n`` of this process's
    cores; ``None``: on all of them."""
    everything = os.sched_getaffinity(0)
    chosen = everything if n is None else set(sorted(everything)[:n])
    os.sched_setaffinity(0, chosen)
    try:
        yield
    finally:
        os.sched_setaffinity(0, everything)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=32, help="clips per kind")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per kind")
    parser.add_argument("--kinds", default="demo,360p", help="comma-separated: demo, 360p")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=ExtractConfig().batch_size,
        help="extract.batch_size of the stage (default: the config's; 1: a process per clip)",
    )
    args = parser.parse_args()
    makers = {"demo": demo_clips, "360p": realistic_clips}
    labels = {"demo": "demo 160x120", "360p": "360p 640x360"}
    cfg = ExtractConfig(frame_size=224, batch_size=args.batch_size)
    n_cores = len(os.sched_getaffinity(0))
    thread_counts = [n for n in (1, 2) if n <= n_cores]
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"clips per kind: {args.clips}, rounds: {args.rounds}, cores: {n_cores}, "
        f"stage batch size: {cfg.batch_size}"
    )
    print(f"ffmpeg: {ffmpeg_exe()}")
    print("each row: the bare loop and the stage on the same cores (threads = cores);")
    print("vs all = stage c/s / bare c/s on all cores; cpu = CPU ms per clip (user + system)")
    header = (
        f"{'clip kind':<14} {'threads':>7} {'bare c/s':>9} {'stage c/s':>9} {'ratio':>6} "
        f"{'vs all':>6} {'bare cpu':>9} {'stage cpu':>9}"
    )
    print(f"{header} {'round':>5} {'ok':>7}")
    rows: dict[tuple[str, int], list[tuple[float, ...]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.kinds.split(","):
            root = Path(tmp) / kind
            manifest, videos = makers[kind](root, args.clips)
            n = len(manifest)
            for round_no in range(1, args.rounds + 1):
                all_s, _ = bare_loop(manifest, videos, root, cfg.frame_size)
                for threads in thread_counts:
                    with on_cores(threads):
                        bare_s, bare_cpu = bare_loop(manifest, videos, root, cfg.frame_size)
                        stage_s, stage_cpu, ok = stage_run(manifest, videos, root, cfg, threads)
                    row = (
                        n / bare_s,
                        n / stage_s,
                        bare_s / stage_s,
                        all_s / stage_s,
                        1000 * bare_cpu / n,
                        1000 * stage_cpu / n,
                    )
                    rows.setdefault((labels[kind], threads), []).append(row)
                    print(f"{_line(labels[kind], threads, row)} {round_no:>5} {ok:>3}/{n:<3}")
    print(f"\nmedians over {args.rounds} rounds (each column's median over the rounds)")
    print(header)
    for (label, threads), runs in rows.items():
        medians = tuple(statistics.median(x) for x in zip(*runs, strict=True))
        print(_line(label, threads, medians))
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def _line(label: str, threads: int, row: tuple[float, ...]) -> str:
    bare, stage, ratio, vs_all, bare_cpu, stage_cpu = row
    return (
        f"{label:<14} {threads:>7} {bare:>9.2f} {stage:>9.2f} {ratio:>6.2f} {vs_all:>6.2f} "
        f"{bare_cpu:>9.1f} {stage_cpu:>9.1f}"
    )


if __name__ == "__main__":
    main()
