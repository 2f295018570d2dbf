"""Benchmark: extraction clips/s on demo clips against a bare ffmpeg loop doing the same work.

The baseline runs, per clip, one plain ffmpeg call that seeks to the clip, writes one
square frame and 16 kHz mono FLAC (the same decode work), and nothing else: no probe, no
JPEG re-encode, no Parquet, no thread pool. The ratio shows what the stage's bookkeeping
costs (threads=1) and what its thread pool buys (threads=2). Prints figures; asserts nothing.

    .venv/bin/python tests/benchmarks/bench_extract.py [n_clips_per_class]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from wavbrivl.demo.stage import synthesise_demo
from wavbrivl.extract import ExtractConfig, extract_shard
from wavbrivl.ffmpeg_bin import ffmpeg_exe


def demo_clips(root: Path, clips_per_class: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    synthesise_demo(
        root, clips_per_class=clips_per_class, audioset_clips_per_class=1, log=lambda msg: None
    )
    rows = pd.read_csv(root / "vggsound.csv", header=None, names=["id", "start", "label", "split"])
    manifest = pd.DataFrame(
        {
            "clip_id": rows["id"] + "_" + (rows["start"] * 1000).astype(str),
            "start_s": rows["start"].astype(float),
            "end_s": rows["start"].astype(float) + 10.0,
        }
    )
    status = pd.DataFrame(
        {
            "clip_id": manifest["clip_id"],
            "status": "ok",
            "reason": "",
            "file": [f"../videos/{i}.mp4" for i in rows["id"]],
            "section_start_s": 0.0,
            "section_end_s": float("nan"),
        }
    )
    return manifest, status


def bare_loop(manifest: pd.DataFrame, videos: Path, out: Path, size: int) -> float:
    ffmpeg = ffmpeg_exe()
    start = time.perf_counter()
    for clip_id, start_s in zip(manifest["clip_id"], manifest["start_s"], strict=True):
        src = videos / f"{clip_id.rsplit('_', 1)[0]}.mp4"
        subprocess.run(
            [
                ffmpeg,
                "-v",
                "error",
                "-y",
                "-ss",
                str(start_s),
                "-t",
                "10",
                "-i",
                str(src),
                "-map",
                "0:v:0",
                "-vf",
                f"select=gte(t\\,5),crop=min(iw\\,ih):min(iw\\,ih),scale={size}:{size}",
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
    return time.perf_counter() - start


def main() -> None:
    per_class = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        manifest, status = demo_clips(root / "demo", per_class)
        # extract_shard reads files from the download dir; point it at the videos.
        download_dir = root / "demo" / "dl"
        download_dir.mkdir()
        status["file"] = [f.replace("../videos/", "") for f in status["file"]]
        for f in status["file"]:
            (download_dir / f).symlink_to(root / "demo" / "videos" / f)
        n = len(manifest)
        cfg = ExtractConfig(frame_size=224)
        bare = bare_loop(manifest, root / "demo" / "videos", root, cfg.frame_size)
        print(f"clips: {n} (demo, 10 s windows, 160x120 H.264/AAC)")
        print(f"bare ffmpeg loop     : {n / bare:6.2f} clips/s")
        for threads in (1, 2):
            start = time.perf_counter()
            table = extract_shard(
                manifest,
                status,
                download_dir,
                root / f"m{threads}.parquet",
                cfg,
                threads=threads,
                log=open("/dev/null", "w"),
            )
            seconds = time.perf_counter() - start
            ok = int((table["status"] == "ok").sum())
            print(
                f"extract_shard t={threads}  : {n / seconds:6.2f} clips/s "
                f"(ratio to bare {bare / seconds:.2f}, ok {ok}/{n})"
            )


if __name__ == "__main__":
    main()
