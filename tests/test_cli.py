"""The ``wavbrivl`` command: its exit codes, output files and messages.

The demo test's `info`, the help test and the missing-model test run it as a subprocess
(``python -m wavbrivl``), as a user does. The others call its ``main()`` in this process
(``wavbrivl_in_process``): the same argv, exit code, stdout and stderr, without paying the
seconds of importing torch and transformers again for each call. Fast tests use a tiny model
saved in the test; the slow one uses the small demo's trained model (the session fixture
``small_demo_run``). Expected embeddings come from ``wavbrivl.load`` in this process, itself
checked against the model called directly in test_api.py.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import yaml
from conftest import REPO
from media_factory import no_audio_clip, normal_clip
from PIL import Image
from test_api import SPACE, save_model, signal, write_embeddings
from test_audiofile import tone

from wavbrivl.api import load

SR = 16_000


def wavbrivl(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "wavbrivl", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=600,
        check=False,
    )


def wavbrivl_in_process(*args: str | Path) -> subprocess.CompletedProcess:
    """``wavbrivl ARGS`` through ``wavbrivl.cli.main`` in this process, as a finished process."""
    from wavbrivl.cli import main

    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as stop:  # argparse's refusals and --help
            code = stop.code if isinstance(stop.code, int) else 1
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error: ")]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return save_model(tmp_path_factory.mktemp("cli") / "run").parent


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """Good files in several formats and every kind of bad input of the issue."""
    d = tmp_path_factory.mktemp("inputs")
    files = {
        "wav": tone(d / "a.wav", seconds=1.5, rate=SR),
        "stereo8k": tone(d / "b.flac", seconds=2.0, rate=8000, channels=2, hz=300),
        "mp3": tone(d / "c.mp3", seconds=1.0, rate=44100),
        "mp4": normal_clip(d, duration_s=1.0),
        "text": d / "notes.txt",
        "empty": d / "empty.wav",
        "directory": d / "folder",
        "silent_mp4": no_audio_clip(d),
    }
    files["text"].write_text("this is not audio\n" * 30)
    files["empty"].write_bytes(b"")
    files["directory"].mkdir()
    return files


GOOD = ("wav", "stereo8k", "mp3", "mp4")
BAD = {
    "empty": "empty file (0 bytes)",
    "directory": "is a directory",
    "silent_mp4": "has no audio stream",
}


def test_embed_audio_writes_the_good_files_and_names_each_bad_one(model_dir, inputs, tmp_path):
    order = ["text", "wav", "empty", "stereo8k", "directory", "mp3", "silent_mp4", "mp4"]
    out = tmp_path / "emb.parquet"
    result = wavbrivl_in_process("embed-audio", model_dir, *[inputs[k] for k in order], "-o", out)
    assert result.returncode == 1, result.stderr[-2000:]
    errors = error_lines(result)
    assert len(errors) == 4
    for key, reason in BAD.items():
        (line,) = [e for e in errors if str(inputs[key]) in e]
        assert line == f"error: {inputs[key]}: {line.split(': ', 2)[2]}" and reason in line
    assert any(str(inputs["text"]) in e for e in errors)
    assert "wrote 4 embeddings" in result.stderr and "(4 file(s) failed)" in result.stderr

    table = pq.read_table(out)
    assert table.column("path").to_pylist() == [str(inputs[k]) for k in order if k in GOOD]
    meta = {k.decode(): v.decode() for k, v in table.schema.metadata.items()}
    assert meta["wavbrivl.fingerprint"] == SPACE and meta["wavbrivl.dim"] == "128"
    got = np.array(table.column("embedding").to_pylist(), dtype=np.float32)
    expected = load(model_dir).embed_audio([inputs[k] for k in order if k in GOOD])
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_all_good_files_exit_zero_and_json_output(model_dir, inputs, tmp_path):
    out = tmp_path / "emb.json"
    result = wavbrivl_in_process(
        "embed-audio", model_dir, inputs["wav"], "-o", out, "--no-progress"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(out.read_text())
    assert data["image_space"] == {"fingerprint": SPACE, "dim": 128}
    (vector,) = data["embeddings"].values()
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)


def test_an_output_of_another_kind_is_refused_before_any_work(model_dir, inputs, tmp_path):
    result = wavbrivl_in_process("embed-audio", model_dir, inputs["wav"], "-o", tmp_path / "e.csv")
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == f"wavbrivl: error: -o {tmp_path / 'e.csv'}: name a .parquet or a .json file"
    )
    assert not (tmp_path / "e.csv").exists()


def test_info_prints_the_model_as_json(model_dir):
    result = wavbrivl_in_process("info", model_dir)
    assert result.returncode == 0, result.stderr[-2000:]
    info = json.loads(result.stdout)
    assert info["image_space"] == {"fingerprint": SPACE, "dim": 128}
    assert info["step"] == 7 and info["window_s"] == 0.5 and info["min_samples"] == 400
    assert (
        "train_config" not in info
        and info["model_fingerprint"] == load(model_dir).info["model_fingerprint"]
    )


def test_a_missing_model_is_one_error_line_and_status_2(tmp_path):
    result = wavbrivl("info", tmp_path / "nothing.pt")
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == f"wavbrivl: error: {tmp_path / 'nothing.pt'}: no such model file or folder"
    )


def test_export_then_embed_from_the_export(model_dir, inputs, tmp_path):
    out = tmp_path / "exported"
    result = wavbrivl_in_process("export", model_dir, out)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (out / "model.safetensors").is_file() and (out / "README.md").is_file()
    again = wavbrivl_in_process("export", model_dir, out)
    assert again.returncode == 2 and "exists and is not empty" in again.stderr
    emb = tmp_path / "e.parquet"
    assert wavbrivl_in_process("embed-audio", out, inputs["wav"], "-o", emb).returncode == 0
    got = np.array(pq.read_table(emb).column("embedding").to_pylist()[0])
    np.testing.assert_allclose(got, load(model_dir).embed_audio(inputs["wav"])[0], atol=1e-5)


def test_search_writes_hits_and_refuses_another_space(model_dir, inputs, tmp_path):
    q = load(model_dir).embed_audio(inputs["wav"])[0]
    cache = write_embeddings(tmp_path / "c.parquet", ["other", "hit"], [-q, q])
    out = tmp_path / "hits.json"
    result = wavbrivl_in_process(
        "search",
        model_dir,
        inputs["wav"],
        inputs["empty"],
        "--embeddings",
        cache,
        "-k",
        "1",
        "-o",
        out,
    )
    assert result.returncode == 1 and len(error_lines(result)) == 1
    hits = json.loads(out.read_text())
    assert list(hits) == [str(inputs["wav"])]
    assert hits[str(inputs["wav"])][0]["clip_id"] == "hit"
    assert hits[str(inputs["wav"])][0]["score"] == pytest.approx(1.0, abs=1e-5)

    other = write_embeddings(tmp_path / "o.parquet", ["x"], [q], fingerprint="7" * 64)
    refused = wavbrivl_in_process("search", model_dir, inputs["wav"], "--embeddings", other)
    assert refused.returncode == 2
    assert "7" * 64 in refused.stderr and SPACE in refused.stderr
    assert (
        wavbrivl_in_process(
            "search", model_dir, inputs["wav"], "--embeddings", cache, "-k", "0"
        ).returncode
        == 2
    )


def test_search_of_good_files_shows_its_progress_and_exits_zero(model_dir, inputs, tmp_path):
    q = load(model_dir).embed_audio(inputs["wav"])[0]
    cache = write_embeddings(tmp_path / "c.parquet", ["a", "b", "c"], [q, -q, q + 0.1])
    files = [inputs["wav"], inputs["mp3"]]
    result = wavbrivl_in_process("search", model_dir, *files, "--embeddings", cache, "-k", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "search: 100%" in result.stderr  # the progress bar, named after the command
    hits = json.loads(result.stdout)
    assert list(hits) == [str(p) for p in files]
    assert all(len(found) == 2 for found in hits.values())  # -k is passed on


def test_classify_hands_the_models_device_to_the_encoder(model_dir, inputs, tmp_path, monkeypatch):
    import wavbrivl.encoders.from_config as from_config

    seen = []

    def spy(block):
        seen.append(block)
        raise RuntimeError("stop here")

    monkeypatch.setattr(from_config, "encoder_from_config", spy)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("embed:\n  encoder: tiny\n  device: cuda:3\n")
    result = wavbrivl_in_process(
        "classify", model_dir, inputs["wav"], "--labels", "dog", "--config", cfg
    )
    assert result.returncode != 0 and "stop here" in result.stderr
    assert seen[0]["encoder"] == "tiny" and seen[0]["device"] == str(load(model_dir).device)


def test_export_says_where_it_wrote_replaces_when_told_and_takes_wavlm(tmp_path):
    run = save_model(tmp_path / "run")
    moved = tmp_path / "moved-wavlm"
    (tmp_path / "run" / "wavlm").rename(moved)
    out = tmp_path / "exported"
    lost = wavbrivl_in_process("export", run, out)
    assert lost.returncode == 2 and not out.exists()
    result = wavbrivl_in_process("export", run, out, "--wavlm", moved)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == ""
    assert result.stderr.strip().splitlines()[-1] == f"exported {run} to {out}"
    (out / "stale.txt").write_text("from before")
    again = wavbrivl_in_process("export", run, out, "--wavlm", moved, "--overwrite")
    assert again.returncode == 0, again.stderr[-2000:]
    assert (out / "model.safetensors").is_file()


def test_classify_on_the_tiny_space_says_it_has_no_text_side(model_dir, inputs, tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("embed:\n  encoder: tiny\n  seed: 0\n  box_mode: whole\n")
    result = wavbrivl_in_process(
        "classify", model_dir, inputs["wav"], "--labels", "dog,cat", "--config", cfg
    )
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()[-1:]
    assert line.startswith("wavbrivl: error: the run's image space (tiny-random-brivl(seed=0)")
    assert "has no text side" in line and SPACE in line
    empty = wavbrivl_in_process(
        "classify", model_dir, inputs["wav"], "--labels", " , ", "--config", cfg
    )
    assert empty.returncode == 2
    assert empty.stderr.strip().splitlines()[-1] == (
        "wavbrivl: error: --labels: give at least one label, comma-separated"
    )


def test_classify_through_a_text_side_gives_the_apis_probabilities(model_dir, inputs, tmp_path):
    from wavbrivl.api import zero_shot
    from wavbrivl.demo.tiny_text import save_tiny_text_folder
    from wavbrivl.encoders.from_config import encoder_from_config

    text = save_tiny_text_folder(tmp_path / "text")
    block = {"encoder": "tiny", "seed": 0, "box_mode": "whole", "text_tokenizer": str(text)}
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(json.dumps({"embed": block}))  # JSON is YAML
    files = [inputs["wav"], inputs["mp3"], inputs["text"]]
    out = tmp_path / "labels.json"
    result = wavbrivl_in_process(
        "classify", model_dir, *files, "--labels", "dog, rain,engine", "--config", cfg,
        "--template", "a sound of {}", "-o", out, "--no-progress",
    )  # fmt: skip
    assert result.returncode == 1, result.stderr  # the text file failed, the others did not
    assert len(error_lines(result)) == 1 and str(inputs["text"]) in error_lines(result)[0]
    answer = json.loads(out.read_text())
    assert sorted(answer) == sorted(str(p) for p in files[:2])

    model = load(model_dir)
    encoder = encoder_from_config({**block, "device": "cpu"})
    labels = ["dog", "rain", "engine"]
    text_rows = model.text_embeddings(labels, encoder, template="a sound of {}")
    probs = zero_shot(np.stack([model.embed_one(p) for p in files[:2]]), text_rows)
    for path, row in zip(files[:2], probs, strict=True):
        got = answer[str(path)]
        assert list(got["scores"]) == labels
        np.testing.assert_allclose([got["scores"][k] for k in labels], row, rtol=1e-4)
        assert got["label"] == labels[int(np.argmax(row))]
        assert abs(sum(got["scores"].values()) - 1.0) < 1e-6


def test_output_names_never_repeat_a_name_an_earlier_input_got():
    from wavbrivl.cli import output_names

    assert output_names(["x/a.wav", "y/a.wav", "a.mp3"]) == ["a", "a-1", "a-2"]
    # a later "a" may not take "a-2", which an input of that stem already has
    assert output_names(["x/a.wav", "a-2.flac", "y/a.wav", "z/a.wav", "b.wav"]) == [
        "a",
        "a-2",
        "a-1",
        "a-3",
        "b",
    ]


def test_help_shows_examples_and_every_command():
    result = wavbrivl("--help")
    assert result.returncode == 0
    for name in ("embed-audio", "classify", "search", "export", "info"):
        assert name in result.stdout
    assert (
        "examples:" in result.stdout and "wavbrivl embed-audio results/models/demo" in result.stdout
    )
    sub = wavbrivl("embed-audio", "--help")
    assert sub.returncode == 0 and "--device" in sub.stdout and "examples:" in sub.stdout


def test_pyproject_declares_the_entry_point_to_a_callable():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, attr = scripts["wavbrivl"].partition(":")
    assert (module, attr) == ("wavbrivl.cli", "main")
    assert callable(getattr(importlib.import_module(module), attr))


@pytest.mark.slow
def test_the_demo_model_embeds_searches_and_exports(small_demo_run, tmp_path, monkeypatch):
    """The trained model of the small demo, through the command, against its own caches.

    ``info`` runs as the installed command would; the other commands run in this process
    (the same ``main``), which spares each a fresh import of torch."""
    run = small_demo_run / "results" / "models" / "demo"
    clip = tmp_path / "clip.wav"
    sf.write(clip, signal(3 * SR, seed=11), SR)
    info = wavbrivl("info", run, cwd=small_demo_run)
    assert info.returncode == 0, info.stderr[-2000:]
    caches = sorted((small_demo_run / "results" / "embeddings").glob("*/vggsound/*.parquet"))
    from wavbrivl.embed.store import read_common_header

    assert (
        json.loads(info.stdout)["image_space"]["fingerprint"]
        == read_common_header(caches).fingerprint
    )
    monkeypatch.chdir(small_demo_run)
    hits = wavbrivl_in_process("search", run, clip, "--embeddings", *caches, "-k", "3")
    assert hits.returncode == 0, hits.stderr[-2000:]
    assert len(json.loads(hits.stdout)[str(clip)]) == 3
    out = tmp_path / "demo-export"
    assert wavbrivl_in_process("export", run, out).returncode == 0
    card = (out / "README.md").read_text()
    assert "- dataset: vggsound" in card and "- steps: 6 " in card
    emb = tmp_path / "e.parquet"
    monkeypatch.chdir(tmp_path)  # the export stands alone: nothing of the run is needed
    assert wavbrivl_in_process("embed-audio", out, clip, "-o", emb).returncode == 0
    monkeypatch.chdir(small_demo_run)
    direct = wavbrivl_in_process("embed-audio", run, clip, "-o", tmp_path / "d.parquet")
    assert direct.returncode == 0, direct.stderr[-2000:]
    a = np.array(pq.read_table(emb).column("embedding").to_pylist())
    b = np.array(pq.read_table(tmp_path / "d.parquet").column("embedding").to_pylist())
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_generate_writes_a_png_per_good_file_and_a_record(model_dir, inputs, tmp_path):
    """Each PNG and its record hold what the API's generate gives for the same audio, config
    and name (a second file of the same name gets ``-1``); ``--steps`` overrides the config."""
    import shutil

    from wavbrivl.configs import from_mapping
    from wavbrivl.encoders.from_config import encoder_from_config
    from wavbrivl.generate.loop import GenerateConfig
    from wavbrivl.generate.png import read_png_metadata
    from wavbrivl.generate.stage import build_vqgan

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        "embed:\n  encoder: tiny\n  seed: 0\n"
        "generate:\n  vqgan: tiny\n  steps: 2\n  cutouts: 2\n  size: [32, 32]\n  min_cut_size: 16\n"
    )
    again = tmp_path / "again" / f"{inputs['wav'].stem}.mp3"  # the same stem, other audio
    again.parent.mkdir()
    shutil.copy(inputs["mp3"], again)
    out = tmp_path / "pictures"
    files = [inputs["wav"], inputs["empty"], again]
    result = wavbrivl_in_process(
        "generate", model_dir, *files, "--config", cfg, "-o", out, "--steps", "1"
    )
    assert result.returncode == 1, result.stderr[-2000:]
    assert error_lines(result) == [f"error: {inputs['empty']}: empty file (0 bytes)"]

    model = load(model_dir)
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())

    def defaults(block: str) -> dict:
        properties = schema["properties"][block]["properties"]
        return {k: p["default"] for k, p in properties.items() if "default" in p}

    settings = {"steps": 1, "cutouts": 2, "size": [32, 32], "min_cut_size": 16}
    expected = model.generate(
        [inputs["wav"], again],
        vqgan=build_vqgan({**defaults("generate"), "vqgan": "tiny"}, model.device),
        encoder=encoder_from_config(
            {**defaults("embed"), "encoder": "tiny", "seed": 0, "device": "cpu"}
        ),
        cfg=from_mapping(GenerateConfig, settings, "generate"),
        names=["a", "a-1"],
    )
    record = json.loads((out / "generation.json").read_text())
    assert list(record) == [str(inputs["wav"]), str(again)]
    for path, name, want in zip([inputs["wav"], again], ["a", "a-1"], expected, strict=True):
        png = out / f"{name}.png"
        assert record[str(path)] == {
            "png": str(png),
            "seed": want.seed,
            "steps": 1,  # --steps, not the config's 2
            "similarity": pytest.approx(want.final_similarity, abs=1e-6),
        }
        meta = read_png_metadata(png)
        assert meta["wavbrivl.audio"] == str(path) and meta["wavbrivl.image_space"] == SPACE
        assert meta["wavbrivl.audio_model"] == model.info["model_fingerprint"]
        assert meta["wavbrivl.seed"] == str(want.seed) and meta["wavbrivl.steps"] == "1"
        assert meta["wavbrivl.similarity"] == f"{want.final_similarity:.6f}"
        with Image.open(png) as image:
            np.testing.assert_array_equal(np.asarray(image), np.asarray(want.image))
