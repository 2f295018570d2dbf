"""Mirror sources in the real workflow: refused before any job when broken, and one real run
from a folder mirror through download, used_clips.csv and extraction."""

from __future__ import annotations

import hashlib
import io
import tarfile

import pandas as pd
import pytest
import yaml
from conftest import planned_jobs, run_snakemake
from httpserver import make_test_mp4

IDS = ["abcdefghijk", "bcdefghijkl", "cdefghijklm"]


def _config(tmp_path, source, n_shards=1):
    (tmp_path / "in").mkdir(exist_ok=True)
    (tmp_path / "in" / "vggsound.csv").write_text(
        "".join(f"{ytid},{10 * i},dog barking,train\n" for i, ytid in enumerate(IDS))
    )
    cfg = {
        "datasets": {
            "vgg": {
                "format": "vggsound",
                "csv": "in/vggsound.csv",
                "n_shards": n_shards,
                "source": source,
            }
        },
        "extract": {"frame_size": 32},
        "allow_toy_models": True,  # the schema's default models are the demo's toys
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize(
    ("source", "words"),
    [
        (
            {"folder": "no/such/dir"},
            "datasets.vgg.source: mirror folder 'no/such/dir' does not exist",
        ),
        (
            {"folder": "in", "patterns": ["{start:06d}.mp4"]},
            "datasets.vgg.source.patterns[0]: '{start:06d}.mp4' lacks '{ytid}'",
        ),
        (
            {"tar": "in/vggsound.csv"},
            "datasets.vgg.source: 'in/vggsound.csv' is not a tar or tar.gz archive",
        ),
        (
            {"chain": [{"folder": "in"}, {"tar": "in/*.tar"}]},
            "datasets.vgg.source.chain[1].tar: glob 'in/*.tar' matches no file",
        ),
    ],
)
def test_bad_source_stops_before_any_job(tmp_path, source, words):
    result = run_snakemake(tmp_path, "-n", "--configfile", str(_config(tmp_path, source)))
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert words in out, out[-2000:]
    assert "Job stats" not in out


def test_chain_plans_used_clips_per_dataset(tmp_path):
    (tmp_path / "mirror").mkdir()
    with tarfile.open(tmp_path / "s.tar", "w") as archive:
        info = tarfile.TarInfo("x.mp4")
        info.size = 1
        archive.addfile(info, io.BytesIO(b"x"))
    source = {
        "chain": [
            {"folder": "mirror", "patterns": ["{ytid}_{start:06d}.mp4"]},
            {"tar": ["s.tar"]},
            {"url_template": "https://www.youtube.com/watch?v={id}"},
        ]
    }
    result = run_snakemake(
        tmp_path, "-n", "downloads", "--configfile", str(_config(tmp_path, source, 2))
    )
    jobs = planned_jobs(result)
    assert jobs["download_clips"] == 2 and jobs["list_used_clips"] == 1


@pytest.mark.slow  # ~30 s: a real Snakemake run (manifest, download, used_clips, extract)
def test_a_folder_mirror_feeds_the_workflow(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    made = {}
    for i, ytid in enumerate(IDS[:2]):  # the third is in no source
        path = make_test_mp4(mirror / f"{ytid}_{10 * i:06d}.mp4", 12.0)
        made[f"{ytid}_{10 * i * 1000}"] = hashlib.sha256(path.read_bytes()).hexdigest()
    cfg = _config(tmp_path, {"folder": "mirror", "name": "vgg_mirror"})
    result = run_snakemake(tmp_path, "--cores", "2", "downloads", "media", "--configfile", str(cfg))
    assert result.returncode == 0, result.stderr[-4000:]

    used = pd.read_csv(tmp_path / "results/download/vgg/used_clips.csv")
    assert used.to_dict("records") == [
        {"clip_id": cid, "source": "vgg_mirror", "sha256": digest}
        for cid, digest in sorted(made.items())
    ]
    status = pd.read_parquet(tmp_path / "results/download/vgg/000.status.parquet")
    assert dict(zip(status["clip_id"], status["status"], strict=True)) == {
        "abcdefghijk_0": "ok",
        "bcdefghijkl_10000": "ok",
        "cdefghijklm_20000": "missing",
    }
    media = pd.read_parquet(tmp_path / "results/media/vgg/000.parquet")
    assert dict(zip(media["clip_id"], media["status"], strict=True)) == {
        "abcdefghijk_0": "ok",
        "bcdefghijkl_10000": "ok",
        "cdefghijklm_20000": "missing",
    }
    # Read in place: nothing under results/ is a copy of the mirror's bytes.
    linked = tmp_path / "results/download/vgg/000/abcdefghijk_0.mp4"
    assert linked.is_symlink() and linked.resolve() == (mirror / "abcdefghijk_000000.mp4").resolve()

    # A second run has nothing to do.
    again = run_snakemake(tmp_path, "-n", "downloads", "media", "--configfile", str(cfg))
    assert planned_jobs(again) == {}
