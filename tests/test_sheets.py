"""The evaluation sheets: generation-folder reader, grid, study kit, Table 1, automatic score.

Fixtures are synthesised here: each clip's generated image is a flat colour of its own and
its audio a tone of its own frequency, so a test can tell from the page's embedded media
which clip an image or a sound really is, and check it against the answer key.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import soundfile as sf
from media_factory import dominant_hz
from PIL import Image

from wavbrivl.atomic import write_table_atomic
from wavbrivl.clip_ids import UnsafeClipId
from wavbrivl.extract.media import MEDIA_SCHEMA
from wavbrivl.generate.records import read_targets
from wavbrivl.manifest.labels import read_clip_labels
from wavbrivl.sheets import load_generation_run
from wavbrivl.sheets.analysis import (
    AnswerFileError,
    analyse,
    bootstrap_percent_ci,
    main,
    read_answers,
    score_answers,
    table1,
)
from wavbrivl.sheets.auto2afc import (
    auto_two_choice,
    auto_two_choice_study,
    write_auto_scores,
)
from wavbrivl.sheets.grid import plot_grid, select_columns, write_grid
from wavbrivl.sheets.study import read_key, write_study
from wavbrivl.sheets.trials import build_trials

EVIL_LABEL = '<script>alert(1)</script> & "dog"'
RATE = 16_000

# clip id -> (label, colour of its generated image, tone of its audio in Hz)
CLIPS = {
    "dogA_0": ("dog", (220, 30, 30), 400.0),
    "dogB_1000": ("dog", (180, 60, 20), 500.0),
    "rainA_0": ("rain", (30, 30, 220), 600.0),
    "rainB_500": ("rain", (20, 90, 200), 700.0),
    "bellA_0": ("bell", (30, 200, 30), 800.0),
    "bellB_0": ("bell", (90, 220, 60), 900.0),
}


def make_run(
    folder: Path,
    clips: dict[str, tuple[str, tuple[int, int, int], float]] = CLIPS,
    shade: int = 0,
    size: int = 32,
) -> Path:
    """A generation folder: one flat-colour PNG per clip + generation.json."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for i, (clip_id, (label, colour, _)) in enumerate(clips.items()):
        rgb = tuple(max(0, min(255, c + shade)) for c in colour)
        Image.new("RGB", (size, size), rgb).save(folder / f"{clip_id}.png")
        entries.append({"clip_id": clip_id, "label": label, "seed": i, "final_similarity": 0.3})
    (folder / "generation.json").write_text(json.dumps({"clips": entries}))
    return folder


