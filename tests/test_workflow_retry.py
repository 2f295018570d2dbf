"""A shard the circuit breaker stopped is retried by the next plain `snakemake` run.

Real Snakemake and real yt-dlp against a loopback server that answers 429 once its quota of
clips is used: the first run defers the rest (the job succeeds), the block ends, the same
command again reruns only that shard's download (and what depends on it) and gets every clip;
a third run has nothing to do.
"""

from __future__ import annotations

import pandas as pd
import yaml
from conftest import planned_jobs, run_snakemake
from httpserver import LoopbackMediaServer, make_test_mp4

from wavbrivl import status as st

CLIPS = [f"r{i}aaaaaaaaa" for i in range(5)]  # 11-character YouTube-like ids


def test_a_plain_rerun_retries_the_deferred_clips_of_a_blocked_shard(tmp_path):
    src = make_test_mp4(tmp_path / "src.mp4", 3.0).read_bytes()
    (tmp_path / "in").mkdir()
    (tmp_path / "in/vggsound.csv").write_text("".join(f"{c},0,dog barking,train\n" for c in CLIPS))
    with LoopbackMediaServer({f"{c}.mp4": src for c in CLIPS}, quota=2) as server:
        (tmp_path / "in/sources.csv").write_text(
            "id,url\n" + "".join(f"{c},{server.url(f'quota/{c}.mp4')}\n" for c in CLIPS)
        )
        cfg = {
            "datasets": {
                "vgg": {
                    "format": "vggsound",
                    "csv": "in/vggsound.csv",
                    "splits": ["train"],
                    "n_shards": 1,
                    "source": {"mapping_csv": "in/sources.csv"},
                }
            },
            "download": {"breaker_after": 2, "max_attempts": 1, "backoff_s": 0.0},
            "allow_toy_models": True,  # the schema's default models are the demo's toys
        }
        (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
        args = ("availability", "--configfile", "cfg.yaml")
        status_path = tmp_path / "results/download/vgg/000.status.parquet"

        first = run_snakemake(tmp_path, "--cores", "1", *args)
        assert first.returncode == 0, first.stderr[-3000:]
        statuses = pd.read_parquet(status_path)["status"].tolist()
        assert statuses.count(st.OK) == 2 and statuses.count(st.DEFERRED) >= 1, statuses
        assert (tmp_path / "results/download/vgg/000.retry").exists()

        # The block is over; the same command reruns the blocked shard and its report only.
        server.quota = None
        assert planned_jobs(run_snakemake(tmp_path, "-n", *args)) == {
            "download_clips": 1,
            "report_availability": 1,
            "availability": 1,
        }
        second = run_snakemake(tmp_path, "--cores", "1", *args)
        assert second.returncode == 0, second.stderr[-3000:]
        assert pd.read_parquet(status_path)["status"].tolist() == [st.OK] * len(CLIPS)

    # Nothing deferred is left: the marker stays, but no longer reruns anything.
    assert planned_jobs(run_snakemake(tmp_path, "-n", *args)) == {}
