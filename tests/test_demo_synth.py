"""The synthetic demo dataset: plan, formats, and real ffmpeg renders of a tiny set."""

from __future__ import annotations

import csv
import io
import json
import re
import stat
import struct
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest

from wavbrivl.clip_ids import is_safe_clip_id
from wavbrivl.demo import (
    DEMO_CLASSES,
    DemoSynthesisError,
    MissingFilter,
    clip_plan,
    ffmpeg_argv,
    synthesise_demo,
)
from wavbrivl.demo.files import (
    audioset_segments_text,
    class_labels_text,
    sources_csv_text,
    vggsound_csv_text,
)
from wavbrivl.demo.plan import AUDIOSET, VGGSOUND, n_test_clips
from wavbrivl.demo.render import check_filters
from wavbrivl.ffmpeg_bin import ffmpeg_exe

DEFAULTS = {"clips_per_class": 10, "audioset_clips_per_class": 3, "test_fraction": 0.25}
TINY = {
    "seed": 7,
    "clips_per_class": 1,
    "audioset_clips_per_class": 1,
    "test_fraction": 0.25,
    "duration_s": 2.0,
    "width": 64,
    "height": 48,
    "fps": 12,
    "threads": 2,
}
YT_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{10}")


def plan_for(synth_kwargs: dict) -> list:
    """The plan that synthesise_demo(**synth_kwargs) renders."""
    keys = ("seed", "clips_per_class", "audioset_clips_per_class", "test_fraction",
            "n_classes", "duration_s")  # fmt: skip
    return clip_plan(**{k: synth_kwargs[k] for k in keys if k in synth_kwargs})


def plan_texts(seed: int, videos_dir: Path) -> tuple[str, str, str]:
    plan = clip_plan(seed=seed, **DEFAULTS)
    return (
        vggsound_csv_text(plan),
        audioset_segments_text(plan),
        sources_csv_text(plan, videos_dir),
    )


# --- the plan (no ffmpeg) -----------------------------------------------------------------


def test_plan_and_argv_are_deterministic_for_a_seed_and_change_with_it(tmp_path):
    a, b = clip_plan(seed=0, **DEFAULTS), clip_plan(seed=0, **DEFAULTS)
    other = clip_plan(seed=1, **DEFAULTS)
    assert a == b
    out = tmp_path / "x.mp4"
    assert [ffmpeg_argv(s, out) for s in a] == [ffmpeg_argv(s, out) for s in b]
    assert not {s.video_id for s in a} & {s.video_id for s in other}
    # Per-clip variation follows the seed too, not only the ids.
    assert [s.params for s in a] != [s.params for s in other]
    assert ffmpeg_argv(a[0], out) != ffmpeg_argv(other[0], out)


def test_clips_of_a_class_vary(tmp_path):
    plan = clip_plan(seed=0, **DEFAULTS)
    for cls in DEMO_CLASSES:
        graphs = {ffmpeg_argv(s, tmp_path / "x.mp4")[7] for s in plan if s.class_key == cls.key}
        assert len(graphs) == 13, cls.name  # 10 + 3 clips, all different filtergraphs


def test_csv_texts_are_byte_identical_for_a_seed_and_differ_for_another(tmp_path):
    assert plan_texts(0, tmp_path) == plan_texts(0, tmp_path)
    for same, other in zip(plan_texts(0, tmp_path), plan_texts(1, tmp_path), strict=True):
        assert same != other


@pytest.mark.parametrize("seed", range(20))
def test_ids_look_like_youtube_ids_and_are_unique_and_safe(seed):
    plan = clip_plan(seed=seed, **DEFAULTS)
    ids = [s.video_id for s in plan]
    assert len(set(ids)) == len(ids) == len(DEMO_CLASSES) * 13
    for video_id in ids:
        assert YT_ID.fullmatch(video_id), video_id  # never a leading '-'
        assert is_safe_clip_id(video_id)


def test_class_table_has_distinct_names_mids_and_a_comma_label():
    assert len(DEMO_CLASSES) >= 8
    assert len({c.name for c in DEMO_CLASSES}) == len({c.mid for c in DEMO_CLASSES}) == 8
    assert all(re.fullmatch(r"/m/0demo\d\d", c.mid) for c in DEMO_CLASSES)
    assert any("," in c.name for c in DEMO_CLASSES)


