"""A run in an open CLIP space plans like a BriVL run: its weights (a folder) are checked
first and enter the embedding jobs' parameters by content."""

from __future__ import annotations

import yaml
from conftest import planned_jobs, run_snakemake


def test_a_clip_folder_plans_check_weights_and_the_embeddings(tmp_path):
    folder = tmp_path / "weights" / "clip-vit-b32"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "clip"}')
    cfg = {
        "datasets": {
            "vgg": {"format": "vggsound", "csv": "in/vggsound.csv", "n_shards": 3},
        },
        "embed": {"encoder": "clip", "weights": "weights/clip-vit-b32"},
        "audio": {"wavlm": "microsoft/wavlm-base-plus"},
    }
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "vggsound.csv").write_text("abcdefghijk,0,dog barking,train\n")
    result = run_snakemake(tmp_path, "-n", "--configfile", str(tmp_path / "cfg.yaml"))
    jobs = planned_jobs(result)
    assert jobs["check_weights"] == 1 and jobs["embed_images"] == 3, result.stdout[-2000:]
    assert "results/embeddings/clip/vgg/" in result.stdout