def flac_tone(hz: float, seconds: float = 1.0) -> bytes:
    t = np.arange(int(seconds * RATE)) / RATE
    buffer = io.BytesIO()
    sf.write(buffer, 0.5 * np.sin(2 * np.pi * hz * t), RATE, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def make_media(path: Path, clips=CLIPS) -> Path:
    """A media Parquet holding each clip's tone (+ one failed row that must be ignored)."""
    rows = [
        {
            "clip_id": cid,
            "status": "ok",
            "reason": "",
            "notes": "",
            "audio": flac_tone(hz),
            "n_samples": RATE,
            "sample_rate": RATE,
        }
        for cid, (_, _, hz) in clips.items()
    ]
    rows.append({"clip_id": "broken_0", "status": "bad_media", "reason": "x", "notes": ""})
    write_table_atomic(path, pa.Table.from_pylist(rows, schema=MEDIA_SCHEMA))
    return path


def make_study(tmp_path: Path, *, show_labels: bool = False, clips=CLIPS, seed: int = 0):
    runs = [
        load_generation_run("encoder-a", make_run(tmp_path / "gen_a", clips)),
        load_generation_run("encoder-b", make_run(tmp_path / "gen_b", clips, shade=20)),
    ]
    media = make_media(tmp_path / "media.parquet", clips)
    kit = write_study(
        runs,
        [media],
        tmp_path / "study.html",
        tmp_path / "key.json",
        seed=seed,
        show_labels=show_labels,
    )
    return runs, kit


def page_json(html: str) -> dict:
    match = re.search(r'<script type="application/json" id="study-data">(.*?)</script>', html, re.S)
    assert match, "no study data in the page"
    return json.loads(match.group(1))


def decode_data_uri(uri: str) -> tuple[str, bytes]:
    head, payload = uri.split(",", 1)
    return head, base64.b64decode(payload)


def write_answers(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(
            fh, fieldnames=["study_id", "trial_id", "choice", "session_id", "timestamp"]
        )
        writer.writeheader()
        writer.writerows(rows)
    return path


def answers_for(key: dict, session: str, pick) -> list[dict]:
    """One answer per trial, ``pick(trial) -> choice``."""
    return [
        {
            "study_id": key["study_id"],
            "trial_id": t["trial_id"],
            "choice": pick(t),
            "session_id": session,
            "timestamp": "2026-01-01T00:00:00Z",
        }
        for t in key["trials"]
    ]


def other_side(side: str) -> str:
    return "right" if side == "left" else "left"


# --- generation folders -------------------------------------------------------------------


def test_generation_run_reads_clips_in_order(tmp_path):
    run = load_generation_run("a", make_run(tmp_path / "g"))
    assert list(run.clips) == list(CLIPS)
    assert run.clips["rainA_0"].label == "rain" and run.clips["rainA_0"].classes == ("rain",)
    assert run.clips["bellA_0"].seed == 4


def test_generation_run_refuses_missing_png_and_unsafe_ids(tmp_path):
    folder = make_run(tmp_path / "g")
    (folder / "rainA_0.png").unlink()
    with pytest.raises(FileNotFoundError, match="rainA_0.png"):
        load_generation_run("a", folder)
    (folder / "generation.json").write_text(
        json.dumps({"clips": [{"clip_id": "../x", "label": "a"}]})
    )
    with pytest.raises(UnsafeClipId):
        load_generation_run("a", folder)


def test_manifest_labels_replace_generation_labels(tmp_path):
    run = load_generation_run("a", make_run(tmp_path / "g"))
    rows = [
        {"clip_id": cid, "labels": [f"/m/{lab}"], "label_names": [lab.title()]}
        for cid, (lab, _, _) in CLIPS.items()
    ]
    manifest = tmp_path / "manifest.parquet"
    write_table_atomic(manifest, pa.Table.from_pylist(rows))
    relabelled = run.with_labels(read_clip_labels(manifest))
    assert relabelled.clips["dogA_0"].label == "Dog"
    assert relabelled.clips["dogA_0"].classes == ("/m/dog",)
    with pytest.raises(KeyError, match="dogA_0"):
        run.with_labels({})


# --- grid ---------------------------------------------------------------------------------


def test_select_columns_takes_one_clip_per_label_in_turn(tmp_path):
    run = load_generation_run("a", make_run(tmp_path / "g"))
    assert select_columns(run, 4) == ["bellA_0", "dogA_0", "rainA_0", "bellB_0"]
    assert len(select_columns(run, 100)) == len(CLIPS)


def test_grid_puts_runs_in_rows_and_clips_in_columns(tmp_path):
    red = {"r1_0": ("dog", (255, 0, 0), 0), "r2_0": ("cat", (255, 0, 0), 0)}
    blue = {"r1_0": ("dog", (0, 0, 255), 0), "r2_0": ("cat", (0, 0, 255), 0)}
    runs = [
        load_generation_run("top", make_run(tmp_path / "top", red)),
        load_generation_run("bottom", make_run(tmp_path / "bottom", blue)),
    ]
    png, pdf = tmp_path / "grid.png", tmp_path / "grid.pdf"
    assert write_grid(runs, png, pdf) == ["r2_0", "r1_0"]  # labels sorted: cat, dog
    pixels = np.asarray(Image.open(png).convert("RGB")).astype(int)
    is_red = (pixels[..., 0] > 200) & (pixels[..., 2] < 50)
    is_blue = (pixels[..., 2] > 200) & (pixels[..., 0] < 50)
    red_rows, blue_rows = np.nonzero(is_red)[0], np.nonzero(is_blue)[0]
    assert red_rows.size and blue_rows.size
    assert red_rows.max() < blue_rows.min()  # the first run sits above the second
    red_cols = np.nonzero(is_red)[1]  # two columns: two separate bands of red
    assert np.diff(np.unique(red_cols)).max() > 1
    assert pdf.read_bytes().startswith(b"%PDF")


def test_grid_shows_labels_as_text_and_refuses_a_clip_a_run_lacks(tmp_path):
    odd = {"a_0": (r"$\notacommand$ 50%", (255, 0, 0), 0), "b_0": (EVIL_LABEL, (0, 255, 0), 0)}
    full = load_generation_run("full", make_run(tmp_path / "full", odd))
    partial = load_generation_run("partial", make_run(tmp_path / "partial", {"a_0": odd["a_0"]}))
    fig, columns = plot_grid([full], ["a_0", "b_0"])
    fig.canvas.draw()  # mathtext would fail here on "\notacommand"
    labels = [ax.get_xlabel() for ax in fig.axes[-2:]]
    assert labels[0].startswith("$\\notacommand$")
    with pytest.raises(KeyError, match=r"run 'partial'.*b_0"):
        plot_grid([full, partial], ["a_0", "b_0"])
    with pytest.raises(KeyError, match="nope_0"):
        plot_grid([full], ["nope_0"])


# --- trials and the study page -------------------------------------------------------------


def test_trials_pair_each_clip_with_another_class_and_balance_sides(tmp_path):
    runs = [load_generation_run("a", make_run(tmp_path / "g"))]
    trials = build_trials(runs, seed=3)
    assert sorted(t.clip_id for t in trials) == sorted(CLIPS)
    for t in trials:
        assert CLIPS[t.other_clip_id][0] != CLIPS[t.clip_id][0]
        assert t.label == CLIPS[t.clip_id][0]
    sides = [t.match_side for t in trials]
    assert sides.count("left") == sides.count("right") == 3
    assert build_trials(runs, seed=3) == trials
    assert [t.clip_id for t in build_trials(runs, seed=4)] != [t.clip_id for t in trials]


def test_trials_need_two_classes(tmp_path):
    one_class = {k: v for k, v in CLIPS.items() if v[0] == "dog"}
    runs = [load_generation_run("a", make_run(tmp_path / "g", one_class))]
    with pytest.raises(ValueError, match="another class"):
        build_trials(runs)


def test_page_shows_the_key_sides_with_the_right_media(tmp_path):
    runs, kit = make_study(tmp_path)
    html = kit.html_path.read_text()
    data = page_json(html)
    key = read_key(kit.key_path)
    assert data["study_id"] == key["study_id"] == kit.study_id
    assert len(key["trials"]) == len(data["trials"]) == 2 * len(CLIPS)
    folders = {run.name: run.folder for run in runs}
    for shown, truth in zip(data["trials"], key["trials"], strict=True):
        assert shown["trial_id"] == truth["trial_id"]
        head, wav = decode_data_uri(data["audio"][shown["audio"]])
        assert head == "data:audio/wav;base64"
        samples, rate = sf.read(io.BytesIO(wav))
        assert rate == RATE
        assert abs(dominant_hz(samples, rate) - CLIPS[truth["clip_id"]][2]) < 5
        for side in ("left", "right"):
            expect = truth["clip_id"] if side == truth["match_side"] else truth["other_clip_id"]
            image = decode_data_uri(data["images"][shown[side]])[1]
            assert image == (folders[truth["run"]] / f"{expect}.png").read_bytes()


def test_page_keeps_the_key_out(tmp_path):
    _, kit = make_study(tmp_path)
    html = kit.html_path.read_text()
    for secret in [*CLIPS, "match_side", "encoder-a", "encoder-b", "rain", "bell"]:
        assert secret not in html
    assert "localStorage" in html and "study_id,trial_id" not in html  # header built in JS
    for src in re.findall(r'src="([^"]*)"', html) + re.findall(r'href="([^"]*)"', html):
        assert src.startswith("data:"), src  # nothing loaded from elsewhere


def test_labels_are_escaped_in_the_page(tmp_path):
    clips = dict(CLIPS)
    clips["evil_0"] = (EVIL_LABEL, (10, 10, 10), 1000.0)
    _, kit = make_study(tmp_path, show_labels=True, clips=clips)
    html = kit.html_path.read_text()
    assert "<script>alert" not in html and "</script> &" not in html
    labels = {t.get("label") for t in page_json(html)["trials"]}
    assert EVIL_LABEL in labels  # survives as data, shown with textContent
    key = read_key(kit.key_path)
    assert EVIL_LABEL in {t["label"] for t in key["trials"]}


def test_study_id_changes_with_an_image(tmp_path):
    runs, kit = make_study(tmp_path)
    media = [tmp_path / "media.parquet"]
    same = write_study(runs, media, tmp_path / "s.html", tmp_path / "k.json")
    assert same.study_id == kit.study_id
    Image.new("RGB", (32, 32), (1, 2, 3)).save(tmp_path / "gen_a" / "dogA_0.png")
    again = write_study(runs, media, tmp_path / "s.html", tmp_path / "k.json")
    assert again.study_id != kit.study_id


def test_study_refuses_clips_without_audio(tmp_path):
    runs = [load_generation_run("a", make_run(tmp_path / "g"))]
    media = make_media(tmp_path / "m.parquet", {k: v for k, v in CLIPS.items() if k != "bellB_0"})
    with pytest.raises(KeyError, match="bellB_0"):
        write_study(runs, [media], tmp_path / "s.html", tmp_path / "k.json")
    assert not (tmp_path / "s.html").exists()
    with pytest.raises(KeyError, match="bellB_0: not in the media shards"):  # and why
        write_study(runs, [media], tmp_path / "s.html", tmp_path / "k.json")


def test_study_refuses_a_clip_in_two_media_shards(tmp_path):
    runs = [load_generation_run("a", make_run(tmp_path / "g"))]
    media = [
        make_media(tmp_path / "m0.parquet"),
        make_media(tmp_path / "m1.parquet", {"dogA_0": CLIPS["dogA_0"]}),
    ]
    with pytest.raises(ValueError, match=r"m1\.parquet.*dogA_0.*twice"):
        write_study(runs, media, tmp_path / "s.html", tmp_path / "k.json")
    assert not (tmp_path / "s.html").exists()


# --- Table 1 ------------------------------------------------------------------------------


def test_table1_counts_positive_negative_neither(tmp_path):
    _, kit = make_study(tmp_path)
    key = read_key(kit.key_path)
    perfect = write_answers(tmp_path / "s1.csv", answers_for(key, "s1", lambda t: t["match_side"]))
    trial_ids = [t["trial_id"] for t in key["trials"]]

    def mixed(t):  # every third trial wrong, every third neither
        i = trial_ids.index(t["trial_id"]) % 3
        return [t["match_side"], other_side(t["match_side"]), "neither"][i]

    second = write_answers(tmp_path / "s2.csv", answers_for(key, "s2", mixed))
    table = analyse([perfect, second], kit.key_path, tmp_path / "out" / "table1.md", n_boot=500)

    expect = {}
    for run in ("encoder-a", "encoder-b"):
        ids = [t["trial_id"] for t in key["trials"] if t["run"] == run]
        idx = [trial_ids.index(i) % 3 for i in ids]
        pos2, neg2, nei2 = (100 * idx.count(k) / len(ids) for k in range(3))
        expect[run] = (pos2, neg2, nei2, len(ids))
    for run, (pos2, neg2, nei2, n) in expect.items():
        r = table["runs"][run]
        assert r["n_sessions"] == 2 and r["n_answers"] == 2 * n
        assert r["pooled"]["positive"] == pytest.approx((100 + pos2) / 2)
        assert r["pooled"]["negative"] == pytest.approx(neg2 / 2)
        assert r["range"]["positive"] == pytest.approx([pos2, 100.0])
        assert r["range"]["neither"] == pytest.approx([0.0, nei2])
        for outcome in ("positive", "negative", "neither"):
            lo, hi = r["ci95"][outcome]
            assert 0 <= lo <= r["pooled"][outcome] <= hi <= 100
    out = tmp_path / "out"
    md = (out / "table1.md").read_text()
    assert "encoder-a" in md and "| s2 |" in md
    tsv = (out / "table1.tsv").read_text().splitlines()
    assert tsv[0].split("\t")[:6] == [
        "run",
        "scope",
        "session_id",
        "n_answers",
        "outcome",
        "percent",
    ]
    assert json.loads((out / "table1.json").read_text())["study_id"] == key["study_id"]


def binomial_quantiles(n: int, k: int, probs: tuple[float, ...]) -> list[int]:
    """Exact quantiles of Binomial(n, k/n), from its CDF summed in exact integers."""
    weights = [math.comb(n, x) * k**x * (n - k) ** (n - x) for x in range(n + 1)]
    total, running, cdf = sum(weights), 0, []
    for w in weights:
        running += w
        cdf.append(running / total)
    return [next(x for x, c in enumerate(cdf) if c >= p) for p in probs]


def binomial_mass(n: int, k: int, lo: float, hi: float) -> float:
    """P(lo <= X <= hi) for X ~ Binomial(n, k/n), in exact integers until the division."""
    inside = sum(math.comb(n, x) * k**x * (n - k) ** (n - x) for x in range(n + 1) if lo <= x <= hi)
    return inside / n**n


@pytest.mark.parametrize(
    ("per_trial", "answers_per_trial"),
    [
        ((200, 200, 0), 1),  # 400 trials, half positive: symmetric
        ((60, 210, 30), 3),  # 300 trials answered by 3 sessions alike: skewed, repeated
    ],
    ids=["half", "skewed-repeated"],
)
def test_bootstrap_interval_holds_95_percent_of_the_exact_resampling_law(
    per_trial, answers_per_trial
):
    # Resampling T trials, the number drawn with outcome k is exactly Binomial(T, m_k / T)
    # (m_k trials have it), whatever the number of answers per trial. So the interval must
    # be that law's 2.5 % and 97.5 % quantiles and hold 95 % of its mass; the bootstrap's
    # Monte Carlo error at 20,000 draws is about 0.2 trials, hence one trial of slack. A 90 %
    # interval misses by three trials or more; resampling answers instead of trials (counting
    # repeated sessions as independent) holds far less than 95 %.
    n_trials = sum(per_trial)
    counts = np.zeros((n_trials, 3))
    start = 0
    for outcome, m in enumerate(per_trial):
        counts[start : start + m, outcome] = answers_per_trial
        start += m
    ci = bootstrap_percent_ci(counts, n_boot=20_000, seed=1)
    for outcome, m in enumerate(per_trial):
        lo, hi = ci[outcome] * n_trials / 100  # percent -> trials
        if m == 0:
            assert (lo, hi) == (0.0, 0.0)
            continue
        q_lo, q_hi = binomial_quantiles(n_trials, m, (0.025, 0.975))
        assert abs(lo - q_lo) <= 1 and abs(hi - q_hi) <= 1, (outcome, lo, hi, q_lo, q_hi)
        assert 0.94 <= binomial_mass(n_trials, m, lo, hi) <= 0.97, (outcome, lo, hi)


def test_bootstrap_interval_is_seeded():
    counts = np.zeros((400, 3))
    counts[:200, 0] = 1
    counts[200:, 1] = 1
    ci = bootstrap_percent_ci(counts, n_boot=2000, seed=1)
    np.testing.assert_array_equal(ci, bootstrap_percent_ci(counts, n_boot=2000, seed=1))
    assert not np.array_equal(ci, bootstrap_percent_ci(counts, n_boot=2000, seed=2))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda rows: rows[1].update(study_id="wavbrivl-other"), "study_id is not"),
        (lambda rows: rows[2].update(trial_id="t999"), "not in the answer key"),
        (lambda rows: rows[0].update(choice="maybe"), "choice not one of"),
        (lambda rows: rows.append(dict(rows[3])), "more than once"),
    ],
)
def test_answer_files_that_do_not_fit_are_refused_naming_rows(tmp_path, change, message):
    _, kit = make_study(tmp_path)
    key = read_key(kit.key_path)
    rows = answers_for(key, "s1", lambda t: "neither")
    change(rows)
    path = write_answers(tmp_path / "bad.csv", rows)
    with pytest.raises(AnswerFileError, match=message) as err:
        read_answers([path], key)
    assert "bad.csv line" in str(err.value)
    if message == "more than once":  # both copies are named
        assert "line 5" in str(err.value) and f"line {len(rows) + 1}" in str(err.value)