def test_vggsound_csv_is_headerless_with_quoted_comma_labels():
    plan = clip_plan(seed=0, **DEFAULTS)
    text = vggsound_csv_text(plan)
    rows = list(csv.reader(io.StringIO(text)))
    vgg = [s for s in plan if s.dataset == VGGSOUND]
    assert len(rows) == len(vgg) == 80
    assert [r[0] for r in rows] == [s.video_id for s in vgg]  # first line is data
    assert all(len(r) == 4 for r in rows)
    assert '"engine, idling"' in text
    assert {r[2] for r in rows} == {c.name for c in DEMO_CLASSES}
    assert {r[3] for r in rows} == {"train", "test"}
    starts = [int(r[1]) for r in rows]
    assert set(starts) == {0, 1, 2}  # random whole seconds; [start, start+10) fits in 12 s


def test_audioset_segments_have_the_real_header_and_row_format():
    plan = clip_plan(seed=0, **DEFAULTS)
    lines = audioset_segments_text(plan).splitlines()
    assert lines[0] == "# Segments csv created Sun Mar  5 10:54:31 2017"
    assert lines[1] == ("# num_ytids=24, num_segs=24, num_unique_labels=8, num_positive_labels=24")
    assert lines[2] == "# YTID, start_seconds, end_seconds, positive_labels"
    rows = list(csv.reader(io.StringIO("\n".join(lines[3:])), skipinitialspace=True))
    audioset = [s for s in plan if s.dataset == AUDIOSET]
    assert [r[0] for r in rows] == [s.video_id for s in audioset]
    assert all(r[1:3] == ["1.000", "11.000"] for r in rows)
    assert [r[3] for r in rows] == [s.mid for s in audioset]
    assert all(line.endswith(f'"{s.mid}"') for line, s in zip(lines[3:], audioset, strict=True))
    # A second set: no id shared with the VGGSound clips.
    assert not {r[0] for r in rows} & {s.video_id for s in plan if s.dataset == VGGSOUND}


def test_class_labels_indices_parse_with_header_and_comma_names():
    rows = list(csv.DictReader(io.StringIO(class_labels_text(DEMO_CLASSES))))
    assert [(int(r["index"]), r["mid"], r["display_name"]) for r in rows] == [
        (i, c.mid, c.name) for i, c in enumerate(DEMO_CLASSES)
    ]


@pytest.mark.parametrize(("n", "fraction", "n_test"), [(10, 0.25, 3), (8, 0.25, 2), (10, 0.5, 5),
                                                      (1, 0.25, 0), (2, 0.1, 1), (3, 0.9, 2),
                                                      (4, 0.0, 0), (4, 1.0, 4)])  # fmt: skip
def test_n_test_clips(n, fraction, n_test):
    assert n_test_clips(n, fraction) == n_test


def test_split_is_stratified_per_class():
    plan = clip_plan(seed=3, clips_per_class=8, audioset_clips_per_class=2, test_fraction=0.25)
    for cls in DEMO_CLASSES:
        splits = [s.split for s in plan if s.dataset == VGGSOUND and s.class_key == cls.key]
        assert sorted(splits) == ["test"] * 2 + ["train"] * 6, cls.name
    assert {s.split for s in plan if s.dataset == AUDIOSET} == {"eval"}
    # Which clips are held out is drawn per class, not always the same indices.
    held_out = {
        tuple(s.index for s in plan if s.class_key == c.key and s.split == "test")
        for c in DEMO_CLASSES
    }
    assert len(held_out) > 1


def test_short_files_keep_segments_inside_the_file():
    plan = clip_plan(seed=0, duration_s=2.0, **DEFAULTS)
    assert {s.start_s for s in plan if s.dataset == VGGSOUND} == {0.0}
    assert {(s.start_s, s.end_s) for s in plan if s.dataset == AUDIOSET} == {(0.0, 2.0)}


def test_n_classes_takes_the_first_classes():
    plan = clip_plan(seed=0, n_classes=3, **DEFAULTS)
    assert {s.class_key for s in plan} == {c.key for c in DEMO_CLASSES[:3]}
    with pytest.raises(ValueError, match="n_classes"):
        clip_plan(seed=0, n_classes=99, **DEFAULTS)


