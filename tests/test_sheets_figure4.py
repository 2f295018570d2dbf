"""The multi-run Figure 4: one grid row per run over the same clips, an optional row of real
frames, row labels naming each run's method and encoder, and the automatic comparison of two
runs (which run's image fits the sound better).

Every image is a flat colour of its own, so a test finds each cell in the written PNG by its
colour; the comparison uses a look-up encoder (colour -> chosen vector) whose cosines, and so
the expected winners and shares, are worked out by hand below.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import soundfile as sf
from PIL import Image

from wavbrivl.atomic import write_table_atomic
from wavbrivl.extract.media import MEDIA_SCHEMA
from wavbrivl.sheets import load_generation_run
from wavbrivl.sheets.auto2afc import RunComparison, compare_runs, write_auto_scores
from wavbrivl.sheets.grid import (
    REAL_FRAME_ROW,
    common_clips,
    grid_columns,
    load_real_frames,
    plot_grid,
    run_row_label,
    write_grid,
)
from wavbrivl.sheets.stage import assemble_sheets

RATE = 16_000
SQRT_HALF = math.sqrt(0.5)

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
YELLOW, CYAN, MAGENTA = (255, 255, 0), (0, 255, 255), (255, 0, 255)
ORANGE, PURPLE, TEAL = (255, 128, 0), (128, 0, 255), (0, 128, 128)
DARK_RED = (200, 0, 0)


# --- fixtures ------------------------------------------------------------------------------


def make_run(folder: Path, clips: dict, record: dict | None = None, targets=None) -> Path:
    """A generation folder: ``clips`` is {clip_id: (label, colour)}; ``record`` adds keys to
    generation.json; ``targets`` ({clip_id: vector}) writes targets.parquet."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for i, (clip_id, (label, colour)) in enumerate(clips.items()):
        Image.new("RGB", (24, 24), colour).save(folder / f"{clip_id}.png")
        entries.append({"clip_id": clip_id, "label": label, "seed": i})
    (folder / "generation.json").write_text(json.dumps({"clips": entries, **(record or {})}))
    if targets is not None:
        emb = np.array([targets[c] for c in targets], dtype=np.float32)  # (N, D)
        table = pa.table(
            {
                "clip_id": list(targets),
                "embedding": pa.FixedSizeListArray.from_arrays(
                    pa.array(emb.reshape(-1)), emb.shape[1]
                ),
            }
        )
        write_table_atomic(folder / "targets.parquet", table)
    return folder