def test_the_same_session_twice_is_refused(tmp_path):
    _, kit = make_study(tmp_path)
    key = read_key(kit.key_path)
    path = write_answers(tmp_path / "s1.csv", answers_for(key, "s1", lambda t: "left"))
    with pytest.raises(AnswerFileError, match="more than once"):
        read_answers([path, path], key)


def test_command_line_writes_table_or_refuses(tmp_path, capsys):
    _, kit = make_study(tmp_path)
    key = read_key(kit.key_path)
    good = write_answers(tmp_path / "a.csv", answers_for(key, "s1", lambda t: t["match_side"]))
    out = tmp_path / "table1.md"
    assert main([str(good), "--key", str(kit.key_path), "--out", str(out), "--n-boot", "200"]) == 0
    assert "100.0 (100.0–100.0) [100.0, 100.0]" in out.read_text()
    bad = write_answers(tmp_path / "b.csv", [dict(answers_for(key, "s1", str)[0], study_id="x")])
    assert main([str(bad), "--key", str(kit.key_path), "--out", str(tmp_path / "t2.md")]) == 2
    assert "b.csv line 2" in capsys.readouterr().err
    assert not (tmp_path / "t2.md").exists()


# --- automatic two-choice score ---------------------------------------------------------------


class MeanColourEncoder:
    """A stand-in image encoder: the image's mean colour, centred, as a unit vector."""

    name = "mean-colour"
    fingerprint = "test"

    def __init__(self, collapse: bool = False) -> None:
        self.collapse = collapse

    def encode_images(self, images, aug_seeds=None):
        import torch

        rows = []
        for image in images:
            v = np.asarray(image, dtype=np.float64).reshape(-1, 3).mean(axis=0) - 127.5
            rows.append(np.ones(3) if self.collapse else v)
        out = torch.tensor(np.array(rows), dtype=torch.float32)
        return out / out.norm(dim=1, keepdim=True)