def test_argv_is_a_list_with_a_safe_output_path_and_the_required_codecs():
    spec = clip_plan(seed=0, **DEFAULTS)[0]
    argv = ffmpeg_argv(spec, Path("-i.mp4"), ffmpeg="/opt/ff", duration_s=5, width=64, height=48)
    assert argv[0] == "/opt/ff"
    assert argv[-3:] == ["-f", "mp4", "file:-i.mp4"]  # cannot be read as an option
    joined = " ".join(argv)
    for flags in ("-c:v libx264", "-pix_fmt yuv420p", "-preset veryfast", "-c:a aac",
                  "-movflags +faststart", "-t 5", "-ac 2", "-ar 44100"):  # fmt: skip
        assert flags in joined
    assert "s=64x48" in argv[argv.index("-filter_complex") + 1]
    with pytest.raises(ValueError, match="even"):
        ffmpeg_argv(spec, Path("x.mp4"), width=63)


def test_every_class_filter_exists_in_our_ffmpeg():
    check_filters(DEMO_CLASSES, ffmpeg_exe())


def fake_ffmpeg(tmp_path: Path, body: str) -> str:
    script = tmp_path / "fake-ffmpeg"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def test_a_missing_filter_is_named(tmp_path):
    listing = " TS volume  A->A  Change volume.\\n .. color  |->V  Colour.\\n"
    ffmpeg = fake_ffmpeg(tmp_path, f'printf "Filters:\\n ------\\n{listing}"')
    with pytest.raises(MissingFilter, match=r"vignette \(class 'engine, idling'\)"):
        check_filters(DEMO_CLASSES[:1], ffmpeg)


def test_a_failing_clip_is_named_and_the_others_are_kept(tmp_path):
    # ffmpeg that breaks only on the white-noise class (the one using anoisesrc).
    real = ffmpeg_exe()
    ffmpeg = fake_ffmpeg(
        tmp_path,
        f'case "$*" in *anoisesrc*) echo "boom: no noise today" >&2; exit 1;; esac\n'
        f'exec "{real}" "$@"',
    )
    out = tmp_path / "demo"
    kwargs = {**TINY, "audioset_clips_per_class": 0, "n_classes": 3}
    with pytest.raises(DemoSynthesisError, match="boom: no noise today") as err:
        synthesise_demo(out, ffmpeg=ffmpeg, log=lambda line: None, **kwargs)
    by_class = {s.class_key: s.video_id for s in plan_for(kwargs)}
    assert by_class["static"] in str(err.value) and "1 of 3" in str(err.value)
    assert by_class["hum"] not in str(err.value)
    left = sorted(p.name for p in (out / "videos").iterdir())
    assert left == sorted(
        f"{by_class[k]}{ext}" for k in ("hum", "whistle") for ext in (".mp4", ".synth.json")
    )  # no temp file, no half mp4 of the failed clip
    assert not (out / "vggsound.csv").exists() and not (out / "demo_info.json").exists()


# --- a real render of a tiny set -----------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    logs: list[str] = []
    info = synthesise_demo(out, log=logs.append, **TINY)
    return out, info, logs, plan_for(TINY)


def mp4_of(out: Path, plan, class_key: str) -> Path:
    spec = next(s for s in plan if s.class_key == class_key and s.dataset == VGGSOUND)
    return out / "videos" / f"{spec.video_id}.mp4"


