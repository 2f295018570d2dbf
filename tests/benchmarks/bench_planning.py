"""Benchmark: `snakemake -n` planning time and job count against manifest size.

Writes synthetic VGGSound-format CSVs of 2k, 20k and 200k rows and dry-runs the workflow on
each, once with a fixed shard count and once with shards scaled to ~800 clips each (the
paper config's density). Planning must not grow with the number of clips: only the shard count
decides the number of jobs. Also times building the 200k-row manifest (the one step that reads
every row). Prints figures; asserts nothing.

    .venv/bin/python tests/benchmarks/bench_planning.py
"""

from __future__ import annotations

import random
import re
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
LABELS = [f"class {i}, variant" if i % 7 == 0 else f"class {i}" for i in range(300)]


def write_csv(path: Path, n_rows: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    alphabet = string.ascii_letters + string.digits + "_-"
    with open(path, "w") as fh:
        for _ in range(n_rows):
            ytid = rng.choice(string.ascii_letters) + "".join(rng.choices(alphabet, k=10))
            label = rng.choice(LABELS)
            split = "test" if rng.random() < 0.08 else "train"
            fh.write(f'{ytid},{rng.randrange(0, 300)},"{label}",{split}\n')


def dry_run(workdir: Path, n_shards: int) -> tuple[float, int]:
    cfg = {
        "allow_toy_models": True,  # the schema's default (toy) models: planning only
        "datasets": {
            "vggsound": {"format": "vggsound", "csv": "vggsound.csv", "n_shards": n_shards}
        },
    }
    (workdir / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    start = time.perf_counter()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(REPO / "Snakefile"),
            "-d",
            str(workdir),
            "-n",
            "--quiet",
            "rules",
            "--configfile",
            str(workdir / "cfg.yaml"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    seconds = time.perf_counter() - start
    match = re.search(r"^total\s+(\d+)", result.stdout + result.stderr, re.M)
    return seconds, int(match.group(1)) if match else -1


def main() -> None:
    print(f"{'rows':>8} {'shards':>7} {'jobs':>6} {'plan s':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for n_rows in (2_000, 20_000, 200_000):
            workdir = Path(tmp) / f"w{n_rows}"
            workdir.mkdir()
            write_csv(workdir / "vggsound.csv", n_rows)
            for n_shards in (16, max(1, n_rows // 800)):
                seconds, jobs = dry_run(workdir, n_shards)
                print(f"{n_rows:>8} {n_shards:>7} {jobs:>6} {seconds:>7.2f}")

        sys.path.insert(0, str(REPO / "src"))
        from wavbrivl.manifest import DatasetConfig, make_manifest

        # With the manifest built, planning also reads it (per-shard digests decide reruns).
        print("with the manifest built (per-shard digests read at planning):")
        for n_rows in (2_000, 20_000, 200_000):
            workdir = Path(tmp) / f"w{n_rows}"
            n_shards = max(1, n_rows // 800)
            start = time.perf_counter()
            make_manifest(
                DatasetConfig(
                    format="vggsound",
                    csv=str(workdir / "vggsound.csv"),
                    n_shards=n_shards,
                    splits=None,
                    classes=None,
                    max_clips_per_class=None,
                    seed=0,
                    source={"url_template": "https://www.youtube.com/watch?v={id}"},
                ),
                dataset="vggsound",
                out_path=str(workdir / "results/manifest/vggsound.parquet"),
                cache_dir=str(workdir / "cache"),
                log=lambda msg: None,
            )
            built = time.perf_counter() - start
            seconds, jobs = dry_run(workdir, n_shards)
            print(
                f"{n_rows:>8} {n_shards:>7} {jobs:>6} {seconds:>7.2f}   (manifest build {built:.2f} s)"
            )


if __name__ == "__main__":
    main()
