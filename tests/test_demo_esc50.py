"""The demo's small benchmark set in ESC-50's layout (wavbrivl.demo.esc50), with real ffmpeg."""

from __future__ import annotations

import csv
import hashlib
import re
import wave

import pytest

from wavbrivl.demo.classes import DEMO_CLASSES
from wavbrivl.demo.esc50 import (
    benchmark_plan,
    category_name,
    esc50_csv_text,
    synthesise_benchmark,
    wav_argv,
)

# ESC-50's file names: {fold}-{freesound id}-{take}-{target}.wav
NAME = re.compile(r"^([1-5])-(\d+)-([A-Z])-(\d+)\.wav$")


def test_five_clips_per_class_put_one_of_each_class_in_every_fold():
    plan = benchmark_plan(seed=0, clips_per_class=5, n_classes=4)
    assert len(plan) == 20
    for fold in range(1, 6):
        assert sorted(c.target for c in plan if c.fold == fold) == [0, 1, 2, 3]
    for c in plan:
        m = NAME.match(c.filename)
        assert m, c.filename
        assert (int(m[1]), int(m[2]), m[3], int(m[4])) == (c.fold, c.src_file, "A", c.target)
    assert len({c.filename for c in plan}) == 20
    # Targets follow the demo's class order; esc10 marks the first half of the classes.
    assert [c.category for c in plan[::5]] == [category_name(k) for k in DEMO_CLASSES[:4]]
    assert [c.esc10 for c in plan[::5]] == [True, True, False, False]


def test_seven_clips_wrap_around_the_folds():
    plan = benchmark_plan(seed=0, clips_per_class=7, n_classes=2)
    assert [c.fold for c in plan if c.target == 1] == [1, 2, 3, 4, 5, 1, 2]


def test_the_plan_is_a_function_of_the_seed():
    a = benchmark_plan(seed=0, clips_per_class=3, n_classes=3)
    assert a == benchmark_plan(seed=0, clips_per_class=3, n_classes=3)
    b = benchmark_plan(seed=1, clips_per_class=3, n_classes=3)
    assert [c.filename for c in a] == [c.filename for c in b]
    assert [c.params for c in a] != [c.params for c in b]
    assert len({c.params for c in a}) == len(a)  # every clip its own draw


def test_category_names_are_esc50_style():
    names = [category_name(c) for c in DEMO_CLASSES]
    assert all(re.fullmatch(r"[a-z0-9]+(_[a-z0-9]+)*", n) for n in names), names
    assert len(set(names)) == len(names)


def test_bad_counts_are_refused():
    with pytest.raises(ValueError, match="clips_per_class must be >= 1, got 0"):
        benchmark_plan(seed=0, clips_per_class=0)


def test_the_argv_writes_esc50s_wav_format_through_the_file_protocol(tmp_path):
    clip = benchmark_plan(seed=0, clips_per_class=1, n_classes=2)[1]
    argv = wav_argv(clip, tmp_path / "-x.wav", ffmpeg="ffmpeg")
    assert argv[-1] == f"file:{tmp_path / '-x.wav'}"
    joined = " ".join(argv)
    for part in ("-c:a pcm_s16le", "-ar 44100", "-ac 1", "-t 5", "-f wav"):
        assert part in joined, part


