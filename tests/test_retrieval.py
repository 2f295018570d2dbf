"""Retrieval metrics on constructed cases with known answers, chance levels checked by
enumerating every ranking, and the report files."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from wavbrivl.evaluate import retrieval, retrieval_metrics, write_retrieval_report
from wavbrivl.evaluate.retrieval import (
    chance_ap,
    chance_recall_at_k,
    first_rank_and_ap,
)


def _values(cells: dict) -> dict[str, float]:
    return {name: cell["value"] for name, cell in cells.items()}


def _orthonormal(n: int, d: int | None = None, seed: int = 0) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d or n, n)))
    return q.T  # (n, d) orthonormal rows


def test_perfect_alignment_scores_one_everywhere():
    emb = _orthonormal(12, 16)
    labels = [f"c{i}" for i in range(12)]
    m = retrieval_metrics(emb, emb * 3.0, labels)  # scale does not matter: cosine
    for direction in ("audio_to_image", "image_to_audio"):
        for level in ("instance", "class"):
            v = _values(m[direction][level])
            assert v == {"R@1": 1.0, "R@5": 1.0, "R@10": 1.0, "median_rank": 1.0, "mAP": 1.0}
    assert m["n_clips"] == 12 and m["n_classes"] == 12
    json.dumps(m)  # JSON-serialisable as is


def test_known_ranks_give_known_metrics():
    """Image i is the i-th axis, so audio row i's entries are its scores for images 0..3.
    The true pair (the diagonal) sits at rank 1, 2, 4 and 3."""
    scores = np.array(
        [
            [4.0, 3, 2, 1],  # true 0 has the top score -> rank 1
            [4.0, 3, 2, 1],  # true 1 -> rank 2
            [3.0, 4, 1, 2],  # true 2 has the lowest -> rank 4
            [4.0, 1, 3, 2],  # true 3 -> rank 3
        ]
    )
    m = retrieval_metrics(scores, np.eye(4), ["a", "b", "c", "d"])
    v = _values(m["audio_to_image"]["instance"])
    assert v["R@1"] == 0.25
    assert v["R@5"] == v["R@10"] == 1.0
    assert v["median_rank"] == 2.5
    assert v["mAP"] == pytest.approx((1 + 1 / 2 + 1 / 4 + 1 / 3) / 4)


def test_shuffled_pairs_hit_only_at_fixed_points():
    """image_i = audio_perm(i) for one-hot rows: the true pair scores exactly 0 and ties with
    every other wrong item; ties count against it, so non-fixed points rank last."""
    n = 6
    audio = np.eye(n)
    perm = np.array([0, 2, 1, 3, 5, 4])  # fixed points 0 and 3
    m = retrieval_metrics(audio, audio[perm], [str(i) for i in range(n)])
    for direction in ("audio_to_image", "image_to_audio"):
        v = _values(m[direction]["instance"])
        assert v["R@1"] == pytest.approx(2 / 6)
        assert v["median_rank"] == 6.0  # 4 of 6 queries at rank N
        assert v["mAP"] == pytest.approx((2 * 1 + 4 * (1 / 6)) / 6)


def test_collapsed_embeddings_score_at_the_bottom():
    emb = np.ones((5, 3))
    m = retrieval_metrics(emb, emb, list("abcde"))
    v = _values(m["audio_to_image"]["instance"])
    assert v["R@1"] == 0.0 and v["median_rank"] == 5.0


def test_class_level_with_duplicate_labels():
    """Labels a a b b b; query scores over the 5 gallery items written out."""
    labels = ["a", "a", "b", "b", "b"]
    scores = np.array(
        [
            [1.0, 5, 4, 3, 2],  # a: relevant {0,1} at ranks 5, 1 -> first 1, AP (1 + 2/5)/2
            [5.0, 1, 4, 3, 2],  # a: relevant {0,1} at ranks 1, 5 -> first 1, AP (1 + 2/5)/2
            [5.0, 4, 3, 2, 1],  # b: relevant {2,3,4} at ranks 3, 4, 5 -> first 3
            [5.0, 1, 4, 3, 2],  # b: relevant {2,3,4} at ranks 2, 3, 4 -> first 2
            [1.0, 2, 5, 4, 3],  # b: relevant at ranks 1, 2, 3 -> AP 1
        ]
    )
    relevant = np.array(labels)[:, None] == np.array(labels)[None, :]
    first, ap = first_rank_and_ap(scores, relevant)
    assert first.tolist() == [1, 1, 3, 2, 1]
    ap_expected = [
        (1 + 2 / 5) / 2,
        (1 + 2 / 5) / 2,
        (1 / 3 + 2 / 4 + 3 / 5) / 3,
        (1 / 2 + 2 / 3 + 3 / 4) / 3,
        1.0,
    ]
    np.testing.assert_allclose(ap, ap_expected)

    m = retrieval_metrics(scores, np.eye(5), labels)
    v = _values(m["audio_to_image"]["class"])
    assert v["R@1"] == pytest.approx(3 / 5)
    assert v["median_rank"] == 1.0
    assert v["mAP"] == pytest.approx(np.mean(ap_expected))
    assert m["n_classes"] == 2


def test_ties_are_broken_against_relevant_items():
    scores = np.array([[2.0, 2.0, 2.0, 1.0]])
    relevant = np.array([[False, True, False, False]])
    first, ap = first_rank_and_ap(scores, relevant)
    assert first.tolist() == [3] and ap.tolist() == [pytest.approx(1 / 3)]


@pytest.mark.parametrize(
    "labels", [list("abcde"), list("aabbb"), list("aaaab"), ["a"], ["a", "b"], ["a", "a"]]
)
def test_chance_levels_equal_the_average_over_all_rankings(labels):
    """Average the metrics over all 5! orderings of the gallery: that is chance."""
    n = len(labels)
    codes = np.array(labels)
    for instance in (True, False):
        relevant = np.eye(n, dtype=bool) if instance else codes[:, None] == codes[None, :]
        n_rel = relevant.sum(axis=1)
        firsts, aps = [], []
        for order in itertools.permutations(range(n)):
            scores = np.tile(-np.argsort(order).astype(float), (n, 1))  # item order[0] first
            first, ap = first_rank_and_ap(scores, relevant)
            firsts.append(first)
            aps.append(ap)
        firsts, aps = np.array(firsts), np.array(aps)  # (n!, n)
        for k in (1, 2, 3, 5, 10):
            brute = np.mean(firsts <= k, axis=0)
            np.testing.assert_allclose(chance_recall_at_k(n, n_rel, k), brute, atol=1e-12)
        np.testing.assert_allclose(chance_ap(n, n_rel), aps.mean(axis=0), atol=1e-12)
        np.testing.assert_allclose(firsts.mean(axis=0), (n + 1) / (n_rel + 1), atol=1e-12)


# -- both directions, against a brute-force ranking -------------------------------------------


def _brute_force(queries, gallery, labels, *, instance):
    """Each query ranks the whole gallery by cosine, in plain Python; ties put irrelevant items
    first. Returns the metric values as retrieval_metrics reports them."""
    firsts, aps = [], []
    for i, q in enumerate(queries):
        scores = [q @ g / (np.linalg.norm(q) * np.linalg.norm(g)) for g in gallery]
        relevant = [j == i if instance else labels[j] == labels[i] for j in range(len(gallery))]
        order = sorted(range(len(gallery)), key=lambda j: (-scores[j], relevant[j]))
        ranks = [r + 1 for r, j in enumerate(order) if relevant[j]]  # of the relevant items
        firsts.append(ranks[0])
        aps.append(sum((hit + 1) / rank for hit, rank in enumerate(ranks)) / len(ranks))
    values = {f"R@{k}": sum(f <= k for f in firsts) / len(firsts) for k in (1, 5, 10)}
    return values | {"median_rank": float(np.median(firsts)), "mAP": float(np.mean(aps))}


def _asymmetric(n=9, d=4, seed=5):
    """Noisy pairs with row norms from 0.1 to 9: cosine and dot product rank differently, and
    audio -> image differs from image -> audio."""
    rng = np.random.default_rng(seed)
    audio = rng.normal(size=(n, d))
    image = audio + 0.9 * rng.normal(size=(n, d))
    audio *= rng.uniform(0.1, 9.0, size=(n, 1))
    image *= rng.uniform(0.1, 9.0, size=(n, 1))
    return audio, image, list("aabbbccde")[:n]


def test_each_direction_queries_its_own_side_against_the_other():
    """audio -> image: audio rows query the image gallery; image -> audio the reverse."""
    audio, image, labels = _asymmetric()
    m = retrieval_metrics(audio, image, labels)
    assert set(m) == {"n_clips", "n_classes", "ks", "audio_to_image", "image_to_audio"}
    assert (m["n_clips"], m["n_classes"], m["ks"]) == (9, 5, [1, 5, 10])
    sides = {"audio_to_image": (audio, image), "image_to_audio": (image, audio)}
    for direction, (queries, gallery) in sides.items():
        for level in ("instance", "class"):
            expected = _brute_force(queries, gallery, labels, instance=level == "instance")
            assert _values(m[direction][level]) == pytest.approx(expected), (direction, level)
    # The fixture tells the directions apart (else a swapped pair would pass unseen).
    for level in ("instance", "class"):
        a2i, i2a = _values(m["audio_to_image"][level]), _values(m["image_to_audio"][level])
        assert a2i["mAP"] != pytest.approx(i2a["mAP"]) and a2i["R@1"] != i2a["R@1"], level


def test_scores_are_cosine_whatever_the_norms():
    """Gallery item 1 has the larger dot product with query 0 but the smaller cosine."""
    audio = np.array([[1.0, 0.0], [0.0, 1.0]])
    image = np.array([[1.0, 0.1], [10.0, 10.0]])  # cos(a0, i0) = 0.995 > cos(a0, i1) = 0.707
    v = _values(retrieval_metrics(audio, image, ["x", "y"])["audio_to_image"]["instance"])
    assert v["R@1"] == 1.0 and v["mAP"] == 1.0


def test_float32_embeddings_are_ranked_in_float64():
    """Two gallery items whose cosines with the query differ by ~2e-8, below float32's
    resolution at 1: in float32 they tie and the pessimistic tie-break ranks the pair second."""
    eps = 2.0**-13
    audio = np.array([[1.0, eps], [0.0, -1.0]], dtype=np.float32)
    image = np.array([[1.0, eps], [1.0, 0.0]], dtype=np.float32)  # the pair is exactly a0
    cosines = audio.astype(np.float64)[0] @ _unit64(image).T / np.linalg.norm(audio[0])
    assert cosines[0] > cosines[1]
    assert np.float32(cosines[0]) == np.float32(cosines[1])  # the trap is real
    v = _values(retrieval_metrics(audio, image, ["x", "y"])["audio_to_image"]["instance"])
    assert v["R@1"] == 1.0  # and query 1 prefers image 1 (cosine 0) to image 0 (-eps)


def _unit64(x):
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_first_rank_and_ap_on_a_non_square_score_matrix():
    """Three queries, five gallery items, written out by hand."""
    scores = np.array(
        [
            [0.9, 0.1, 0.5, 0.7, 0.3],  # order 0 3 2 4 1
            [0.2, 0.8, 0.8, 0.1, 0.4],  # order (1, 2 tied) 4 0 3
            [0.0, 0.0, 0.0, 0.0, 0.0],  # all tied: relevant items last
        ]
    )
    relevant = np.array(
        [
            [False, False, True, False, True],  # ranks 3, 4
            [False, True, False, True, False],  # tie with 2 lost: ranks 2, 5
            [True, False, False, False, False],  # rank 5
        ]
    )
    first, ap = first_rank_and_ap(scores, relevant)
    assert first.tolist() == [3, 2, 5]
    np.testing.assert_allclose(ap, [(1 / 3 + 2 / 4) / 2, (1 / 2 + 2 / 5) / 2, 1 / 5])


def test_a_single_clip_is_its_own_perfect_match():
    m = retrieval_metrics(np.array([[0.0, 2.0]]), np.array([[1.0, 1.0]]), ["only"])
    for direction in ("audio_to_image", "image_to_audio"):
        for level in ("instance", "class"):
            cells = m[direction][level]
            assert {name: cell["value"] for name, cell in cells.items()} == {
                "R@1": 1.0,
                "R@5": 1.0,
                "R@10": 1.0,
                "median_rank": 1.0,
                "mAP": 1.0,
            }
            assert all(cell["chance"] == 1.0 for cell in cells.values())


def test_reported_chance_levels():
    n = 8
    emb = _orthonormal(n)
    m = retrieval_metrics(emb, emb, list("aabbccdd"))
    inst = m["audio_to_image"]["instance"]
    assert inst["R@1"]["chance"] == pytest.approx(1 / 8)
    assert inst["R@5"]["chance"] == pytest.approx(5 / 8)
    assert inst["R@10"]["chance"] == 1.0  # k > N
    assert inst["median_rank"]["chance"] == 4.5
    harmonic = sum(1 / r for r in range(1, n + 1))
    assert inst["mAP"]["chance"] == pytest.approx(harmonic / n)
    cls = m["audio_to_image"]["class"]
    assert cls["R@1"]["chance"] == pytest.approx(2 / 8)
    assert cls["R@5"]["chance"] == pytest.approx(1 - math.comb(6, 5) / math.comb(8, 5))
    assert cls["median_rank"]["chance"] == pytest.approx(9 / 3)


def test_chunked_scoring_equals_one_pass(monkeypatch):
    rng = np.random.default_rng(3)
    audio, image = rng.normal(size=(9, 4)), rng.normal(size=(9, 4))
    labels = list("aaabbbccd")
    whole = retrieval_metrics(audio, image, labels)
    monkeypatch.setattr(retrieval, "_QUERY_CHUNK", 2)
    assert retrieval_metrics(audio, image, labels) == whole


def test_bad_inputs_are_clear_errors():
    good = np.eye(3)
    with pytest.raises(ValueError, match=r"must have the same shape \(row i of both is clip i\)"):
        retrieval_metrics(good, np.eye(4)[:3], list("abc"))
    for shape in ((3,), (0, 3), (1, 3, 1)):
        with pytest.raises(ValueError, match=r"audio_emb must be \(N, D\) with N >= 1"):
            retrieval_metrics(np.ones(shape), good, list("abc"))
    with pytest.raises(ValueError, match="2 labels for 3 clips"):
        retrieval_metrics(good, good, list("ab"))
    bad = good.copy()
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match=r"audio_emb: rows \[1\].*NaN"):
        retrieval_metrics(bad, good, list("abc"))
    with pytest.raises(ValueError, match=r"image_emb: rows \[2\] are zero"):
        retrieval_metrics(good, np.diag([1.0, 1.0, 0.0]), list("abc"))
    many = np.zeros((12, 2))  # the message names the first ten rows only
    with pytest.raises(ValueError, match=r"rows \[0, 1, 2, 3, 4, 5, 6, 7, 8, 9\] are zero"):
        retrieval_metrics(many, many, ["a"] * 12)
    many[:, 0] = np.inf
    with pytest.raises(ValueError, match=r"rows \[0, 1, 2, 3, 4, 5, 6, 7, 8, 9\] have NaN"):
        retrieval_metrics(many, many, ["a"] * 12)


def test_report_files(tmp_path):
    rng = np.random.default_rng(0)
    audio = rng.normal(size=(20, 8))
    image = audio + 0.5 * rng.normal(size=(20, 8))
    m = retrieval_metrics(audio, image, [f"c{i % 4}" for i in range(20)])
    out = tmp_path / "eval"
    write_retrieval_report(m, out)
    assert {p.name for p in out.iterdir()} == {"metrics.json", "metrics.tsv", "retrieval.png"}
    assert json.loads((out / "metrics.json").read_text()) == m
    lines = (out / "metrics.tsv").read_text().splitlines()
    assert lines[0] == "direction\tlevel\tmetric\tvalue\tchance"
    assert len(lines) == 1 + 2 * 2 * 5
    first = lines[1].split("\t")
    assert first[:3] == ["audio_to_image", "instance", "R@1"]
    assert float(first[3]) == pytest.approx(m["audio_to_image"]["instance"]["R@1"]["value"])
    png = (out / "retrieval.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


# -- the evaluation stage ----------------------------------------------------------------------


def test_evaluation_refuses_embeddings_of_another_encoder_than_the_models(tmp_path):
    import torch
    from test_train_data import simple_shards, write_dataset

    from wavbrivl.embed.store import FingerprintMismatch
    from wavbrivl.evaluate.stage import run_evaluation
    from wavbrivl.train.checkpoint import ARTEFACT_FORMAT

    manifest, pairs, _ = write_dataset(
        tmp_path, simple_shards(2, 4, test_per_shard=2), fingerprint="fp-re-embedded"
    )
    model = tmp_path / "audio_encoder.pt"
    torch.save({"format": ARTEFACT_FORMAT, "image_encoder_fingerprint": "fp-trained-on"}, model)
    with pytest.raises(FingerprintMismatch) as info:
        run_evaluation(
            model_path=model,
            manifest=manifest,
            shards=pairs,
            out_dir=tmp_path / "eval",
            train_block={"batch_size": 4},
            wavlm="unused",
            log=print,
        )
    message = str(info.value)
    assert str(model) in message and str(pairs[0][0]) in message
    assert "fp-trained-on" in message and "fp-re-embedded" in message
    assert not (tmp_path / "eval").exists()
