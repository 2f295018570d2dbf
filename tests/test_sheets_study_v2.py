"""Study kit v2: catch trials (real frames) and comparison trials between two runs.

Generated images are flat colours (tests/test_sheets.py); here each clip's real frame is a
flat colour of its own too (``FRAMES``), stored as JPEG in the media shard like the extract
stage does, so the page's media can be traced back to the clip and source they show.
"""

from __future__ import annotations

import base64
import io
import json
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image
from test_sheets import CLIPS, decode_data_uri, flac_tone, make_run, page_json

from wavbrivl.atomic import write_table_atomic
from wavbrivl.extract.media import MEDIA_SCHEMA
from wavbrivl.sheets import load_generation_run
from wavbrivl.sheets.stage import simulate_study
from wavbrivl.sheets.study import collect_clip_frames, read_key, write_study
from wavbrivl.sheets.trials import (
    REAL,
    build_study_trials,
    build_trials,
    compare_drafts,
    n_catch_trials,
)

RATE = 16_000
# The real frame of each clip: a colour no generated image has.
FRAMES = {cid: (10 + 20 * i, 250 - 20 * i, 128) for i, cid in enumerate(CLIPS)}


def jpeg(rgb) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), rgb).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def make_media_with_frames(path, clips=CLIPS, without_frame=()):
    rows = [
        {
            "clip_id": cid,
            "status": "ok",
            "reason": "",
            "notes": "",
            "frame": None if cid in without_frame else jpeg(FRAMES[cid]),
            "audio": flac_tone(hz),
            "n_samples": RATE,
            "sample_rate": RATE,
        }
        for cid, (_, _, hz) in clips.items()
    ]
    rows.append({"clip_id": "broken_0", "status": "bad_media", "reason": "x", "notes": ""})
    write_table_atomic(path, pa.Table.from_pylist(rows, schema=MEDIA_SCHEMA))
    return path


def two_runs(tmp_path):
    return [
        load_generation_run("enc-a", make_run(tmp_path / "gen_a")),
        load_generation_run("enc-b", make_run(tmp_path / "gen_b", shade=20)),
    ]


def mean_rgb(uri: str) -> tuple[int, int, int]:
    _, data = decode_data_uri(uri)
    pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=float)
    return tuple(int(round(v)) for v in pixels.reshape(-1, 3).mean(axis=0))


def close(rgb, expected, tol: int = 4) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(rgb, expected, strict=True))


def generated_rgb(run: str, clip_id: str) -> tuple[int, ...]:
    shade = 20 if run == "enc-b" else 0
    return tuple(max(0, min(255, c + shade)) for c in CLIPS[clip_id][1])


# --- how many catch trials ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("n_main", "rate", "expected"),
    # rate * n / (1 - rate): 0.2 * 16 / 0.8 = 4; 0.2 * 3 / 0.8 = 0.75 -> 1;
    # 0.2 * 1 / 0.8 = 0.25 -> 0; 0.5 * 7 / 0.5 = 7; 0.1 * 12 / 0.9 = 1.33 -> 1
    [(16, 0.2, 4), (3, 0.2, 1), (1, 0.2, 0), (7, 0.5, 7), (12, 0.1, 1), (12, 0.0, 0)],
)
def test_catch_trials_make_up_the_configured_share(n_main, rate, expected):
    assert n_catch_trials(n_main, rate) == expected


@pytest.mark.parametrize("rate", [-0.01, 0.51, 1.0])
def test_a_catch_rate_outside_0_to_half_is_refused(rate):
    with pytest.raises(ValueError, match=r"sheets.catch_rate must be in \[0, 0.5\]"):
        n_catch_trials(10, rate)


# --- building the trials ------------------------------------------------------------------


def test_without_catch_or_compare_the_trials_are_the_v1_trials(tmp_path):
    runs = two_runs(tmp_path)
    for seed in (0, 3):
        assert build_study_trials(runs, seed) == build_trials(runs, seed)