def run_ffmpeg(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([ffmpeg_exe(), "-nostdin", "-hide_banner", *args], capture_output=True)


def decoded_rgb_frame(path: Path, width: int = 64, height: int = 48) -> np.ndarray:
    proc = run_ffmpeg("-v", "error", "-ss", "1", "-i", str(path), "-frames:v", "1",
                      "-f", "rawvideo", "-pix_fmt", "rgb24", "-")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return np.frombuffer(proc.stdout, np.uint8).reshape(height, width, 3)  # (H, W, 3)


def spectral_centroid(path: Path, rate: int = 16000) -> float:
    proc = run_ffmpeg("-v", "error", "-i", str(path), "-f", "f32le", "-ac", "1", "-ar", str(rate),
                      "-")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    samples = np.frombuffer(proc.stdout, np.float32)  # (T,)
    assert samples.size > rate  # more than a second of sound
    power = np.abs(np.fft.rfft(samples)) ** 2
    freqs = np.fft.rfftfreq(samples.size, 1 / rate)
    return float((power * freqs).sum() / power.sum())


def top_level_boxes(path: Path) -> list[str]:
    """Types of the top-level MP4 boxes, in file order."""
    data, pos, boxes = path.read_bytes(), 0, []
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if size == 1:  # 64-bit size follows the type
            size = struct.unpack(">Q", data[pos + 8 : pos + 16])[0]
        elif size == 0:  # box runs to the end of the file
            size = len(data) - pos
        assert size >= 8, f"corrupt box at {pos}"
        boxes.append(kind.decode("latin-1"))
        pos += size
    assert pos == len(data)
    return boxes


def test_tiny_demo_writes_every_listed_file(tiny_demo):
    out, info, logs, plan = tiny_demo
    rows = list(csv.DictReader((out / "sources.csv").open()))
    assert [r["id"] for r in rows] == [s.video_id for s in plan]
    for row in rows:
        url = urlparse(row["url"])
        assert url.scheme == "file" and Path(unquote(url.path)).is_absolute()
        assert Path(unquote(url.path)) == (out / "videos" / f"{row['id']}.mp4").resolve()
        assert Path(unquote(url.path)).stat().st_size > 1000
    assert (out / "vggsound.csv").read_text() == vggsound_csv_text(plan)
    assert (out / "audioset" / "segments.csv").read_text() == audioset_segments_text(plan)
    on_disk = json.loads((out / "demo_info.json").read_text())
    assert on_disk["counts"] == {"classes": 8, "vggsound": 8, "vggsound_train": 8,
                                 "vggsound_test": 0, "audioset": 8, "videos": 16}  # fmt: skip
    assert on_disk["seed"] == 7 and on_disk["ffmpeg_version"].startswith("ffmpeg version")
    assert [c["name"] for c in on_disk["classes"]] == [c.name for c in DEMO_CLASSES]
    assert info["written"] == 16 and info["reused"] == 0
    assert len(logs) == 9 and "16 clips in 8 classes" in logs[-1]
    assert not list(out.rglob("*.tmp"))


def test_tiny_demo_mp4s_decode_with_h264_aac_and_faststart(tiny_demo):
    out, _info, _logs, plan = tiny_demo
    for spec in plan:
        path = out / "videos" / f"{spec.video_id}.mp4"
        decode = run_ffmpeg("-v", "error", "-i", str(path), "-f", "null", "-")
        assert decode.returncode == 0 and not decode.stderr, (spec.label, decode.stderr)
        probe = run_ffmpeg("-i", str(path)).stderr.decode()
        streams = re.findall(r"Stream #0:\d.*?: (Video|Audio): (.*)", probe)
        assert [(kind, desc.split()[0]) for kind, desc in streams] == [
            ("Video", "h264"),
            ("Audio", "aac"),
        ], probe
        assert "64x48" in streams[0][1] and "12 fps" in streams[0][1]
        assert "44100 Hz, stereo" in streams[1][1]
        assert re.search(r"Duration: 00:00:0[12]\.", probe), probe
        boxes = top_level_boxes(path)
        assert boxes.index("moov") < boxes.index("mdat"), boxes


def test_tiny_demo_classes_look_different(tiny_demo):
    out, _info, _logs, plan = tiny_demo
    mean = {k: decoded_rgb_frame(mp4_of(out, plan, k)).reshape(-1, 3).mean(0)
            for k in ("hum", "whistle", "static", "rumble")}  # fmt: skip
    red, green, blue = mean["hum"]
    assert red > green + 60 and red > blue + 60
    red, green, blue = mean["whistle"]
    assert blue > red + 60 and blue > green + 40
    assert np.ptp(mean["static"]) < 20  # grey
    red, green, blue = mean["rumble"]
    assert red > green > blue and red < 140  # dark brown
    keys = list(mean)
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            assert np.linalg.norm(mean[a] - mean[b]) > 40, (a, b)


def test_tiny_demo_classes_sound_different(tiny_demo):
    out, _info, _logs, plan = tiny_demo
    centroid = {k: spectral_centroid(mp4_of(out, plan, k)) for k in
                ("hum", "whistle", "static", "rumble")}  # fmt: skip
    assert centroid["hum"] < 400 < 1500 < centroid["whistle"]
    assert centroid["rumble"] < 600 < 2500 < centroid["static"]


def test_a_rerun_reuses_identical_renders_and_rewrites_the_same_bytes(tiny_demo):
    out, _info, _logs, plan = tiny_demo
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.rglob("*") if p.is_file()}
    info = synthesise_demo(out, log=lambda line: None, **TINY)
    assert info["written"] == 0 and info["reused"] == 16
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == {p: data for p, (_mtime, data) in before.items()}
    for path, (mtime, _data) in before.items():
        if path.suffix == ".mp4":
            assert path.stat().st_mtime_ns == mtime, path
