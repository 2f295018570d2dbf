"""wavbrivl.sharding: a clip's shard is a stable function of its id alone."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest

from wavbrivl.manifest.build import build_manifest
from wavbrivl.manifest.vggsound import read_vggsound_csv
from wavbrivl.sharding import shard_name, shard_names, shard_of, shard_width


def reference_shard(clip_id: str, n_shards: int) -> int:
    """The documented scheme, computed independently: BLAKE2b-64, big-endian, modulo n."""
    digest = hashlib.blake2b(clip_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % n_shards


@pytest.mark.parametrize("n_shards", [1, 2, 7, 64, 1000])
def test_shard_of_matches_the_documented_hash(n_shards):
    for clip_id in ["--4gqARaEJE_0", "abc_30000", "x", "-0BIyqJj9ZU_30500", "ünïcode_1"]:
        assert shard_of(clip_id, n_shards) == reference_shard(clip_id, n_shards)


def test_shard_of_a_fixed_id_never_changes():
    # Pinned: changing the hash would move every clip of every existing results/ tree.
    assert hashlib.blake2b(b"abc_30000", digest_size=8).hexdigest() == "d66c549d5c986049"
    assert shard_of("abc_30000", 64) == 0xD66C549D5C986049 % 64 == 9


def test_adding_rows_does_not_move_existing_clips(tmp_path):
    base = "".join(f"id{i:04d},{i % 7},dog,train\n" for i in range(200))
    more = "".join(f"new{i:04d},0,cat,test\n" for i in range(300))
    small, big = tmp_path / "small.csv", tmp_path / "big.csv"
    small.write_text(base)
    big.write_text(more[: len(more) // 2] + base + more[len(more) // 2 :])

    def shards(path):
        df, _ = read_vggsound_csv(path)
        table, _ = build_manifest(df, n_shards=16, url_template="u/{id}")
        return dict(
            zip(table.column("clip_id").to_pylist(), table.column("shard").to_pylist(), strict=True)
        )

    before, after = shards(small), shards(big)
    assert len(after) == 500
    assert {cid: after[cid] for cid in before} == before


def test_distribution_over_10k_ids_is_roughly_uniform():
    counts = Counter(shard_of(f"clip{i:05d}_0", 16) for i in range(10_000))
    assert set(counts) == set(range(16))
    expected = 10_000 / 16
    assert all(abs(c - expected) < 0.2 * expected for c in counts.values()), counts
    # Pearson chi-square with 15 degrees of freedom: 37.7 is the 0.1 % critical value.
    chi2 = sum((c - expected) ** 2 / expected for c in counts.values())
    assert chi2 < 37.7


def test_shard_names_are_zero_padded_and_sort():
    assert shard_name(7, 64) == "007"
    assert shard_name(5, 5000) == "0005"
    assert shard_width(1) == 3 and shard_width(1001) == 4
    names = shard_names(1200)
    assert names == sorted(names) and len(set(names)) == 1200 and names[-1] == "1199"
    # the messages name the bad value and the allowed range
    with pytest.raises(ValueError, match=r"shard index 64 outside \[0, 64\)"):
        shard_name(64, 64)
    with pytest.raises(ValueError, match="n_shards must be >= 1, got 0"):
        shard_of("x", 0)