def test_catch_trials_pair_real_frames_of_different_classes(tmp_path):
    runs = two_runs(tmp_path)
    with_frame = set(CLIPS) - {"bellB_0"}
    trials = build_study_trials(runs, 2, catch_rate=0.2, with_frame=with_frame)
    catch = [t for t in trials if t.kind == "catch"]
    # 12 match trials (6 clips x 2 runs): 0.2 * 12 / 0.8 = 3 catch trials.
    assert len(trials) == 15 and len(catch) == 3
    assert [t.trial_id for t in trials] == [f"t{i:03d}" for i in range(1, 16)]
    for t in catch:
        assert (t.run, t.other_source, t.left_source, t.right_source) == (REAL,) * 4
        assert CLIPS[t.clip_id][0] != CLIPS[t.other_clip_id][0]
        assert {t.clip_id, t.other_clip_id} <= with_frame
        assert t.label == CLIPS[t.clip_id][0] and t.other_label == CLIPS[t.other_clip_id][0]
    assert len({t.clip_id for t in catch}) == 3  # no clip twice before all were used
    assert Counter(t.match_side for t in catch) == {"left": 2, "right": 1}
    # catch trials are mixed in, not appended: not all at the end
    assert [t.kind for t in trials[-3:]] != ["catch"] * 3


def test_more_catch_trials_than_clips_use_every_clip_before_repeating(tmp_path):
    runs = two_runs(tmp_path)[:1]
    trials = build_study_trials(runs, 0, catch_rate=0.5, with_frame=set(CLIPS))
    catch = [t for t in trials if t.kind == "catch"]
    assert len(catch) == 6
    assert sorted(t.clip_id for t in catch) == sorted(CLIPS)


def test_catch_trials_are_seeded(tmp_path):
    runs = two_runs(tmp_path)
    one = build_study_trials(runs, 1, catch_rate=0.3, with_frame=set(CLIPS))
    again = build_study_trials(runs, 1, catch_rate=0.3, with_frame=set(CLIPS))
    other = build_study_trials(runs, 2, catch_rate=0.3, with_frame=set(CLIPS))
    assert one == again and one != other


def test_catch_trials_need_real_frames(tmp_path):
    with pytest.raises(ValueError, match="catch trials need real frames"):
        build_study_trials(two_runs(tmp_path), 0, catch_rate=0.2, with_frame=set())


def test_catch_trials_need_frames_of_two_classes(tmp_path):
    with pytest.raises(ValueError, match="catch trials: clip 'dogA_0'"):
        build_study_trials(
            two_runs(tmp_path), 0, catch_rate=0.2, with_frame={"dogA_0", "dogB_1000"}
        )


def test_comparison_trials_put_the_two_runs_images_of_one_clip_side_by_side(tmp_path):
    runs = two_runs(tmp_path)
    trials = build_study_trials(runs, 5, compare=["enc-b", "enc-a"])
    compare = [t for t in trials if t.kind == "compare"]
    assert len(trials) == 18 and len(compare) == 6
    assert sorted(t.clip_id for t in compare) == sorted(CLIPS)
    for t in compare:
        assert (t.run, t.other_run, t.other_clip_id) == ("enc-b", "enc-a", t.clip_id)
        assert t.label == t.other_label == CLIPS[t.clip_id][0]
        sources = {"left": t.left_source, "right": t.right_source}
        assert sources[t.match_side] == "enc-b"
        assert set(sources.values()) == {"enc-a", "enc-b"}
    assert Counter(t.match_side for t in compare) == {"left": 3, "right": 3}


@pytest.mark.parametrize(
    "compare", [["enc-a"], ["enc-a", "enc-a"], ["enc-a", "nope"], ["a", "b", "c"]]
)
def test_comparison_must_name_two_different_runs_of_the_study(tmp_path, compare):
    with pytest.raises(ValueError, match=r"sheets.compare must name two different runs"):
        build_study_trials(two_runs(tmp_path), 0, compare=compare)


def test_comparison_needs_a_clip_both_runs_generated(tmp_path):
    a_clips = {k: CLIPS[k] for k in ("dogA_0", "rainA_0")}
    b_clips = {k: CLIPS[k] for k in ("dogB_1000", "rainB_500")}
    a = load_generation_run("a", make_run(tmp_path / "a", a_clips))
    b = load_generation_run("b", make_run(tmp_path / "b", b_clips))
    with pytest.raises(ValueError, match="runs 'a' and 'b' have no clip in common"):
        build_study_trials([a, b], 0, compare=["a", "b"])


# --- the kit ------------------------------------------------------------------------------