def test_synthesised_set_has_the_official_layout_and_format(tmp_path):
    logs = []
    plan = synthesise_benchmark(
        tmp_path / "esc50", seed=0, clips_per_class=5, n_classes=2, log=logs.append
    )
    with open(tmp_path / "esc50/meta/esc50.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["filename", "fold", "target", "category", "esc10", "src_file", "take"]
    assert [r[0] for r in rows[1:]] == [c.filename for c in plan]
    assert {(r[1], r[2], r[4], r[6]) for r in rows[1:] if r[0] == plan[0].filename} == {
        ("1", "0", "True", "A")
    }
    files = sorted(p.name for p in (tmp_path / "esc50/audio").iterdir())
    assert files == sorted(c.filename for c in plan)  # no temporary file left
    digests = set()
    for name in files:
        with wave.open(str(tmp_path / "esc50/audio" / name)) as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (44100, 1, 2)
            assert w.getnframes() == 5 * 44100
            frames = w.readframes(w.getnframes())
        assert any(frames), name  # not silence
        digests.add(hashlib.sha256(frames).hexdigest())
    assert len(digests) == len(files)
    assert logs == [
        f"demo: benchmark set of 10 clips (5 per class, 5 folds) in ESC-50's layout -> "
        f"{tmp_path / 'esc50'}"
    ]


def test_the_csv_text_lists_every_clip_in_order():
    plan = benchmark_plan(seed=0, clips_per_class=2, n_classes=2)
    lines = esc50_csv_text(plan).splitlines()
    assert lines[0] == "filename,fold,target,category,esc10,src_file,take"
    assert lines[1] == f"1-100000-A-0.wav,1,0,{plan[0].category},True,100000,A"
    assert lines[4] == f"2-101001-A-1.wav,2,1,{plan[3].category},False,101001,A"


def test_a_failing_clip_is_named_and_no_csv_is_written(tmp_path, monkeypatch):
    from wavbrivl.demo import esc50

    real = esc50.wav_argv

    def broken(clip, out_path, *, ffmpeg):
        argv = real(clip, out_path, ffmpeg=ffmpeg)
        if clip.target == 1 and clip.fold == 2:
            argv[argv.index("-filter_complex") + 1] = "nosuchfilter[a]"
        return argv

    monkeypatch.setattr(esc50, "wav_argv", broken)
    with pytest.raises(esc50.DemoSynthesisError, match=r"benchmark clip 2-101001-A-1\.wav: ffmpeg"):
        synthesise_benchmark(tmp_path, seed=0, clips_per_class=2, n_classes=2, log=print)
    assert not (tmp_path / "meta").exists()
    assert [p.name for p in (tmp_path / "audio").iterdir() if p.name.startswith(".")] == []


def test_esc10_is_the_first_half_of_the_classes_rounded_down():
    plan = benchmark_plan(seed=0, clips_per_class=1, n_classes=3)
    assert [c.esc10 for c in plan] == [True, False, False]


def test_the_gain_draw_is_pinned_and_within_six_db_of_full_scale():
    # The draw is part of the artefact: these values were drawn once and are pinned here.
    plan = benchmark_plan(seed=0, clips_per_class=3, n_classes=2)
    gains = [dict(c.params)["gain_db"] for c in plan]
    assert gains == [-2.06, -2.79, -2.35, -4.62, -5.1, -4.44]
    many = benchmark_plan(seed=5, clips_per_class=10)
    assert all(-6.0 <= dict(c.params)["gain_db"] <= 0.0 for c in many)


def test_the_csv_text_ends_lines_with_newlines_only():
    text = esc50_csv_text(benchmark_plan(seed=0, clips_per_class=1, n_classes=2))
    assert "\r" not in text and text.count("\n") == 3


def test_defaults_write_five_clips_per_class_of_seed_0_and_a_rerun_rewrites_them(tmp_path):
    out = tmp_path / "esc50"
    plan = synthesise_benchmark(out, n_classes=1, log=lambda _line: None)
    assert plan == benchmark_plan(seed=0, clips_per_class=5, n_classes=1)
    first = {p.name: p.read_bytes() for p in (out / "audio").iterdir()}
    # the same call into the existing folder: the same files, nothing else
    again = synthesise_benchmark(out, seed=3, clips_per_class=2, n_classes=1, log=print)
    assert again == benchmark_plan(seed=3, clips_per_class=2, n_classes=1)
    names = {p.name for p in (out / "audio").iterdir()}
    assert names == set(first)  # the two rewritten, the others kept
    changed = [
        c.filename for c in again if (out / "audio" / c.filename).read_bytes() != first[c.filename]
    ]
    assert changed == [c.filename for c in again]


def test_a_failing_clips_message_ends_with_ffmpegs_own_last_500_characters(tmp_path, monkeypatch):
    from wavbrivl.demo import esc50

    real = esc50.wav_argv
    bad = "n" * 700  # a filter name that makes ffmpeg's complaint longer than 500 characters

    def broken(clip, out_path, *, ffmpeg):
        argv = real(clip, out_path, ffmpeg=ffmpeg)
        argv[argv.index("-filter_complex") + 1] = f"{bad}[a]"
        return argv

    monkeypatch.setattr(esc50, "wav_argv", broken)
    with pytest.raises(esc50.DemoSynthesisError) as info:
        synthesise_benchmark(tmp_path, clips_per_class=1, n_classes=1, threads=1, log=print)
    head, tail = re.match(
        r"(benchmark clip \S+: ffmpeg exit \d+: )(.*)", str(info.value), re.S
    ).groups()
    assert len(tail) == 500
    assert not tail.startswith(("b'", 'b"'))  # text, not bytes
    assert "nnnnnnnnnn" in tail
