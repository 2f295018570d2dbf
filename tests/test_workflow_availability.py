"""The availability report through the real Snakemake: manifest -> every shard's download ->
report_availability, and its TSV and plot in `snakemake --report`.

The dataset is four clips of two classes, served as file:// URLs; one URL points at a file that
does not exist, so the expected table (written by hand below) has an `unavailable` clip.
"""

from __future__ import annotations

import zipfile

import yaml
from conftest import planned_jobs, run_snakemake
from httpserver import make_test_mp4

# ytid, start, label, split (VGGSound's headerless format)
CSV = """\
aaaaaaaaaaa,0,dog barking,train
bbbbbbbbbbb,0,dog barking,train
ccccccccccc,0,cat meowing,train
ddddddddddd,0,cat meowing,test
"""

HEADER = (
    "class\tclips\tok\tunavailable\tprivate\trate_limited\ttimeout\tbad_media\terror\tmissing\tdeferred"
    "\tok_share"
)


def test_availability_report_gathers_every_shard_and_enters_the_report(tmp_path):
    media = tmp_path / "in" / "media"
    media.mkdir(parents=True)
    clip = make_test_mp4(media / "clip.mp4", 2.0)
    urls = {ytid: clip.as_uri() for ytid in ("aaaaaaaaaaa", "bbbbbbbbbbb", "ccccccccccc")}
    urls["ddddddddddd"] = (media / "gone.mp4").as_uri()
    (tmp_path / "in" / "vggsound.csv").write_text(CSV)
    (tmp_path / "in" / "sources.csv").write_text(
        "id,url\n" + "".join(f"{k},{v}\n" for k, v in urls.items())
    )
    cfg = {
        "datasets": {
            "vgg": {
                "format": "vggsound",
                "csv": "in/vggsound.csv",
                "splits": ["train", "test"],
                "n_shards": 2,
                "source": {"mapping_csv": "in/sources.csv"},
            }
        },
        "download": {"allow_file_urls": True, "max_attempts": 1},
        "allow_toy_models": True,  # the schema's default models are the demo's toys
    }
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    args = ("availability", "--configfile", "cfg.yaml")

    plan = planned_jobs(run_snakemake(tmp_path, "-n", *args))
    assert plan == {
        "build_manifest": 1,
        "download_clips": 2,
        "report_availability": 1,
        "availability": 1,
    }

    result = run_snakemake(tmp_path, "--cores", "1", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    tsv = (tmp_path / "results/reports/availability/vgg.tsv").read_text(encoding="utf-8")
    assert tsv == (
        f"{HEADER}\n"
        "(all)\t4\t3\t1\t0\t0\t0\t0\t0\t0\t0\t0.7500\n"
        "cat meowing\t2\t1\t1\t0\t0\t0\t0\t0\t0\t0\t0.5000\n"
        "dog barking\t2\t2\t0\t0\t0\t0\t0\t0\t0\t0\t1.0000\n"
    )
    log = (tmp_path / "logs/report_availability/vgg.log").read_text()
    assert "availability: vgg: ok=3 unavailable=1" in log

    result = run_snakemake(tmp_path, "--report", "report.zip", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    names = {n.rsplit("/", 1)[-1] for n in zipfile.ZipFile(tmp_path / "report.zip").namelist()}
    assert {"vgg.tsv", "vgg.png"} <= names