def test_frames_are_read_from_ok_rows_only(tmp_path):
    media = make_media_with_frames(tmp_path / "m.parquet", without_frame={"bellA_0"})
    frames = collect_clip_frames([media], ["dogA_0", "bellA_0", "broken_0", "absent"])
    assert set(frames) == {"dogA_0"}
    uri = "data:image/jpeg;base64," + base64.b64encode(frames["dogA_0"]).decode()
    assert close(mean_rgb(uri), FRAMES["dogA_0"])


def test_page_shows_real_frames_and_both_runs_where_the_key_says(tmp_path):
    runs = two_runs(tmp_path)
    media = make_media_with_frames(tmp_path / "m.parquet", without_frame={"bellB_0"})
    kit = write_study(
        runs,
        [media],
        tmp_path / "study.html",
        tmp_path / "key.json",
        seed=4,
        catch_rate=0.25,
        compare=["enc-a", "enc-b"],
    )
    key = read_key(kit.key_path)
    data = page_json(kit.html_path.read_text())
    kinds = Counter(t["kind"] for t in key["trials"])
    # 12 match + 6 compare = 18; 0.25 * 18 / 0.75 = 6 catch trials
    assert kinds == {"match": 12, "compare": 6, "catch": 6}
    page_trials = {t["trial_id"]: t for t in data["trials"]}
    assert all("kind" not in t and "run" not in t for t in data["trials"])
    for t in key["trials"]:
        shown = page_trials[t["trial_id"]]
        for side in ("left", "right"):
            source, clip_id = t[f"{side}_source"], t[f"{side}_clip_id"]
            uri = data["images"][shown[side]]
            if t["kind"] == "catch":
                assert source == REAL and uri.startswith("data:image/jpeg;base64,")
                assert close(mean_rgb(uri), FRAMES[clip_id])
            else:
                assert uri.startswith("data:image/png;base64,")
                assert mean_rgb(uri) == generated_rgb(source, clip_id)
        if t["kind"] == "catch":
            assert "bellB_0" not in (t["clip_id"], t["other_clip_id"])
        if t["kind"] == "compare":
            assert t[f"{t['match_side']}_source"] == "enc-a"
            assert t["other_run"] == "enc-b"
    # the key's image hashes follow the sources too
    assert len({t["match_image_sha256"] for t in key["trials"] if t["kind"] == "catch"}) >= 4
    assert json.loads(kit.key_path.read_text())["format"] == "wavbrivl-2afc-key/1"


def test_a_kit_without_catch_trials_does_not_read_frames(tmp_path):
    """The frame column may be empty when no catch trial is asked for."""
    media = make_media_with_frames(tmp_path / "m.parquet", without_frame=set(CLIPS))
    kit = write_study(two_runs(tmp_path), [media], tmp_path / "s.html", tmp_path / "k.json")
    assert {t["kind"] for t in read_key(kit.key_path)["trials"]} == {"match"}
    with pytest.raises(ValueError, match="catch trials need real frames"):
        write_study(
            two_runs(tmp_path), [media], tmp_path / "s.html", tmp_path / "k.json", catch_rate=0.1
        )


# --- simulated raters through the stage -----------------------------------------------------


def test_simulate_study_writes_answers_table1_and_its_html(tmp_path):
    kit = write_study(
        two_runs(tmp_path),
        [make_media_with_frames(tmp_path / "media.parquet")],
        tmp_path / "study.html",
        tmp_path / "key.json",
        catch_rate=0.25,
        compare=["enc-a", "enc-b"],
    )
    logged = []
    table = simulate_study(
        key_path=kit.key_path,
        auto_path=None,
        answers_dir=tmp_path / "sim" / "answers",
        table_md=tmp_path / "sim" / "table1.md",
        raters=5,
        accuracy=1.0,
        careless=1,
        seed=3,
        max_catch_fail=0.0,
        log=logged.append,
    )
    answers = sorted(p.name for p in (tmp_path / "sim" / "answers").iterdir())
    assert answers == [f"sim0{i}.csv" for i in range(1, 6)]
    for suffix in (".md", ".tsv", ".json", ".html"):
        assert (tmp_path / "sim" / f"table1{suffix}").is_file()
    # threshold 0: the careless rater (the last) is out as soon as one catch trial is missed
    # (6 coin flips; this seed misses at least one), the four diligent ones stay
    assert [r["session_id"] for r in table["raters"] if r["excluded"]] == ["sim05"]
    assert table["runs"]["enc-a"]["n_sessions"] == 4
    assert table["runs"]["enc-a"]["pooled"]["positive"] == 100.0
    assert logged[0] == "5 simulated rater(s), 1 careless, accuracy 1.0"
    assert any(line.startswith("excluded sim05: failed ") for line in logged)
    assert "enc-a vs enc-b: positive 100.0 %, negative 0.0 %, neither 0.0 % (4 raters)" in logged
    page = (tmp_path / "sim" / "table1.html").read_text()
    assert "<h2>Raters and agreement</h2>" in page and "<td>sim05</td>" in page


