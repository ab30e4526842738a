"""MultiIndexHash returns exactly what brute force returns, whatever the chunking, and keeps
doing so across save, load and incremental adds."""

from __future__ import annotations

import json

import numpy as np
import pytest

from curation import nearindex
from curation.nearindex import MultiIndexHash, choose_chunks
from curation.nearindex_store import load_index, save_index


def random_hashes(bits: int, n: int, seed: int) -> list[int]:
    """Half random, half planted neighbours of the first half (0..12 bits flipped), so every
    radius has hits."""
    rng = np.random.default_rng(seed)
    base = [int.from_bytes(rng.bytes(bits // 8), "little") for _ in range(n - n // 2)]
    planted = []
    for h in base[: n // 2]:
        for b in rng.choice(bits, size=int(rng.integers(0, 13)), replace=False):
            h ^= 1 << int(b)
        planted.append(h)
    return base + planted


def ids_for(n: int) -> list[str]:
    return [f"c{i:05d}" for i in range(n)]


def brute_query(ids, hashes, q, r):
    found = [(i, (q ^ h).bit_count()) for i, h in zip(ids, hashes)]
    return sorted([(i, d) for i, d in found if d <= r], key=lambda t: (t[1], t[0]))


def brute_pairs(ids, hashes, r, bits):
    """All pairs by numpy blocks: the reference, not the method."""
    words = np.array([[(h >> (64 * k)) & (2**64 - 1) for k in range(bits // 64)] for h in hashes], dtype=np.uint64)
    out = []
    for i in range(len(words)):
        d = np.bitwise_count(words[i + 1:] ^ words[i]).sum(axis=1)
        for j in np.nonzero(d <= r)[0]:
            a, b = ids[i], ids[i + 1 + j]
            out.append((min(a, b), max(a, b), int(d[j])))
    return sorted(out)


@pytest.fixture(params=["lookup", "scan"])
def query_path(request, monkeypatch) -> str:
    """Small segments are read row by row (cheaper than lookups); force each path in turn."""
    monkeypatch.setattr(nearindex, "_NS_SCAN_ROW", 1e12 if request.param == "lookup" else 0.0)
    return request.param


@pytest.mark.parametrize("bits,chunks", [(64, None), (64, 2), (64, 5), (64, 9), (256, None), (256, 13), (256, 20)])
def test_query_equals_brute_force(bits: int, chunks: int | None, query_path: str) -> None:
    n = 2000
    hashes, ids = random_hashes(bits, n, seed=bits + (chunks or 0)), ids_for(n)
    index = MultiIndexHash(bits, radius=8, chunks=chunks)
    index.add(ids, hashes)
    queries = hashes[:25] + hashes[-25:] + random_hashes(bits, 10, seed=99)
    for r in (0, 3, 8, 12, 40):  # past 8, beyond the radius the index was built for
        expected = [brute_query(ids, hashes, q, r) for q in queries]
        assert index.query_many(queries, r) == expected
        assert [index.query(q, r) for q in queries[:5]] == expected[:5]
    assert any(len(x) > 1 for x in expected)  # the planted neighbours are found


@pytest.mark.parametrize("bits,radii", [(64, (0, 4, 8, 10)), (256, (0, 8, 20))])
def test_pairs_within_equals_brute_force(bits: int, radii: tuple[int, ...]) -> None:
    n = 3000
    hashes, ids = random_hashes(bits, n, seed=7 * bits), ids_for(n)
    index = MultiIndexHash(bits, radius=8)
    index.add(ids[:1700], hashes[:1700])
    index.add(ids[1700:], hashes[1700:])
    for r in radii:
        expected = brute_pairs(ids, hashes, r, bits)
        assert index.pairs_within(r) == expected, r
        assert len(expected) >= 10
    # any chunking is exact; these force table and binary-search buckets, straddled words
    for chunks in ((3, 9, 13) if bits == 64 else (9, 13, 20)):
        assert index.pairs_within(8, chunks=chunks) == brute_pairs(ids, hashes, 8, bits)


def test_incremental_add_after_save_and_load_equals_a_fresh_build(tmp_path) -> None:
    bits, n = 64, 4000
    hashes, ids = random_hashes(bits, n, seed=3), ids_for(n)
    fresh = MultiIndexHash(bits, radius=10)
    fresh.add(ids, hashes)

    folder = tmp_path / "manifests" / "nearindex" / "phash64"
    grown = MultiIndexHash(bits, radius=10, meta={"algorithm": "phash"})
    grown.add(ids[:3000], hashes[:3000])
    save_index(grown, folder)
    first_segment = json.loads((folder / "index.json").read_text())["segments"][0]["name"]
    mtime = (folder / first_segment / "chunks.npz").stat().st_mtime_ns

    for start in (3000, 3400, 3500, 3900):  # three runs, each adding new items after a reload
        grown = load_index(folder, expect_meta={"algorithm": "phash"})
        stop = {3000: 3400, 3400: 3500, 3500: 3900, 3900: 4000}[start]
        grown.add(ids[start:stop], hashes[start:stop])
        save_index(grown, folder)
    loaded = load_index(folder)
    assert len(loaded) == n and loaded.ids == ids
    # the big segment was neither rebuilt nor rewritten; only small new ones merged
    assert loaded.segment_sizes[0] == 3000
    assert (folder / first_segment / "chunks.npz").stat().st_mtime_ns == mtime
    assert sorted(p.name for p in folder.glob("seg-*")) == sorted(
        e["name"] for e in json.loads((folder / "index.json").read_text())["segments"])
    queries = hashes[::97]
    assert loaded.query_many(queries) == fresh.query_many(queries)
    assert loaded.pairs_within() == fresh.pairs_within()


def test_256_bit_index_round_trips(tmp_path) -> None:
    hashes, ids = random_hashes(256, 600, seed=11), ids_for(600)
    index = MultiIndexHash(256, radius=20)
    index.add(ids[:500], hashes[:500])
    save_index(index, tmp_path)
    loaded = load_index(tmp_path)
    loaded.add(ids[500:], hashes[500:])
    assert loaded.pairs_within() == brute_pairs(ids, hashes, 20, 256)
    assert loaded.query(hashes[0]) == brute_query(ids, hashes, hashes[0], 20)


def test_load_refuses_another_hash_library_version(tmp_path) -> None:
    index = MultiIndexHash(64, 8, meta={"library_version": "4.3.2"})
    index.add(["a"], [1])
    save_index(index, tmp_path)
    with pytest.raises(ValueError, match="library_version"):
        load_index(tmp_path, expect_meta={"library_version": "5.0"})
    assert load_index(tmp_path, expect_meta={"library_version": "4.3.2"}).query(1) == [("a", 0)]


def test_hash_variants_of_one_id_count_once() -> None:
    index = MultiIndexHash(64, radius=8)
    # "sprite" has two hashes (on white, alpha dropped); "jpeg" is near the second only
    index.add(["sprite", "sprite", "jpeg", "other"], [0xFFFF_0000, 0x0F0F_0F0F, 0x0F0F_0F0E, 0xFFFF_FFFF_0000_0000])
    assert index.query(0x0F0F_0F0F) == [("sprite", 0), ("jpeg", 1)]
    assert index.query(0xFFFF_0000, 40) == [("sprite", 0), ("jpeg", 15)]
    assert index.query(0xFFFF_0000, 48) == [("sprite", 0), ("jpeg", 15), ("other", 48)]
    assert index.pairs_within() == [("jpeg", "sprite", 1)]  # never (sprite, sprite)


def test_bad_input_and_empty_index() -> None:
    index = MultiIndexHash(64, radius=8)
    assert index.query(123) == [] and index.pairs_within() == []
    with pytest.raises(ValueError):
        index.add(["a", "b"], [1])
    with pytest.raises(ValueError):
        index.add(["a"], [1 << 64])
    with pytest.raises(ValueError):
        MultiIndexHash(100)
    with pytest.raises(ValueError):
        MultiIndexHash(64, chunks=1)  # a 64-bit chunk does not fit the uint32 buckets


def test_numpy_input_matches_int_input() -> None:
    hashes = random_hashes(64, 500, seed=5)
    a, b = MultiIndexHash(64, 8), MultiIndexHash(64, 8)
    a.add(ids_for(500), hashes)
    b.add(ids_for(500), np.array(hashes, dtype=np.uint64))
    assert a.pairs_within() == b.pairs_within() and a.query(hashes[3]) == b.query(np.uint64(hashes[3]))


def test_chunk_choice_beats_r_plus_one_for_a_million() -> None:
    # r + 1 = 9 chunks of 7 bits would put ~7,800 items in every bucket
    assert choose_chunks(64, 8, 1_000_000) == 3
