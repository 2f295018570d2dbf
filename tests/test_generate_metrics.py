"""Generation metrics (generate/metrics.py): AIS, IIS, class agreement, FID/KID, intervals.

Expected values come from independent numpy computations on hand-made embeddings: a fake
image encoder maps a solid-colour picture to ``mean RGB / 255 - 0.5``, so every embedding is
known from the colour the test chose. FID/KID run on a random-weight InceptionV3 saved in
torch-fidelity's format inside the test, with the network blocked.
"""

from __future__ import annotations

import io
import json
import socket
import urllib.request

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from wavbrivl.generate.metrics import (
    METRICS_JSON,
    METRICS_TSV,
    MetricsConfig,
    bootstrap_mean_ci,
    fid_kid,
    metrics_config,
    mismatched_mean,
    run_metrics,
    similarity_metrics,
    unit_rows,
)
from wavbrivl.generate.png import generated_png_path, save_png
from wavbrivl.generate.records import write_targets
from wavbrivl.generate.targets import AudioTargets


class ColourEncoder:
    """A frozen 'encoder' whose embedding of a picture is its mean colour, centred."""

    name = "colour"
    fingerprint = "colour-fp"
    dim = 3

    def __init__(self) -> None:
        self.calls = 0

    def encode_images(self, images):
        self.calls += 1
        rows = [np.asarray(im.convert("RGB"), dtype=np.float64).mean(axis=(0, 1)) for im in images]
        return torch.tensor(np.stack(rows) / 255.0 - 0.5, dtype=torch.float32)


def colour_vec(rgb) -> np.ndarray:
    return np.asarray(rgb, dtype=np.float64) / 255.0 - 0.5