def jpeg(colour) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (24, 24), colour).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def flac_tone(hz: float) -> bytes:
    t = np.arange(RATE // 2) / RATE
    buffer = io.BytesIO()
    sf.write(buffer, 0.5 * np.sin(2 * np.pi * hz * t), RATE, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def make_media(path: Path, frames: dict, extra_rows=()) -> Path:
    """A media shard: {clip_id: frame colour}, each clip with a tone, plus ``extra_rows``."""
    rows = [
        {
            "clip_id": cid,
            "status": "ok",
            "reason": "",
            "notes": "",
            "frame": jpeg(colour),
            "audio": flac_tone(300.0 + 100 * i),
            "n_samples": RATE // 2,
            "sample_rate": RATE,
        }
        for i, (cid, colour) in enumerate(frames.items())
    ]
    rows += list(extra_rows)
    write_table_atomic(path, pa.Table.from_pylist(rows, schema=MEDIA_SCHEMA))
    return path


def cell_centres(png: Path, colours: dict, tol: int = 40, min_pixels: int = 50) -> dict:
    """{name: (row, col) centroid of the pixels of that colour, or None when absent}."""
    pixels = np.asarray(Image.open(png).convert("RGB")).astype(int)  # (H, W, 3)
    out = {}
    for name, colour in colours.items():
        mask = (np.abs(pixels - np.array(colour)) <= tol).all(axis=2)
        ys, xs = np.nonzero(mask)
        out[name] = (ys.mean(), xs.mean()) if ys.size >= min_pixels else None
    return out


# --- grid ------------------------------------------------------------------------------------


def test_grid_rows_are_real_frames_then_each_run_over_the_same_clips(tmp_path):
    # Labels sorted (bell, dog, rain) fix the column order; each cell has its own colour.
    run_a = load_generation_run(
        "A",
        make_run(
            tmp_path / "a",
            {"d_0": ("dog", CYAN), "r_0": ("rain", MAGENTA), "b_0": ("bell", YELLOW)},
        ),
    )
    run_b = load_generation_run(
        "B",
        make_run(
            tmp_path / "b",
            {
                "b_0": ("bell", ORANGE),
                "d_0": ("dog", PURPLE),
                "r_0": ("rain", TEAL),
                "only_b_0": ("owl", DARK_RED),  # not in run A: never in the grid
            },
        ),
    )
    media = make_media(tmp_path / "m.parquet", {"b_0": RED, "d_0": GREEN, "r_0": BLUE})
    assert grid_columns([run_a, run_b], 12) == ["b_0", "d_0", "r_0"]
    frames = load_real_frames([media], ["b_0", "d_0", "r_0"])
    png, pdf = tmp_path / "grid.png", tmp_path / "grid.pdf"
    columns = write_grid([run_a, run_b], png, pdf, real_frames=frames)
    assert columns == ["b_0", "d_0", "r_0"]
    assert pdf.read_bytes().startswith(b"%PDF")

    layout = {  # colour name -> (row, column) where it must be
        "red": (0, 0),
        "green": (0, 1),
        "blue": (0, 2),
        "yellow": (1, 0),
        "cyan": (1, 1),
        "magenta": (1, 2),
        "orange": (2, 0),
        "purple": (2, 1),
        "teal": (2, 2),
    }
    colours = {
        "red": RED,
        "green": GREEN,
        "blue": BLUE,
        "yellow": YELLOW,
        "cyan": CYAN,
        "magenta": MAGENTA,
        "orange": ORANGE,
        "purple": PURPLE,
        "teal": TEAL,
        "dark_red": DARK_RED,
    }
    found = cell_centres(png, colours)
    assert found.pop("dark_red") is None  # run B's extra clip is left out
    assert all(v is not None for v in found.values()), found
    for name, (row, col) in layout.items():
        for other, (row2, col2) in layout.items():
            (y, x), (y2, x2) = found[name], found[other]
            if row < row2:
                assert y < y2, (name, other)
            if col < col2:
                assert x < x2, (name, other)
            if col == col2:
                assert abs(x - x2) < 5, (name, other)  # one column, one x
            if row == row2:
                assert abs(y - y2) < 5, (name, other)


def test_grid_without_the_real_frame_row_has_one_row_per_run(tmp_path):
    run_a = load_generation_run("A", make_run(tmp_path / "a", {"d_0": ("dog", CYAN)}))
    run_b = load_generation_run("B", make_run(tmp_path / "b", {"d_0": ("dog", PURPLE)}))
    fig, columns = plot_grid([run_a, run_b], row_labels={"B": "B (unclip)"})
    assert columns == ["d_0"]
    assert [ax.get_ylabel() for ax in fig.axes] == ["A", "B (unclip)"]
    fig, _ = plot_grid([run_a, run_b], real_frames={"d_0": Image.new("RGB", (4, 4), RED)})
    assert [ax.get_ylabel() for ax in fig.axes] == [REAL_FRAME_ROW, "A", "B"]
    assert REAL_FRAME_ROW == "real frame"
    assert [ax.get_xlabel() for ax in fig.axes] == ["", "", "dog"]  # labels under the last row


def test_grid_refuses_clips_not_in_every_run_naming_run_and_clip(tmp_path):
    run_a = load_generation_run(
        "A", make_run(tmp_path / "a", {"x_0": ("dog", RED), "y_0": ("cat", BLUE)})
    )
    run_b = load_generation_run("B", make_run(tmp_path / "b", {"x_0": ("dog", GREEN)}))
    run_c = load_generation_run("C", make_run(tmp_path / "c", {"z_0": ("owl", GREEN)}))
    assert common_clips([run_a, run_b]) == ["x_0"]
    assert common_clips([run_b, run_a]) == ["x_0"]
    assert common_clips([run_a]) == ["x_0", "y_0"]
    with pytest.raises(KeyError, match=r"run 'B' \(.*\) has no image for clip\(s\) \['y_0'\]"):
        plot_grid([run_a, run_b], ["x_0", "y_0"])
    with pytest.raises(
        ValueError,
        match=r"^the runs \['A', 'B', 'C'\] have no clip in common: every run must have "
        r"generated the grid's clips$",
    ):
        plot_grid([run_a, run_b, run_c])
    with pytest.raises(ValueError, match="at least one run"):
        plot_grid([])
    with pytest.raises(ValueError, match="^the grid needs at least one run$"):
        common_clips([])
    with pytest.raises(ValueError, match="at least one clip"):
        plot_grid([run_a], [])
    with pytest.raises(KeyError, match=r"no real frame for clip\(s\) \['y_0'\]"):
        plot_grid([run_a], real_frames={"x_0": Image.new("RGB", (4, 4), RED)})


def test_grid_columns_are_capped_and_round_robin_over_shared_labels(tmp_path):
    clips = {f"{lab}{i}_0": (lab, RED) for lab in ("dog", "cat") for i in range(3)}
    run_a = load_generation_run("A", make_run(tmp_path / "a", clips))
    del clips["cat0_0"]
    run_b = load_generation_run("B", make_run(tmp_path / "b", clips))
    assert grid_columns([run_a, run_b], 3) == ["cat1_0", "dog0_0", "cat2_0"]
    fig, columns = plot_grid([run_a, run_b], max_columns=2)
    assert columns == ["cat1_0", "dog0_0"]


@pytest.mark.parametrize(
    ("record", "label"),
    [
        ({"vqgan": "random", "image_encoder": "tiny"}, "A\n(vqgan, tiny)"),
        ({"method": "unclip", "image_encoder": "clip-vit-h-14"}, "A\n(unclip, clip-vit-h-14)"),
        ({"config": {"method": "unclip"}, "vqgan": "x"}, "A\n(unclip)"),
        ({"config": {"steps": 3}, "image_encoder": "brivl"}, "A\n(brivl)"),
        ({"config": "odd"}, "A"),
        ({}, "A"),
    ],
)
def test_row_label_names_the_run_its_method_and_encoder(tmp_path, record, label):
    run = load_generation_run("A", make_run(tmp_path / "a", {"x_0": ("dog", RED)}, record))
    assert run_row_label(run) == label


def test_row_label_of_an_unreadable_record_is_the_run_name(tmp_path):
    run = load_generation_run("A", make_run(tmp_path / "a", {"x_0": ("dog", RED)}))
    (tmp_path / "a" / "generation.json").write_text("[1, 2]")
    assert run_row_label(run) == "A"
    (tmp_path / "a" / "generation.json").write_text("{not json")
    assert run_row_label(run) == "A"
    (tmp_path / "a" / "generation.json").unlink()
    assert run_row_label(run) == "A"


def test_real_frames_come_from_the_media_shards_or_fail_naming_the_clip(tmp_path):
    bad = {"clip_id": "bad_0", "status": "bad_media", "reason": "no video", "notes": ""}
    no_frame = {"clip_id": "blank_0", "status": "ok", "reason": "", "notes": ""}
    one = make_media(tmp_path / "0.parquet", {"x_0": RED}, [bad, no_frame])
    two = make_media(tmp_path / "1.parquet", {"y_0": BLUE, "unused_0": GREEN})
    frames = load_real_frames([one, two], ["y_0", "x_0"])
    assert sorted(frames) == ["x_0", "y_0"]
    assert frames["x_0"].mode == "RGB"
    assert np.abs(np.asarray(frames["x_0"], dtype=int) - RED).max() <= 8  # JPEG, near exact
    assert np.abs(np.asarray(frames["y_0"], dtype=int) - BLUE).max() <= 8
    with pytest.raises(KeyError, match=r"bad_0: media status bad_media: no video"):
        load_real_frames([one, two], ["x_0", "bad_0"])
    with pytest.raises(KeyError, match=r"\['blank_0'\] \(blank_0: no frame\)"):
        load_real_frames([one], ["blank_0"])
    with pytest.raises(KeyError, match=r"\['gone_0'\] \(gone_0: not in the media shards\)"):
        load_real_frames([one, two], ["gone_0", "x_0"])
    with pytest.raises(ValueError, match=r"1.parquet: clip 'x_0' appears twice"):
        load_real_frames([one, make_media(tmp_path / "1.parquet", {"x_0": RED})], ["x_0"])


# --- the automatic comparison of two runs ---------------------------------------------------

E1, E2, E3 = np.eye(3)
VECTORS = {  # what the look-up encoder answers for each flat colour (not unit on purpose)
    RED: E1,
    DARK_RED: 3 * E1,
    GREEN: E2,
    BLUE: E3,
    YELLOW: E1 + E2,
    MAGENTA: E1 + E3,
    (0, 0, 0): np.zeros(3),  # black: an image the encoder cannot place
}


class LookupEncoder:
    name = "lookup"
    fingerprint = "fp-lookup"

    def encode_images(self, images, aug_seeds=None):
        import torch

        rows = [VECTORS[image.getpixel((0, 0))] for image in images]
        return torch.tensor(np.array(rows), dtype=torch.float32)


# clip -> (label, run A's target, run B's target, run A's image, run B's image). With the
# judge = unit(unit(t_A) + unit(t_B)), worked out by hand:
#   c1: judge (e1+e2)/sqrt2; A yellow cos 1, B 3e1 cos 1/sqrt2        -> A wins by 1 - 1/sqrt2
#       (A's target alone would pick B; raw, unnormalised images would pick B: 3/sqrt2 > sqrt2)
#   c2: judge (e1+e2)/sqrt2; A e2 cos 1/sqrt2, B yellow cos 1         -> B wins by 1 - 1/sqrt2
#       (B's target alone would pick A)
#   c3: judge (e1+e3)/sqrt2 from 5e3 and e1; A magenta 1, B e3 1/sqrt2 -> A wins by 1 - 1/sqrt2
#       (unnormalised targets, e1 + 5e3, would pick B)
#   c4: judge e3; A e3 cos 1, B e1 cos 0                               -> A wins by 1
#   c5: the same image in both runs                                    -> a tie
# A: 3 wins + half a tie of 5 = 70 %, B 30 %.
DESIGN = {
    "c1_0": ("dog", E1, E2, YELLOW, DARK_RED),
    "c2_0": ("dog", E1, E2, GREEN, YELLOW),
    "c3_0": ("rain", 5 * E3, E1, MAGENTA, BLUE),
    "c4_0": ("rain", E3, E3, BLUE, RED),
    "c5_0": ("bell", E1, E2, GREEN, GREEN),
}
MARGINS = {
    "c1_0": 1 - SQRT_HALF,
    "c2_0": SQRT_HALF - 1,
    "c3_0": 1 - SQRT_HALF,
    "c4_0": 1.0,
    "c5_0": 0.0,
}


def make_pair(tmp_path: Path, record_b: dict | None = None):
    fp = {"fingerprints": {"image_encoder": LookupEncoder.fingerprint}, "vqgan": "random"}
    folder_a = make_run(
        tmp_path / "gen" / "A" / "vgg",
        {c: (d[0], d[3]) for c, d in DESIGN.items()},
        {**fp, "image_encoder": "lookup"},
        {c: d[1] for c, d in DESIGN.items()},
    )
    folder_b = make_run(
        tmp_path / "gen" / "B" / "vgg",
        {c: (d[0], d[4]) for c, d in DESIGN.items()},
        record_b or {**fp, "method": "unclip", "image_encoder": "lookup"},
        {c: d[2] for c, d in DESIGN.items()},
    )
    targets = {
        "A": {c: d[1] for c, d in DESIGN.items()},
        "B": {c: d[2] for c, d in DESIGN.items()},
    }
    return {"A": folder_a, "B": folder_b}, targets


def test_comparison_shares_and_margins_match_the_hand_computation(tmp_path):
    folders, targets = make_pair(tmp_path)
    result = compare_runs(
        ("A", "B"), folders, LookupEncoder(), targets, list(DESIGN), n_boot=2000, batch_size=2
    )
    assert result.runs == ("A", "B") and result.n_clips == 5 and result.n_ties == 1
    assert result.share == {"A": 70.0, "B": 30.0}
    assert result.margins == pytest.approx(MARGINS, abs=1e-6)
    assert list(result.margins) == list(DESIGN)
    assert (result.encoder, result.encoder_fingerprint) == ("lookup", "fp-lookup")
    # Exact bootstrap law of the mean of (1, 0, 1, 1, 0.5) over all 5**5 resamples (worked out
    # by enumeration): P(<= 20 %) = 0.0099, P(<= 30 %) = 0.0323, P(<= 90 %) = 0.922, so the
    # 2.5 % and 97.5 % points are 30 and 100; B's interval is the mirror image.
    assert result.ci95 == {"A": (30.0, 100.0), "B": (0.0, 70.0)}

    swapped = compare_runs(("B", "A"), folders, LookupEncoder(), targets, list(DESIGN), n_boot=50)
    assert swapped.share == {"B": 30.0, "A": 70.0}
    assert swapped.margins == pytest.approx({c: -m for c, m in MARGINS.items()}, abs=1e-6)

    one = compare_runs(("A", "B"), folders, LookupEncoder(), targets, ["c2_0"], n_boot=50)
    assert one.share == {"A": 0.0, "B": 100.0} and one.n_ties == 0 and one.n_clips == 1
    won = compare_runs(("A", "B"), folders, LookupEncoder(), targets, ["c4_0"], n_boot=50)
    assert won.margins["c4_0"] == pytest.approx(1.0) and won.n_ties == 0  # margin 1 is a win
    tie = compare_runs(("A", "B"), folders, LookupEncoder(), targets, ["c5_0"], n_boot=50)
    assert tie.n_ties == 1 and tie.share == {"A": 50.0, "B": 50.0}


def test_comparison_interval_follows_the_seed_and_the_draws(tmp_path):
    folders, targets = make_pair(tmp_path)
    clips = ["c1_0", "c2_0", "c5_0"]  # wins of A: 1, 0, 0.5

    def ci(**kw):
        return compare_runs(("A", "B"), folders, LookupEncoder(), targets, clips, **kw).ci95["A"]

    # 3 clips: a resample's mean is k/6 for k = 0..6; with 3 draws, P(all three are c2) =
    # 1/27 > 2.5 %, so the lower point is 0 and, mirrored, the upper 100.
    assert ci(n_boot=3000) == (0.0, 100.0)
    # one draw: every quantile is that one resample's share
    one_draw = {ci(n_boot=1, seed=s) for s in range(8)}
    assert all(lo == hi for lo, hi in one_draw) and len(one_draw) > 1


def test_comparison_refuses_what_it_cannot_compare(tmp_path):
    folders, targets = make_pair(tmp_path)
    enc = LookupEncoder()
    with pytest.raises(ValueError, match="two different runs, got 'A' twice"):
        compare_runs(("A", "A"), folders, enc, targets, ["c1_0"])
    with pytest.raises(ValueError, match="runs 'A' and 'B': no clip to compare"):
        compare_runs(("A", "B"), folders, enc, targets, [])
    gappy = {"A": targets["A"], "B": {c: v for c, v in targets["B"].items() if c != "c3_0"}}
    with pytest.raises(KeyError, match=r"run 'B': no audio target for clip\(s\) \['c3_0'\]"):
        compare_runs(("A", "B"), folders, enc, gappy, list(DESIGN))
    (folders["A"] / "c4_0.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"run 'A': no image in .* \['c4_0'\]"):
        compare_runs(("A", "B"), folders, enc, targets, list(DESIGN))
    long = {"A": targets["A"], "B": {**targets["B"], "c1_0": np.ones(4)}}
    with pytest.raises(ValueError, match=r"clip c1_0: targets of shapes \(3,\) \(A\) and \(4,\)"):
        compare_runs(("A", "B"), folders, enc, long, ["c1_0"])
    zero = {"A": {**targets["A"], "c1_0": np.zeros(3)}, "B": targets["B"]}
    with pytest.raises(ValueError, match="run 'A': target of c1_0: zero"):
        compare_runs(("A", "B"), folders, enc, zero, ["c1_0"])
    opposite = {"A": {"c1_0": E1}, "B": {"c1_0": -E1}}
    with pytest.raises(ValueError, match="summed targets of c1_0: zero"):
        compare_runs(("A", "B"), folders, enc, opposite, ["c1_0"])


def test_comparison_is_written_beside_the_per_run_scores(tmp_path):
    folders, targets = make_pair(tmp_path)
    result = compare_runs(("A", "B"), folders, LookupEncoder(), targets, list(DESIGN), n_boot=20)
    path = tmp_path / "auto2afc.json"
    write_auto_scores({}, "wavbrivl-000000000000", path, result)
    payload = json.loads(path.read_text())
    assert payload["study_id"] == "wavbrivl-000000000000" and payload["runs"] == {}
    assert payload["comparison"]["share"] == {"A": 70.0, "B": 30.0}
    assert payload["comparison"]["runs"] == ["A", "B"]
    write_auto_scores({}, "s", path, {"runs": ["A", "B"], "skipped": "why"})
    assert json.loads(path.read_text())["comparison"] == {"runs": ["A", "B"], "skipped": "why"}
    write_auto_scores({}, "s", path)
    assert "comparison" not in json.loads(path.read_text())
    assert isinstance(result, RunComparison)


# --- the sheets stage ---------------------------------------------------------------------------


def make_manifest(path: Path) -> Path:
    rows = [
        {"clip_id": c, "labels": [f"/m/{d[0]}"], "label_names": [d[0].title()]}
        for c, d in DESIGN.items()
    ]
    write_table_atomic(path, pa.Table.from_pylist(rows))
    return path


REAL = {"c1_0": CYAN, "c2_0": ORANGE, "c3_0": PURPLE, "c4_0": TEAL, "c5_0": (90, 90, 255)}


def run_stage(tmp_path: Path, folders: dict, **kw):
    media = make_media(tmp_path / "media.parquet", REAL)
    logs: list[str] = []
    result = assemble_sheets(
        run_folders=folders,
        media_paths=[media],
        manifest_path=make_manifest(tmp_path / "manifest.parquet"),
        out_dir=tmp_path / "sheets",
        encoder=LookupEncoder(),
        log=logs.append,
        **kw,
    )
    return result, logs


def test_stage_writes_the_multi_run_grid_and_the_comparison(tmp_path):
    folders, _ = make_pair(tmp_path)
    result, logs = run_stage(
        tmp_path, folders, real_frame_row=True, compare=["B", "A"], max_columns=3
    )
    out = tmp_path / "sheets"
    assert result["columns"] == ["c5_0", "c1_0", "c3_0"]  # one per label: bell, dog, rain
    assert result["comparison"] == {"B": 30.0, "A": 70.0}
    payload = json.loads((out / "auto2afc.json").read_text())
    assert payload["comparison"]["share"] == {"B": 30.0, "A": 70.0}
    assert payload["comparison"]["n_clips"] == 5
    assert set(payload["runs"]) == {"A", "B"}  # the per-run scores are still there
    assert "B fits the sound better for 30.0%" in "\n".join(logs)
    assert "A for 70.0%" in "\n".join(logs)
    assert "grid: 2 run(s) + real frames x 3 clip(s)" in logs
    # rows: real frames (c5 light blue, c1 cyan, c3 purple) above run A (green, yellow, magenta)
    # above run B (green, dark red, blue)
    found = cell_centres(
        out / "grid.png",
        {"c5": (90, 90, 255), "c1": CYAN, "c3": PURPLE, "a1": YELLOW, "b1": DARK_RED},
        tol=25,
    )
    assert found["c5"][0] < found["a1"][0] < found["b1"][0]
    assert found["c5"][1] < found["c1"][1] < found["c3"][1]
    assert abs(found["c1"][1] - found["a1"][1]) < 5 and abs(found["a1"][1] - found["b1"][1]) < 5
    assert (out / "grid.pdf").exists() and (out / "study.html").exists()


def test_stage_without_real_frames_or_comparison_keeps_the_old_outputs(tmp_path):
    folders, _ = make_pair(tmp_path)
    (folders["B"] / "c4_0.png").unlink()
    record = json.loads((folders["B"] / "generation.json").read_text())
    record["clips"] = [e for e in record["clips"] if e["clip_id"] != "c4_0"]
    (folders["B"] / "generation.json").write_text(json.dumps(record))
    result, logs = run_stage(tmp_path, folders, max_columns=3)
    assert result["comparison"] is None
    assert "comparison" not in json.loads((tmp_path / "sheets" / "auto2afc.json").read_text())
    assert "grid: 2 run(s) x 3 clip(s)" in logs
    assert "grid: 1 clip(s) of run A left out, not in every run: ['c4_0']" in logs
    found = cell_centres(tmp_path / "sheets" / "grid.png", {"real": CYAN, "a1": YELLOW})
    assert found["real"] is None and found["a1"] is not None


def test_stage_compares_only_runs_in_the_encoders_space(tmp_path):
    other = {"fingerprints": {"image_encoder": "fp-other"}, "method": "unclip"}
    folders, _ = make_pair(tmp_path, record_b=other)
    result, logs = run_stage(tmp_path, folders, compare=["A", "B"])
    assert result["comparison"] is None
    comparison = json.loads((tmp_path / "sheets" / "auto2afc.json").read_text())["comparison"]
    assert comparison["runs"] == ["A", "B"]
    assert comparison["skipped"].startswith("run(s) ['B'] generated with another image encoder")
    assert "(fp-lookup)" in comparison["skipped"]
    assert any(
        line.startswith("automatic comparison A vs B not made: run(s) ['B']") for line in logs
    )


@pytest.mark.parametrize(
    ("compare", "message"),
    [
        (["A", "A"], r"sheets.compare needs two different runs, got \['A', 'A'\]"),
        (["A"], r"sheets.compare needs two different runs, got \['A'\]"),
        (["A", "C"], r"sheets.compare names \['C'\], which are not among the sheets' runs"),
    ],
)
def test_stage_refuses_a_bad_compare_before_writing(tmp_path, compare, message):
    folders, _ = make_pair(tmp_path)
    with pytest.raises(ValueError, match=message):
        run_stage(tmp_path, folders, compare=compare)
    assert not (tmp_path / "sheets" / "grid.png").exists()


# --- what the defaults and the JSON are (pinned) -----------------------------------------------


class BatchSpyEncoder:
    """Answers e1 for red, e2 otherwise, and records the size of every batch it is given."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def encode_images(self, images, aug_seeds=None):
        import torch

        self.batches.append(len(images))
        rows = [E1 if image.getpixel((0, 0)) == RED else E2 for image in images]
        return torch.tensor(np.array(rows), dtype=torch.float32)


def make_many(tmp_path: Path, n: int):
    clips = {f"k{i:02d}_0": ("dog", RED) for i in range(n)}
    folders = {
        "A": make_run(tmp_path / "a", clips),
        "B": make_run(tmp_path / "b", {c: ("dog", GREEN) for c in clips}),
    }
    targets = {run: {c: E1 for c in clips} for run in folders}
    return folders, targets, list(clips)


def test_comparison_embeds_in_batches_of_16_by_default(tmp_path):
    from wavbrivl.sheets.auto2afc import embed_images

    folders, targets, clips = make_many(tmp_path, 20)
    spy = BatchSpyEncoder()
    result = compare_runs(("A", "B"), folders, spy, targets, clips, n_boot=10)
    assert spy.batches == [16, 4, 16, 4]  # run A's 20 images, then run B's
    assert result.share == {"A": 100.0, "B": 0.0}
    assert (result.encoder, result.encoder_fingerprint) == ("BatchSpyEncoder", "")
    spy = BatchSpyEncoder()
    compare_runs(("A", "B"), folders, spy, targets, clips, n_boot=10, batch_size=7)
    assert spy.batches == [7, 7, 6, 7, 7, 6]
    spy = BatchSpyEncoder()
    paths = {c: folders["A"] / f"{c}.png" for c in clips[:17]}
    assert list(embed_images(spy, paths)) == clips[:17] and spy.batches == [16, 1]


def test_comparison_bootstraps_the_wins_with_the_study_defaults(tmp_path, monkeypatch):
    import wavbrivl.sheets.auto2afc as auto2afc

    calls = []

    def spy(counts, n_boot, seed):
        calls.append((np.array(counts), n_boot, seed))
        return np.array([[1.0, 2.0], [3.0, 4.0]])

    monkeypatch.setattr(auto2afc, "bootstrap_percent_ci", spy)
    folders, targets = make_pair(tmp_path)
    result = compare_runs(("A", "B"), folders, LookupEncoder(), targets, list(DESIGN))
    counts, n_boot, seed = calls[0]
    # per clip (wins of A, wins of B): c1 A, c2 B, c3 A, c4 A, c5 tie
    assert counts.tolist() == [[1, 0], [0, 1], [1, 0], [1, 0], [0.5, 0.5]]
    assert (n_boot, seed) == (10_000, 0)
    assert result.ci95 == {"A": (1.0, 2.0), "B": (3.0, 4.0)}
    compare_runs(("A", "B"), folders, LookupEncoder(), targets, ["c1_0"], n_boot=7, seed=3)
    assert (calls[1][1], calls[1][2]) == (7, 3)


def test_a_non_finite_target_is_refused(tmp_path):
    folders, targets = make_pair(tmp_path)
    bad = {"A": targets["A"], "B": {**targets["B"], "c2_0": np.array([np.nan, 1.0, 0.0])}}
    with pytest.raises(ValueError, match="run 'B': target of c2_0: zero or non-finite"):
        compare_runs(("A", "B"), folders, LookupEncoder(), bad, ["c2_0"])


def test_auto2afc_json_is_indented_by_one_and_ends_with_a_newline(tmp_path):
    path = tmp_path / "auto2afc.json"
    write_auto_scores({}, "s", path, {"runs": ["A", "B"], "skipped": "why"})
    assert path.read_text() == (
        '{\n "study_id": "s",\n "runs": {},\n "comparison": {\n  "runs": [\n   "A",\n'
        '   "B"\n  ],\n  "skipped": "why"\n }\n}\n'
    )


# --- the per-run score on the study's trials: its refusals and defaults ----------------------


def study_fixture(tmp_path):
    from test_sheets import CLIPS, MeanColourEncoder, colour_target, make_study

    from wavbrivl.sheets.study import read_key

    _, kit = make_study(tmp_path)
    key = read_key(kit.key_path)
    targets = {cid: colour_target(cid) for cid in CLIPS}
    return key, MeanColourEncoder(), targets


def test_auto_score_refuses_trials_it_cannot_score(tmp_path):
    from wavbrivl.sheets.auto2afc import auto_two_choice, auto_two_choice_study

    key, enc, targets = study_fixture(tmp_path)
    trials_a = [t for t in key["trials"] if t["run"] == "encoder-a"]
    folder = key["runs"]["encoder-a"]
    with pytest.raises(ValueError, match="^no trials to score$"):
        auto_two_choice([], folder, enc, targets)
    with pytest.raises(ValueError, match=r"trials of one run expected, got runs \['encoder-a', "):
        auto_two_choice(key["trials"], folder, enc, targets)
    first = trials_a[0]["clip_id"]
    gappy = {c: v for c, v in targets.items() if c != first}
    with pytest.raises(
        KeyError, match=rf"run 'encoder-a': no audio target for clip\(s\) \['{first}'\]"
    ):
        auto_two_choice(trials_a, folder, enc, gappy)
    long = {c: np.ones(4) for c in targets}
    with pytest.raises(ValueError, match=r"has shape \(4,\), the image encoder gives \(3,\)"):
        auto_two_choice(trials_a, folder, enc, long)
    runs = list(dict.fromkeys(t["run"] for t in key["trials"]))  # in the trials' order
    for what, enc_map, tgt_map, folders in [
        ("image encoder", {}, dict.fromkeys(runs, targets), None),
        ("targets", dict.fromkeys(runs, enc), {}, None),
        ("folder", dict.fromkeys(runs, enc), dict.fromkeys(runs, targets), {}),
    ]:
        with pytest.raises(KeyError, match=f"no {what} given for run '{runs[0]}'"):
            auto_two_choice_study(key, enc_map, tgt_map, folders, n_boot=5)


def test_auto_score_defaults(tmp_path, monkeypatch):
    import wavbrivl.sheets.auto2afc as auto2afc

    key, enc, targets = study_fixture(tmp_path)
    calls = []

    def spy(counts, n_boot, seed):
        calls.append((n_boot, seed))
        return np.array([[10.0, 20.0], [80.0, 90.0]])

    monkeypatch.setattr(auto2afc, "bootstrap_percent_ci", spy)
    trials_a = [t for t in key["trials"] if t["run"] == "encoder-a"]
    score = auto2afc.auto_two_choice(trials_a, key["runs"]["encoder-a"], enc, targets)
    assert calls == [(10_000, 0)] and score.ci95 == (10.0, 20.0)
    assert (score.encoder, score.encoder_fingerprint) == ("mean-colour", "test")
    runs = list(dict.fromkeys(t["run"] for t in key["trials"]))
    scores = auto2afc.auto_two_choice_study(
        key, dict.fromkeys(runs, enc), dict.fromkeys(runs, targets)
    )
    assert calls[1:] == [(10_000, 0), (10_000, 0)] and list(scores) == runs
    auto2afc.auto_two_choice_study(
        key, dict.fromkeys(runs, enc), dict.fromkeys(runs, targets), n_boot=4, seed=9
    )
    assert calls[3:] == [(4, 9), (4, 9)]


# --- the grid's layout, files and long lists (pinned) --------------------------------------------


def test_grid_layout_is_pinned(tmp_path):
    long_label = "one two three four five six seven eight nine ten eleven twelve"
    clips = {"a_0": ("bell", RED), "b_0": (long_label, GREEN), "c_0": (" ", BLUE)}
    run_a = load_generation_run("A", make_run(tmp_path / "a", clips))
    run_b = load_generation_run("B", make_run(tmp_path / "b", clips))
    fig, _ = plot_grid([run_a, run_b], ["a_0", "b_0", "c_0"])
    assert tuple(fig.get_size_inches()) == pytest.approx((1.6 * 3 + 1.2, 1.6 * 2 + 0.9))
    pars = fig.subplotpars
    assert (pars.left, pars.right, pars.top) == pytest.approx((0.6 / 6.0, 0.99, 0.98))
    assert (pars.wspace, pars.hspace, pars.bottom) == pytest.approx((0.05, 0.05, 0.8 / 4.1))
    assert fig.axes[0].yaxis.label.get_fontsize() == 9
    assert fig.axes[3].xaxis.label.get_fontsize() == 8
    assert all(len(ax.get_xticks()) == 0 and len(ax.get_yticks()) == 0 for ax in fig.axes)
    # textwrap at 18 characters, 3 lines at most, "…" for the rest; a blank label stays itself
    assert [ax.get_xlabel() for ax in fig.axes[3:]] == [
        "bell",
        "one two three four\nfive six seven\neight nine ten…",
        " ",
    ]
    fig, _ = plot_grid([run_a], ["b_0"], cell_inches=2.0, wrap_chars=10)
    assert tuple(fig.get_size_inches()) == pytest.approx((2.0 + 1.2, 2.0 + 0.9))
    assert fig.axes[0].get_xlabel() == "one two\nthree four\nfive six…"


def test_grid_files_are_reproducible_and_sized_by_dpi(tmp_path):
    run = load_generation_run("A", make_run(tmp_path / "a", {"a_0": ("bell", RED)}))
    png, pdf = tmp_path / "g.png", tmp_path / "g.pdf"
    write_grid([run], png, pdf)
    with Image.open(png) as image:
        assert image.size == (round((1.6 + 1.2) * 150), round((1.6 + 0.9) * 150))
        assert "Software" not in image.info
    data = pdf.read_bytes()
    assert b"/CreationDate" not in data and b"/Creator" not in data
    write_grid([run], png, dpi=50)
    with Image.open(png) as image:
        assert image.size == (round(2.8 * 50), round(2.5 * 50))


def test_long_lists_of_clips_are_cut_to_ten_in_messages(tmp_path):
    many = [f"m{i:02d}_0" for i in range(12)]
    run_a = load_generation_run(
        "A", make_run(tmp_path / "a", {c: ("dog", RED) for c in ["x_0", *many]})
    )
    run_b = load_generation_run("B", make_run(tmp_path / "b", {"x_0": ("dog", RED)}))
    with pytest.raises(KeyError, match=r"clip\(s\) \['m00_0', .*'m09_0'\]\"?$") as err:
        plot_grid([run_a, run_b], many)
    assert "m10_0" not in str(err.value)
    with pytest.raises(KeyError) as err:
        plot_grid([run_a], many, real_frames={})
    assert "m09_0" in str(err.value) and "m10_0" not in str(err.value)
    media = make_media(tmp_path / "m.parquet", {"x_0": RED})
    with pytest.raises(KeyError) as err:
        load_real_frames([media], many)
    assert "m09_0: not in" in str(err.value) and "m10_0" not in str(err.value)
    folders, targets, clips = make_many(tmp_path / "pair", 12)
    gappy = {"A": targets["A"], "B": {}}
    with pytest.raises(KeyError) as err:
        compare_runs(("A", "B"), folders, BatchSpyEncoder(), gappy, clips)
    assert clips[9] in str(err.value) and clips[10] not in str(err.value)
    for clip in clips:
        (folders["B"] / f"{clip}.png").unlink()
    with pytest.raises(FileNotFoundError) as err:
        compare_runs(("A", "B"), folders, BatchSpyEncoder(), targets, clips)
    assert clips[9] in str(err.value) and clips[10] not in str(err.value)


def test_select_columns_needs_at_least_one(tmp_path):
    from wavbrivl.sheets.grid import select_columns

    run = load_generation_run(
        "A", make_run(tmp_path / "a", {"x_0": ("dog", RED), "y_0": ("cat", RED)})
    )
    assert select_columns(run, 1) == ["y_0"]
    with pytest.raises(ValueError, match="max_columns must be >= 1, got 0"):
        select_columns(run, 0)


def test_real_frame_reasons_are_joined_by_semicolons(tmp_path):
    bad = {"clip_id": "bad_0", "status": "bad_media", "reason": "no video", "notes": ""}
    media = make_media(tmp_path / "m.parquet", {"x_0": RED}, [bad])
    with pytest.raises(KeyError) as err:
        load_real_frames([media], ["gone_0", "bad_0"])
    assert "(bad_0: media status bad_media: no video; gone_0: not in the media shards)" in str(
        err.value
    )


def test_write_grid_passes_its_options_and_shows_twelve_clips_by_default(tmp_path, monkeypatch):
    import wavbrivl.sheets.grid as grid

    clips = {f"k{i:02d}_0": (f"class{i:02d}", RED) for i in range(13)}
    run = load_generation_run("A", make_run(tmp_path / "a", clips))
    assert len(write_grid([run], tmp_path / "g.png")) == 12
    seen = []
    real_plot = grid.plot_grid

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return real_plot(*args, **kwargs)

    monkeypatch.setattr(grid, "plot_grid", spy)
    frames = {"k00_0": Image.new("RGB", (4, 4), BLUE)}
    write_grid(
        [run], tmp_path / "h.png", None, ["k00_0"], real_frames=frames, row_labels={"A": "x"}
    )
    assert seen[0]["row_labels"] == {"A": "x"} and seen[0]["real_frames"] is frames
    assert write_grid([run], tmp_path / "i.png", max_columns=2) == ["k00_0", "k01_0"]


def test_a_zero_image_embedding_is_refused_naming_the_run(tmp_path):
    folders, targets = make_pair(tmp_path)
    for run in ("A", "B"):
        black = tmp_path / f"black_{run}"
        folders_black = {**folders, run: make_run(black, {"c1_0": ("dog", (0, 0, 0))})}
        with pytest.raises(ValueError, match=f"run '{run}': image of c1_0: zero or non-finite"):
            compare_runs(("A", "B"), folders_black, LookupEncoder(), targets, ["c1_0"])


def test_grid_defaults_wrap_and_greyscale_images(tmp_path):
    clips = {f"k{i:02d}_0": (f"class{i:02d}", RED) for i in range(13)}
    clips["k00_0"] = ("abcdefghij klmnopqr stu", RED)
    run = load_generation_run("A", make_run(tmp_path / "a", clips))
    fig, columns = plot_grid([run])
    assert len(columns) == 12  # the default max_columns
    assert fig.axes[0].get_xlabel() == "abcdefghij\nklmnopqr stu"  # wrapped at 18
    with pytest.raises(ValueError, match="^the grid needs at least one run$"):
        plot_grid([])
    with pytest.raises(ValueError, match="^the grid needs at least one clip$"):
        plot_grid([run], [])
    # a greyscale PNG is drawn grey, not through a colour map
    Image.new("L", (24, 24), 128).save(tmp_path / "a" / "k00_0.png")
    png = tmp_path / "g.png"
    write_grid([run], png, clip_ids=["k00_0"])
    found = cell_centres(png, {"grey": (128, 128, 128)}, tol=6, min_pixels=500)
    assert found["grey"] is not None


def test_a_greyscale_real_frame_is_drawn_grey(tmp_path):
    run = load_generation_run("A", make_run(tmp_path / "a", {"x_0": ("dog", RED)}))
    png = tmp_path / "g.png"
    write_grid([run], png, real_frames={"x_0": Image.new("L", (24, 24), 60)})
    assert cell_centres(png, {"grey": (60, 60, 60)}, tol=6, min_pixels=500)["grey"] is not None


def test_dollar_signs_in_run_names_and_labels_are_text(tmp_path):
    odd = r"$\notacommand$ 50%"
    run = load_generation_run("A", make_run(tmp_path / "a", {"x_0": (odd, RED)}))
    run = type(run)(name=odd, folder=run.folder, clips=run.clips)
    write_grid([run], tmp_path / "g.png")  # rendering mathtext would fail on "\notacommand"
    write_grid([run], tmp_path / "h.png", real_frames={"x_0": Image.new("RGB", (4, 4), RED)})


def test_auto_score_embeds_in_batches_of_16_by_default(tmp_path):
    from wavbrivl.hashing import sha256_of
    from wavbrivl.sheets.auto2afc import auto_two_choice

    folders, targets, clips = make_many(tmp_path, 20)
    folder = folders["A"]
    trials = [
        {
            "trial_id": f"t{i:03d}",
            "run": "A",
            "clip_id": clip,
            "other_clip_id": clips[(i + 1) % len(clips)],
            "match_image_sha256": sha256_of(folder / f"{clip}.png"),
            "other_image_sha256": sha256_of(folder / f"{clips[(i + 1) % len(clips)]}.png"),
        }
        for i, clip in enumerate(clips)
    ]
    spy = BatchSpyEncoder()
    score = auto_two_choice(trials, folder, spy, targets["A"], n_boot=10)
    assert spy.batches == [16, 4] and score.n_trials == 20