def test_refusals_say_what_is_wrong(tmp_path):
    runs = two_runs(tmp_path)
    assert build_study_trials(runs) == build_study_trials(runs, 0)  # seed 0 by default
    with pytest.raises(ValueError, match=r"^run names must be unique, got \['enc-a', 'enc-a'\]$"):
        build_study_trials([runs[0], runs[0]])
    with pytest.raises(
        ValueError, match="^catch trials need real frames, and no study clip has one$"
    ):
        build_study_trials(runs, catch_rate=0.2)
    one_class = {k: CLIPS[k] for k in ("dogA_0", "dogB_1000")}
    run = load_generation_run("solo", make_run(tmp_path / "solo", one_class))
    with pytest.raises(
        ValueError,
        match=r"^run 'solo': clip 'dogA_0' \('dog'\) has no clip of another class to pair with; "
        "the study needs at least two classes$",
    ):
        build_study_trials([run])


# The study's draw for one seed, pinned: a study kit rebuilt with the same seed must show the
# same trials in every version (a published kit names its seed), so any change to the salts
# of the seeded streams (match, catch, compare) or to the order of the draws shows up here.
PINNED_SEED_3 = """
t001 match enc-b rainB_500 dogB_1000 right
t002 compare enc-a bellB_0 bellB_0 right
t003 compare enc-a dogA_0 dogA_0 left
t004 catch :real-frames bellB_0 rainB_500 left
t005 match enc-a dogA_0 bellB_0 right
t006 compare enc-a rainB_500 rainB_500 right
t007 match enc-a rainB_500 dogA_0 left
t008 catch :real-frames bellA_0 rainB_500 right
t009 match enc-b rainA_0 bellB_0 left
t010 compare enc-a dogB_1000 dogB_1000 right
t011 match enc-b dogA_0 rainB_500 left
t012 match enc-a dogB_1000 bellA_0 left
t013 match enc-b bellA_0 rainA_0 right
t014 match enc-a rainA_0 dogB_1000 left
t015 match enc-b bellB_0 rainA_0 right
t016 catch :real-frames dogB_1000 rainB_500 left
t017 compare enc-a bellA_0 bellA_0 left
t018 compare enc-a rainA_0 rainA_0 left
t019 match enc-a bellA_0 rainB_500 right
t020 match enc-b dogB_1000 rainA_0 left
t021 match enc-a bellB_0 rainB_500 right
t022 catch :real-frames rainB_500 bellB_0 right
"""


def test_the_same_seed_draws_the_same_trials_in_every_version(tmp_path):
    runs = two_runs(tmp_path)
    trials = build_study_trials(
        runs, 3, catch_rate=0.2, with_frame=set(CLIPS), compare=["enc-a", "enc-b"]
    )
    got = [
        f"{t.trial_id} {t.kind} {t.run} {t.clip_id} {t.other_clip_id} {t.match_side}"
        for t in trials
    ]
    assert got == PINNED_SEED_3.strip().splitlines()


def test_the_default_seed_is_the_schemas_study_seed(tmp_path):
    import yaml
    from conftest import REPO

    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    default = schema["properties"]["sheets"]["properties"]["study_seed"]["default"]
    runs = two_runs(tmp_path)
    assert build_trials(runs) == build_trials(runs, default)
    assert build_trials(runs) != build_trials(runs, default + 1)


def test_comparison_sides_are_drawn_from_the_seed(tmp_path):
    first, second = two_runs(tmp_path)
    draws = {seed: compare_drafts(first, second, seed) for seed in range(10)}
    # an unseeded stream would repeat all ten draws with a chance of (1/20) ** 10
    assert all(compare_drafts(first, second, seed) == draws[seed] for seed in draws)
    assert len({tuple(d) for d in draws.values()}) > 1  # and the seed does change them