def colour_target(clip_id: str) -> np.ndarray:
    return np.array(CLIPS[clip_id][1], dtype=np.float32) - 127.5


def test_auto_score_prefers_the_matching_image(tmp_path):
    _, kit = make_study(tmp_path)
    key = read_key(kit.key_path)
    trials = [t for t in key["trials"] if t["run"] == "encoder-a"]
    folder = tmp_path / "gen_a"
    right = {cid: colour_target(cid) for cid in CLIPS}
    score = auto_two_choice(trials, folder, MeanColourEncoder(), right, n_boot=200)
    assert score.percent_correct == 100.0 and score.n_trials == len(CLIPS)
    swapped = {t["clip_id"]: colour_target(t["other_clip_id"]) for t in trials}
    assert (
        auto_two_choice(trials, folder, MeanColourEncoder(), swapped, n_boot=200).percent_correct
        == 0.0
    )
    tied = auto_two_choice(trials, folder, MeanColourEncoder(collapse=True), right, n_boot=200)
    assert tied.percent_correct == 50.0 and tied.n_ties == len(CLIPS)


def test_auto_score_refuses_images_changed_since_the_study(tmp_path):
    _, kit = make_study(tmp_path)
    key = read_key(kit.key_path)
    Image.new("RGB", (32, 32), (0, 0, 0)).save(tmp_path / "gen_b" / "dogA_0.png")
    targets = {cid: colour_target(cid) for cid in CLIPS}
    with pytest.raises(ValueError, match="dogA_0"):
        auto_two_choice_study(
            key, {r: MeanColourEncoder() for r in key["runs"]}, {r: targets for r in key["runs"]}
        )