def cos(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def solid(rgb, size=(16, 16)) -> Image.Image:
    return Image.new("RGB", size, tuple(int(x) for x in rgb))


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


# Real frames: three classes, three clips each (class colours with a per-clip twist).
REAL = {
    "r0": ("red", (250, 10, 10)),
    "r1": ("red", (200, 40, 20)),
    "r2": ("red", (230, 60, 90)),
    "g0": ("green", (10, 240, 30)),
    "g1": ("green", (60, 200, 10)),
    "g2": ("green", (90, 220, 100)),
    "b0": ("blue", (20, 30, 250)),
    "b1": ("blue", (70, 10, 210)),
    "b2": ("blue", (10, 90, 180)),
}
# Generated pictures for six clips: four look like their class, r1 looks green, b0 red.
GEN = {
    "r0": (240, 30, 30),
    "r1": (40, 230, 60),
    "g0": (30, 250, 20),
    "g2": (60, 180, 90),
    "b0": (220, 50, 40),
    "b2": (30, 40, 230),
}
# g(audio) targets, hand-made 3-d vectors (any direction).
TARGETS = {
    "r0": (0.9, -0.3, -0.4),
    "r1": (0.2, 0.5, -0.6),
    "g0": (-0.4, 0.8, -0.1),
    "g2": (-0.2, 0.1, 0.3),
    "b0": (-0.5, -0.5, 0.9),
    "b2": (0.1, -0.7, 0.6),
}


def write_media(path, rows, broken=()):
    clip_ids = list(rows) + list(broken)
    pq.write_table(
        pa.table(
            {
                "clip_id": clip_ids,
                "status": ["ok"] * len(rows) + ["bad_media"] * len(broken),
                "reason": [""] * len(rows) + ["no video stream"] * len(broken),
                "frame": pa.array(
                    [png_bytes(solid(rgb)) for _, rgb in rows.values()] + [None] * len(broken),
                    pa.binary(),
                ),
            }
        ),
        path,
    )
    return path


def write_manifest(path, labels):
    pq.write_table(
        pa.table(
            {
                "clip_id": list(labels),
                "labels": [[lab] for lab in labels.values()],
                "label_names": [[lab] for lab in labels.values()],
            }
        ),
        path,
    )
    return path


def write_run(run_dir, gen, targets, labels):
    run_dir.mkdir(parents=True)
    for clip_id, rgb in gen.items():
        save_png(solid(rgb, (24, 24)), generated_png_path(run_dir, clip_id), metadata={})
    ids = sorted(targets)
    vectors = torch.tensor(np.array([targets[c] for c in ids]).reshape(-1, 3), dtype=torch.float32)
    vectors = vectors / vectors.norm(dim=1, keepdim=True).clamp_min(1e-12)
    write_targets(
        run_dir / "targets.parquet",
        AudioTargets(ids, vectors, [1.0] * len(ids)),
        [labels[c] for c in ids],
        fingerprints={},
    )
    record = {"clips": [{"clip_id": c, "label": labels[c]} for c in gen]}
    (run_dir / "generation.json").write_text(json.dumps(record))
    return run_dir


def make_run(tmp_path, gen=GEN, targets=TARGETS, real=REAL, broken=()):
    labels = {cid: lab for cid, (lab, _) in real.items()} | {b: "blue" for b in broken}
    media = write_media(tmp_path / "media.parquet", real, broken)
    manifest = write_manifest(tmp_path / "manifest.parquet", labels)
    run_dir = write_run(tmp_path / "run" / "ds", gen, targets, labels)
    return run_dir, media, manifest, labels


def nearest_centroid_share(gen, real):
    """Brute force: per class the mean of unit real vectors, nearest by cosine."""
    classes = sorted({lab for lab, _ in real.values()})
    cents = {}
    for c in classes:
        vs = [
            colour_vec(rgb) / np.linalg.norm(colour_vec(rgb))
            for lab, rgb in real.values()
            if lab == c
        ]
        cents[c] = np.mean(vs, axis=0)
    hits = 0
    for clip_id, rgb in gen.items():
        best = max(classes, key=lambda c: cos(colour_vec(rgb), cents[c]))
        hits += best == real[clip_id][0]
    return hits / len(gen), 1 / len(classes)


# --- the numbers ------------------------------------------------------------------------------


def test_run_metrics_match_an_independent_computation(tmp_path):
    run_dir, media, manifest, _ = make_run(tmp_path)
    cfg = MetricsConfig(bootstrap_samples=200, seed=3)
    metrics = run_metrics(run_dir, [media], manifest, ColourEncoder(), cfg, log=lambda m: None)

    ids = sorted(GEN)
    ais = [cos(TARGETS[c], colour_vec(GEN[c])) for c in ids]
    iis = [cos(colour_vec(GEN[c]), colour_vec(REAL[c][1])) for c in ids]
    ais_other = np.mean([cos(TARGETS[a], colour_vec(GEN[b])) for a in ids for b in ids if a != b])
    iis_other = np.mean(
        [cos(colour_vec(GEN[a]), colour_vec(REAL[b][1])) for a in ids for b in ids if a != b]
    )
    assert metrics["ais"]["mean"] == pytest.approx(np.mean(ais), abs=1e-6)
    assert metrics["ais"]["n"] == 6
    assert metrics["ais"]["mismatched"] == pytest.approx(ais_other, abs=1e-6)
    assert metrics["ais"]["per_clip"]["b0"] == pytest.approx(ais[ids.index("b0")], abs=1e-6)
    assert metrics["iis"]["mean"] == pytest.approx(np.mean(iis), abs=1e-6)
    assert metrics["iis"]["mismatched"] == pytest.approx(iis_other, abs=1e-6)
    assert metrics["iis"]["no_real_frame"] == []

    share, chance = nearest_centroid_share(GEN, REAL)
    assert share == pytest.approx(4 / 6)  # the hand-made case: r1 and b0 miss
    agree = metrics["class_agreement"]
    assert agree["share"] == pytest.approx(share)
    assert agree["chance"] == pytest.approx(chance)
    assert agree["predicted"]["r1"] == "green"
    assert agree["predicted"]["b0"] == "red"
    for name in ("ais", "iis"):
        low, high = metrics[name]["ci95"]
        assert low <= metrics[name]["mean"] <= high
        assert low < high
    assert agree["ci95"][0] <= share <= agree["ci95"][1]

    assert metrics["n_generated"] == 6
    assert metrics["n_real_frames"] == 9
    assert metrics["image_encoder_fingerprint"] == "colour-fp"
    assert metrics["fid_kid"]["fid"] is None
    assert "no Inception weights" in metrics["fid_kid"]["reason"]
    assert json.loads((run_dir / METRICS_JSON).read_text()) == metrics


def test_metrics_tsv_rows(tmp_path):
    run_dir, media, manifest, _ = make_run(tmp_path)
    metrics = run_metrics(
        run_dir, [media], manifest, ColourEncoder(), MetricsConfig(bootstrap_samples=50)
    )
    lines = (run_dir / METRICS_TSV).read_text().splitlines()
    assert lines[0].split("\t") == [
        "metric",
        "value",
        "ci95_low",
        "ci95_high",
        "n",
        "reference",
        "note",
    ]
    rows = {line.split("\t")[0]: line.split("\t") for line in lines[1:]}
    assert list(rows) == ["ais", "iis", "class_agreement", "fid", "kid"]
    assert float(rows["ais"][1]) == pytest.approx(metrics["ais"]["mean"], rel=1e-5)
    assert float(rows["ais"][2]) == pytest.approx(metrics["ais"]["ci95"][0], rel=1e-5)
    assert float(rows["ais"][3]) == pytest.approx(metrics["ais"]["ci95"][1], rel=1e-5)
    assert rows["ais"][4] == "6"
    assert float(rows["ais"][5]) == pytest.approx(metrics["ais"]["mismatched"], rel=1e-5)
    assert float(rows["iis"][5]) == pytest.approx(metrics["iis"]["mismatched"], rel=1e-5)
    assert float(rows["class_agreement"][1]) == pytest.approx(4 / 6, rel=1e-5)
    assert float(rows["class_agreement"][5]) == pytest.approx(1 / 3, rel=1e-5)
    assert rows["class_agreement"][6] == "reference = chance (1 / classes)"
    assert rows["fid"][1:4] == ["", "", ""]
    assert rows["fid"][4] == "6"
    assert "no Inception weights configured" in rows["fid"][6]
    assert rows["kid"][6] == rows["fid"][6]


def test_a_generated_clip_without_real_frame_is_listed_not_scored_for_iis(tmp_path):
    real = {k: v for k, v in REAL.items() if k != "g2"}
    run_dir, media, manifest, labels = make_run(tmp_path, real=real, broken=("g2",))
    # g2 has a manifest row (blue, from `broken`) but no frame
    metrics = run_metrics(run_dir, [media], manifest, ColourEncoder(), MetricsConfig())
    assert metrics["iis"]["n"] == 5
    assert metrics["iis"]["no_real_frame"] == ["g2"]
    assert "g2" not in metrics["iis"]["per_clip"]
    assert metrics["ais"]["n"] == 6
    assert metrics["n_real_frames"] == 8
    ids = [c for c in sorted(GEN) if c != "g2"]
    want = np.mean([cos(colour_vec(GEN[c]), colour_vec(REAL[c][1])) for c in ids])
    assert metrics["iis"]["mean"] == pytest.approx(want, abs=1e-6)


def test_a_run_without_images_writes_nulls_and_reasons(tmp_path):
    run_dir, media, manifest, _ = make_run(tmp_path, gen={}, targets={})
    metrics = run_metrics(run_dir, [media], manifest, ColourEncoder(), MetricsConfig())
    assert metrics["ais"] == {
        "mean": None,
        "ci95": None,
        "n": 0,
        "mismatched": None,
        "per_clip": {},
        "unscored": {},
    }
    assert metrics["iis"]["mean"] is None
    assert metrics["class_agreement"]["share"] is None
    assert metrics["class_agreement"]["reason"] == "no generated images"
    rows = (run_dir / METRICS_TSV).read_text().splitlines()
    assert rows[1].split("\t")[:5] == ["ais", "", "", "", "0"]
    assert rows[3].split("\t")[6] == "no generated images"


def test_a_silent_clip_zero_target_or_embedding_is_listed_not_a_crash():
    cfg = MetricsConfig(bootstrap_samples=20)
    gen = {
        "a": np.array([1.0, 0.0]),
        "b": np.array([0.6, 0.8]),
        "c": np.array([0.0, 0.0]),  # a degenerate image embedding
        "d": np.array([0.0, 1.0]),
    }
    targets = {
        "a": np.array([2.0, 0.0]),
        "b": np.array([0.0, 0.0]),  # g(audio) of silence
        "c": np.array([1.0, 0.0]),
        "d": np.array([1.0, 1.0]),
    }
    real = {"a": np.array([0.0, 3.0]), "b": np.array([1.0, 0.0]), "d": np.array([np.nan, 1.0])}
    labels = {"a": "x", "b": "y", "c": "x", "d": "x"}
    out = similarity_metrics(gen, targets, real, labels, cfg)
    assert out["ais"]["n"] == 2
    assert out["ais"]["per_clip"] == pytest.approx({"a": 1.0, "d": np.sqrt(0.5)})
    # mismatched: cos(t_a, g_d) = 0, cos(t_d, g_a) = sqrt(.5)
    assert out["ais"]["mismatched"] == pytest.approx(np.sqrt(0.5) / 2)
    assert out["ais"]["unscored"] == {
        "b": "g(audio) (silent or unusable audio?) is zero or not finite",
        "c": "the generated image's embedding is zero or not finite",
    }
    assert out["iis"]["per_clip"] == pytest.approx({"a": 0.0, "b": 0.6})
    assert out["iis"]["no_real_frame"] == ["c"]
    assert out["iis"]["unscored"] == {"d": "the real frame's embedding is zero or not finite"}
    agree = out["class_agreement"]
    assert agree["n"] == 3  # a, b, d; c has no embedding direction
    # centroids from a (x: +y axis) and b (y: +x axis); d's frame is not finite
    assert agree["predicted"] == {"a": "y", "b": "x", "d": "x"}  # only d agrees
    assert agree["share"] == pytest.approx(1 / 3)
    assert agree["chance"] == pytest.approx(1 / 2)
    assert agree["unscored"] == {"c": "the generated image's embedding is zero or not finite"}


def test_class_agreement_without_real_frames_says_so():
    cfg = MetricsConfig()
    out = similarity_metrics(
        {"a": np.array([1.0, 0.0])}, {"a": np.array([0.0, 1.0])}, {}, {"a": "x"}, cfg
    )
    assert out["class_agreement"]["reason"] == "no real frames"
    assert out["class_agreement"]["n"] == 1
    assert out["ais"]["mean"] == pytest.approx(0.0)
    assert out["ais"]["mismatched"] is None  # one clip: there is no other clip


def test_missing_target_or_label_is_an_error_naming_the_clip():
    cfg = MetricsConfig()
    gen = {"a": np.array([1.0, 0.0]), "b": np.array([0.0, 1.0])}
    with pytest.raises(ValueError, match=r"no target embedding for generated clip\(s\) \['b'\]"):
        similarity_metrics(gen, {"a": np.array([1.0, 0.0])}, {}, {"a": "x", "b": "y"}, cfg)
    with pytest.raises(ValueError, match=r"no class label for clip\(s\) \['b'\]"):
        similarity_metrics(gen, gen, {"a": np.array([1.0, 0.0])}, {"a": "x"}, cfg)


def test_unit_rows_and_mismatched_mean_by_hand():
    np.testing.assert_allclose(unit_rows(np.array([[3.0, 4.0]]), "x"), [[0.6, 0.8]])
    with pytest.raises(ValueError, match=r"^gen: zero or non-finite embedding at row 1$"):
        unit_rows(np.array([[1.0, 0.0], [0.0, 0.0]]), "gen")
    with pytest.raises(ValueError, match="at row 0"):
        unit_rows(np.array([[np.inf, 0.0], [0.0, 0.0]]), "gen")
    a = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    b = np.array([[0.0, 1.0], [1.0, 0.0], [0.8, 0.6]])
    # off-diagonal cosines: a0.b1=1, a0.b2=.8, a1.b0=1, a1.b2=.6, a2.b0=.8, a2.b1=.6
    assert mismatched_mean(a, b) == pytest.approx((1 + 0.8 + 1 + 0.6 + 0.8 + 0.6) / 6)
    assert mismatched_mean(a[:1], b[:1]) is None
    assert mismatched_mean(a[:2], b[:2]) == pytest.approx(1.0)


# --- intervals --------------------------------------------------------------------------------


def test_bootstrap_interval_covers_the_true_mean_about_95_percent():
    rng = np.random.default_rng(11)
    hits = 0
    reps = 300
    for rep in range(reps):
        sample = rng.exponential(1.0, size=40)  # skewed; true mean 1
        low, high = bootstrap_mean_ci(sample, 400, seed=rep)
        hits += low <= 1.0 <= high
    assert 0.88 <= hits / reps <= 0.985


def test_a_narrower_level_covers_less():
    rng = np.random.default_rng(5)
    hits = 0
    for rep in range(300):
        sample = rng.normal(0.0, 1.0, size=30)
        low, high = bootstrap_mean_ci(sample, 400, seed=rep, level=0.5)
        hits += low <= 0.0 <= high
    assert 0.38 <= hits / 300 <= 0.62


def test_bootstrap_is_seeded_and_bounded_by_the_data():
    values = [0.1, 0.5, 0.2, 0.9, 0.4]
    assert bootstrap_mean_ci(values, 300, seed=1) == bootstrap_mean_ci(values, 300, seed=1)
    assert bootstrap_mean_ci(values, 300, seed=1) != bootstrap_mean_ci(values, 300, seed=2)
    low, high = bootstrap_mean_ci(values, 300, seed=1)
    assert 0.1 <= low < np.mean(values) < high <= 0.9
    assert bootstrap_mean_ci([0.7, 0.7, 0.7], 50, seed=0) == (
        pytest.approx(0.7),
        pytest.approx(0.7),
    )
    with pytest.raises(ValueError, match="no values"):
        bootstrap_mean_ci([], 10, seed=0)


def test_bootstrap_of_many_values_is_chunked_but_uses_every_sample():
    # 100_000 values: the (samples, n) index array is built in chunks of 40 rows
    values = np.zeros(100_000)
    values[:500] = 1.0
    low, high = bootstrap_mean_ci(values, 400, seed=0)
    se = np.sqrt(0.005 * 0.995 / 100_000)
    assert low == pytest.approx(0.005 - 1.96 * se, abs=0.5 * se)
    assert high == pytest.approx(0.005 + 1.96 * se, abs=0.5 * se)


# --- config -----------------------------------------------------------------------------------


def test_metrics_config_defaults_and_checks(tmp_path):
    cfg = metrics_config(None)
    assert cfg == MetricsConfig(None, 50, 1000, 1000, 0, "2048")
    assert MetricsConfig(inception_layer="768").inception_layer == "768"
    with pytest.raises(
        ValueError,
        match=r"inception_layer must be one of \['64', '192', '768', '2048'\], got '2047'",
    ):
        MetricsConfig(inception_layer="2047")
    with pytest.raises(ValueError, match=r"unknown generate.metrics key\(s\) \['fid_min'\]"):
        metrics_config({"fid_min": 3})
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match=f"inception_weights: {missing} is not a file"):
        metrics_config({"inception_weights": str(missing)})
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"x")
    assert metrics_config({"inception_weights": str(weights)}).inception_weights == str(weights)
    for key in ("min_images_for_fid", "kid_subset_size"):
        assert getattr(MetricsConfig(**{key: 2}), key) == 2
        with pytest.raises(ValueError, match=f"generate.metrics.{key} must be at least 2"):
            MetricsConfig(**{key: 1})
    assert MetricsConfig(bootstrap_samples=1).bootstrap_samples == 1
    with pytest.raises(ValueError, match="bootstrap_samples must be at least 1"):
        MetricsConfig(bootstrap_samples=0)


# --- FID / KID --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory):
    """A random-weight InceptionV3 in torch-fidelity's state-dict format (built offline).

    The constructor insists on loading a state dict: it is handed an empty one with
    ``load_state_dict`` stubbed, then the random module's own state dict is saved.
    """
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    folder = tmp_path_factory.mktemp("inception")
    empty = folder / "empty.pth"
    torch.save({}, empty)
    original = FeatureExtractorInceptionV3.load_state_dict
    FeatureExtractorInceptionV3.load_state_dict = lambda self, sd, *a, **k: None
    try:
        torch.manual_seed(0)
        model = FeatureExtractorInceptionV3(
            "inception-v3-compat", ["64"], feature_extractor_weights_path=str(empty)
        )
    finally:
        FeatureExtractorInceptionV3.load_state_dict = original
    with torch.no_grad():  # keep activations O(1) through the random network
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    path = folder / "inception.pth"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a network call was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    monkeypatch.setattr(fe, "load_state_dict_from_url", refuse)


def independent_fid(weights, set1, set2):
    """FID by hand: the saved Inception's 64-d early pool features, the Frechet distance."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    model = FeatureExtractorInceptionV3("x", ["64"], feature_extractor_weights_path=str(weights))

    def feats(images):
        batch = torch.stack(
            [
                torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1)
                for im in images
            ]
        )
        with torch.no_grad():
            return model(batch)[0].double().numpy()

    f1, f2 = feats(set1), feats(set2)
    m1, m2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    eig = np.linalg.eigvals(s1 @ s2)
    tr_sqrt = np.sum(np.sqrt(np.clip(eig.real, 0, None)))
    return float(np.sum((m1 - m2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt)


def colour_set(seed, n, base, size=(40, 40)):
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n):
        pixels = np.clip(base + rng.normal(0, 40, size=(size[1], size[0], 3)), 0, 255)
        images.append(Image.fromarray(pixels.astype(np.uint8)))
    return images


def test_fid_and_kid_run_offline_from_the_local_weights(inception_weights, no_network):
    gen = colour_set(1, 5, np.array([200, 40, 40]))
    real = colour_set(2, 6, np.array([40, 60, 200]))
    cfg = MetricsConfig(
        inception_weights=str(inception_weights), min_images_for_fid=5, inception_layer="64"
    )
    out = fid_kid(gen, real, cfg)
    assert out["reason"] is None
    assert out["n_generated"] == 5 and out["n_real"] == 6
    assert out["kid_subset_size"] == 5  # the smaller set bounds the subsets
    assert out["inception_layer"] == "64"
    assert out["fid"] == pytest.approx(independent_fid(inception_weights, gen, real), rel=2e-3)
    assert np.isfinite(out["kid_mean"]) and np.isfinite(out["kid_std"])
    assert out["fid"] > 0


def test_images_of_mixed_sizes_are_accepted(inception_weights, no_network):
    gen = colour_set(1, 3, np.array([200, 40, 40]), (32, 32)) + colour_set(
        4, 2, np.array([200, 40, 40]), (48, 40)
    )
    real = colour_set(2, 5, np.array([40, 60, 200]))
    cfg = MetricsConfig(
        inception_weights=str(inception_weights), min_images_for_fid=5, inception_layer="64"
    )
    out = fid_kid(gen, real, cfg)
    assert np.isfinite(out["fid"]) and out["fid"] > 0


def test_fid_is_skipped_with_the_reason_below_the_minimum(inception_weights):
    cfg = MetricsConfig(
        inception_weights=str(inception_weights), min_images_for_fid=5, inception_layer="64"
    )
    out = fid_kid(colour_set(1, 5, 100), colour_set(2, 4, 100), cfg)
    assert out["fid"] is None and out["kid_mean"] is None and out["kid_subset_size"] is None
    assert out["reason"] == (
        "too few images: 5 generated and 4 real frames, FID/KID need 5 of each "
        "(generate.metrics.min_images_for_fid)"
    )
    out = fid_kid(colour_set(1, 4, 100), colour_set(2, 5, 100), cfg)
    assert out["reason"].startswith("too few images: 4 generated and 5 real frames")
    no_weights = fid_kid(colour_set(1, 9, 100), colour_set(2, 9, 100), MetricsConfig())
    assert no_weights["fid"] is None
    assert no_weights["reason"] == (
        "no Inception weights configured (generate.metrics.inception_weights)"
    )


def test_tsv_rows_carry_fid_and_kid_when_computed():
    from wavbrivl.generate.metrics import metric_rows

    empty = {"mean": None, "ci95": None, "n": 0, "mismatched": None}
    metrics = {
        "ais": {"mean": 0.25, "ci95": [0.125, 0.375], "n": 8, "mismatched": 0.0625},
        "iis": empty,
        "class_agreement": {"share": 0.5, "ci95": [0.25, 0.75], "n": 8, "chance": 0.125},
        "fid_kid": {
            "fid": 123.5,
            "kid_mean": 0.03125,
            "kid_std": 0.0078125,
            "kid_subset_size": 7,
            "n_generated": 8,
            "n_real": 9,
            "reason": None,
        },
    }
    rows = {row[0]: row for row in metric_rows(metrics)}
    assert rows["ais"] == (
        "ais",
        "0.25",
        "0.125",
        "0.375",
        "8",
        "0.0625",
        "reference = mean cosine to the other clips",
    )
    assert rows["iis"] == ("iis", "", "", "", "0", "", "reference = mean cosine to the other clips")
    assert rows["class_agreement"] == (
        "class_agreement",
        "0.5",
        "0.25",
        "0.75",
        "8",
        "0.125",
        "reference = chance (1 / classes)",
    )
    assert rows["fid"] == ("fid", "123.5", "", "", "8", "", "")
    assert rows["kid"] == ("kid", "0.03125", "", "", "8", "", "std over subsets of 7: 0.0078125")


def test_only_ok_frames_count_and_a_clip_twice_is_named(tmp_path):
    run_dir, media, manifest, _ = make_run(tmp_path)
    # a second shard: a failed clip that still carries a frame must not become a real frame
    other = tmp_path / "media2.parquet"
    pq.write_table(
        pa.table(
            {
                "clip_id": ["x0"],
                "status": ["bad_media"],
                "reason": ["audio stream missing"],
                "frame": pa.array([png_bytes(solid((1, 2, 3)))], pa.binary()),
            }
        ),
        other,
    )
    lines = []
    metrics = run_metrics(
        run_dir, [media, other], manifest, ColourEncoder(), MetricsConfig(), log=lines.append
    )
    assert metrics["n_real_frames"] == 9
    assert metrics["format"] == "wavbrivl.generation-metrics/1"
    assert metrics["image_encoder"] == "colour"
    assert metrics["config"] == {
        "inception_weights": None,
        "min_images_for_fid": 50,
        "kid_subset_size": 1000,
        "bootstrap_samples": 1000,
        "seed": 0,
        "inception_layer": "2048",
    }
    assert metrics["bootstrap"] == {"samples": 1000, "seed": 0, "level": 0.95}
    assert lines[0] == "metrics: embedding 6 generated images, 9 real frames"
    assert lines[1].startswith("metrics: AIS ")
    assert "FID skipped (no Inception weights configured" in lines[1]
    with pytest.raises(ValueError, match=r"media.parquet: clip 'r0' appears twice in the media"):
        run_metrics(run_dir, [media, media], manifest, ColourEncoder(), MetricsConfig())


def test_a_record_without_clips_scores_nothing(tmp_path):
    run_dir, media, manifest, _ = make_run(tmp_path)
    (run_dir / "generation.json").write_text("{}")
    metrics = run_metrics(run_dir, [media], manifest, ColourEncoder(), MetricsConfig())
    assert metrics["n_generated"] == 0
    assert metrics["class_agreement"]["reason"] == "no generated images"


def test_unit_rows_work_in_double_precision():
    # float16 squares of 300 and 400 overflow (max 65504): a half-precision norm is inf
    out = unit_rows(np.array([[300.0, 400.0]], dtype=np.float16), "x")
    np.testing.assert_allclose(out, [[0.6, 0.8]], rtol=1e-3)


def test_summary_line_and_json_layout(tmp_path, monkeypatch):
    from wavbrivl.generate import metrics as metrics_module
    from wavbrivl.generate.metrics import summary_line

    base = {
        "ais": {"mean": 0.25},
        "iis": {"mean": 0.5},
        "class_agreement": {"share": 0.75, "chance": 0.125},
        "fid_kid": {"fid": 12.5, "reason": None},
    }
    assert summary_line(base) == (
        "AIS 0.25, IIS 0.5, class agreement 0.75 (chance 0.125), FID 12.5"
    )
    skipped = base | {"fid_kid": {"fid": None, "reason": "too few images"}}
    assert summary_line(skipped).endswith("FID skipped (too few images)")

    seen = {}

    def fake_fid_kid(gen, real, cfg, *, device="cpu"):
        seen["device"] = device
        return {
            "fid": None,
            "kid_mean": None,
            "kid_std": None,
            "kid_subset_size": None,
            "n_generated": len(gen),
            "n_real": len(real),
            "reason": "stub",
        }

    monkeypatch.setattr(metrics_module, "fid_kid", fake_fid_kid)
    run_dir, media, manifest, _ = make_run(tmp_path)
    run_metrics(run_dir, [media], manifest, ColourEncoder(), MetricsConfig(), device="cuda:1")
    assert seen["device"] == "cuda:1"
    text = (run_dir / METRICS_JSON).read_text()
    assert text.splitlines()[:2] == ["{", ' "ais": {']  # sorted keys, one-space indent