def test_auto_score_with_the_tiny_brivl_encoder_sits_beside_table1(tmp_path):
    from wavbrivl.encoders.registry import build_tiny

    _, kit = make_study(tmp_path)
    key = read_key(kit.key_path)
    encoder = build_tiny(seed=0)
    targets = {}
    for run, folder in key["runs"].items():  # target = the match image's own embedding
        images = [Image.open(Path(folder) / f"{cid}.png").convert("RGB") for cid in CLIPS]
        emb = encoder.encode_images(images).numpy()  # (N, D), written as the generator does
        table = pa.table(
            {
                "clip_id": list(CLIPS),
                "embedding": pa.FixedSizeListArray.from_arrays(
                    pa.array(emb.reshape(-1)), emb.shape[1]
                ),
            }
        )
        write_table_atomic(Path(folder) / "targets.parquet", table)
        targets[run] = read_targets(Path(folder) / "targets.parquet")
    scores = auto_two_choice_study(key, dict.fromkeys(key["runs"], encoder), targets, n_boot=200)
    assert {s.percent_correct for s in scores.values()} == {100.0}
    auto = tmp_path / "auto2afc.json"
    write_auto_scores(scores, key["study_id"], auto)
    answers = write_answers(tmp_path / "a.csv", answers_for(key, "s1", lambda t: "neither"))
    analyse([answers], kit.key_path, tmp_path / "table1.md", auto_path=auto, n_boot=100)
    md = (tmp_path / "table1.md").read_text()
    assert "automatic % correct" in md and "100.0 [100.0, 100.0] (n=6)" in md
    scored = score_answers(read_answers([answers], key), key)
    assert table1(scored, key, n_boot=10)["runs"]["encoder-a"]["pooled"]["neither"] == 100.0
