"""Exact Hamming-radius search over many hashes without comparing every pair.

Multi-index hashing: cut every hash into m disjoint chunks. Two hashes within distance r
differ in at most floor(r / m) bits of at least one chunk (pigeonhole), so per chunk we look
up the items whose chunk value is within floor(r / m) of the query's, then verify those
candidates with np.bitwise_count. Nothing within r is missed, nothing beyond r returned.

m = r + 1 makes every lookup exact, but for r = 8 on 64 bits the chunks are 7 bits wide and
each bucket holds N/128 items: brute force in disguise. Wider chunks probe a few hundred
neighbouring values and find only true candidates, so m comes from a cost model (fitted to
bench/neardup.py's sweep); chunks= forces it.

Each `add` becomes an immutable segment and small recent segments merge, so a query visits
O(log N) of them; nearindex_store.save_index writes only new segments, then swaps index.json
atomically: the workspace index grows run by run without being rebuilt. One id may carry
several hashes (a transparent crop on white and on black): results are per id at the smallest
distance, and an id is never paired with itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations
from math import comb
from typing import Iterator, Sequence

import numpy as np


FORMAT = "headshot-nearindex/1"
MAX_CHUNK_BITS = 32  # chunk values live in uint32
DIRECT_TABLE_BITS = 22  # direct bucket tables up to 4M slots (16 MB) ...
TABLE_SLOTS_PER_ITEM = 8  # ... and only where the items fill at least 1 slot in 8
MERGE_FACTOR = 2  # merge the newest segments while the older one is at most this times larger
_BATCH = 1 << 20  # candidate pairs verified per step: bounds the temporaries to ~50 MB

# Cost model, in nanoseconds, fitted to the 2-core machine's timings (bench/neardup.py
# prints the chunk sweep to check it against). A query block pays a fixed numpy-call
# overhead, a lookup per probed chunk value (a table gather, or a binary search when the
# chunk is too wide for a table) and a gather + xor + popcount per candidate; reading every
# row instead costs _NS_SCAN_ROW each. All-pairs scans every item once per XOR pattern and
# expands and verifies each candidate pair.
_NS_QUERY, _NS_PROBE_TABLE, _NS_PROBE_SEARCH, _NS_CANDIDATE, _NS_SCAN_ROW = 50_000.0, 25.0, 130.0, 20.0, 0.7
_NS_SCAN_TABLE, _NS_SCAN_SEARCH, _NS_PATTERN, _NS_PAIR, _NS_TABLE_SLOT = 8.0, 35.0, 30_000.0, 25.0, 3.0


def _even_chunks(bits: int, m: int) -> list[tuple[int, int]]:
    """m chunks as (first bit, width), the widths differing by at most one."""
    widths = [bits // m + (c < bits % m) for c in range(m)]
    return [(sum(widths[:c]), w) for c, w in enumerate(widths)]


@lru_cache(maxsize=None)
def _ball(width: int, sub: int) -> int:
    return sum(comb(width, j) for j in range(min(sub, width) + 1))


@lru_cache(maxsize=1024)
def _cost(widths: tuple[int, ...], radius: int, n: int, pairs: bool, batch: int = 1) -> float:
    """Modelled ns per query (over `batch` queries at once), or for all pairs."""
    sub = radius // len(widths)
    balls = [_ball(w, sub) for w in widths]
    hit_rate = sum(b / 2.0**w for b, w in zip(balls, widths))  # for uniformly random hashes
    direct = _Buckets.direct(widths, n)
    if pairs:
        scan = sum(b * (n * (_NS_SCAN_TABLE if direct else _NS_SCAN_SEARCH) + _NS_PATTERN)
                   + (2.0**w * _NS_TABLE_SLOT if direct else 0.0) for b, w in zip(balls, widths))
        return scan + n * (n - 1) / 2 * hit_rate * _NS_PAIR
    return _NS_QUERY / batch + sum(balls) * (_NS_PROBE_TABLE if direct else _NS_PROBE_SEARCH) + n * hit_rate * _NS_CANDIDATE


def choose_chunks(bits: int, radius: int, size: int, pairs: bool = False) -> int:
    """The number of chunks with the lowest modelled cost: of one query among `size` items,
    or (pairs=True) of finding all near pairs among `size` items."""
    options = [m for m in range(1, bits + 1) if -(-bits // m) <= MAX_CHUNK_BITS]
    return min(options, key=lambda m: _cost(tuple(w for _, w in _even_chunks(bits, m)), radius, size, pairs))


@lru_cache(maxsize=None)
def _masks(width: int, sub: int) -> np.ndarray:
    """Every chunk-wide XOR pattern with at most `sub` bits set, the zero pattern first."""
    out = [0]
    for j in range(1, min(sub, width) + 1):
        out.extend(sum(1 << b for b in bits) for bits in combinations(range(width), j))
    return np.array(out, dtype=np.uint32)


@lru_cache(maxsize=64)
def _probe_plan(widths: tuple[int, ...], sub: int) -> tuple[np.ndarray, np.ndarray]:
    """(chunk, XOR pattern) of every lookup one query makes, all chunks in one array, so a
    query costs a handful of numpy calls whatever the chunk count."""
    masks = [_masks(w, sub) for w in widths]
    chunk = np.concatenate([np.full(len(m), c, dtype=np.int64) for c, m in enumerate(masks)])
    return chunk, np.concatenate(masks)


def _expand(lo: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Concatenated ranges lo[i] .. lo[i] + n[i] - 1, without a Python loop."""
    total = int(n.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    shift = np.repeat(lo.astype(np.int64) - (np.cumsum(n) - n), n)
    return shift + np.arange(total, dtype=np.int64)


def _batches(n: np.ndarray, limit: int) -> Iterator[slice]:
    """Slices of ranges whose lengths add up to about `limit` each (at least one range)."""
    ends, i = np.cumsum(n), 0
    while i < len(n):
        j = max(i + 1, int(np.searchsorted(ends, (ends[i - 1] if i else 0) + limit, "right")))
        yield slice(i, j)
        i = j


class _Buckets:
    """The buckets of every chunk over one set of items. `order` holds, chunk after chunk,
    the item rows sorted by that chunk's value; `find(chunk, values)` says where each value's
    rows sit in `order`. Direct tables of bucket bounds (two gathers per lookup) when the
    chunks are narrow and the items many enough to fill them; else the sorted
    (chunk << 32 | value) keys and binary search, ~3x slower per lookup but compact."""

    def __init__(self, order: np.ndarray, bounds: np.ndarray | None = None, table_base: np.ndarray | None = None,
                 keys: np.ndarray | None = None) -> None:
        self.order, self.bounds, self.table_base, self.keys = order, bounds, table_base, keys

    @staticmethod
    def direct(widths: Sequence[int], size: int) -> bool:
        return max(widths) <= DIRECT_TABLE_BITS and (1 << max(widths)) <= TABLE_SLOTS_PER_ITEM * size

    @classmethod
    def build(cls, words: np.ndarray, layout: Sequence[tuple[int, int]]) -> "_Buckets":
        # One chunk at a time into preallocated arrays, tables in pieces: at a million items
        # whole-array temporaries (int64 counts of 4M slots) would double the peak memory.
        n = len(words)
        index_type = np.int32 if n * len(layout) < 2**31 else np.int64
        order = np.empty(n * len(layout), dtype=index_type)
        direct = cls.direct([w for _, w in layout], n)
        if direct:
            base = np.cumsum([0] + [(1 << w) + 1 for _, w in layout])
            bounds = np.empty(base[-1], dtype=index_type)
        else:
            keys = np.empty(n * len(layout), dtype=np.uint64)
        for c, (start, width) in enumerate(layout):
            values = _chunk_values(words, start, width)
            rows = order[c * n:(c + 1) * n]
            rows[:] = np.argsort(values, kind="stable")
            if direct:  # table[v] = where value v's bucket starts, in pieces of 1M slots
                table, ordered = bounds[base[c]:base[c + 1]], values[rows]
                for lo in range(0, len(table), 1 << 20):
                    hi = min(lo + (1 << 20), len(table))
                    table[lo:hi] = np.searchsorted(ordered, np.arange(lo, hi, dtype=np.uint32)) + c * n
            else:
                keys[c * n:(c + 1) * n] = (np.uint64(c) << np.uint64(32)) | values[rows].astype(np.uint64)
        if direct:
            return cls(order, bounds=bounds, table_base=base[:-1].astype(np.int64))
        return cls(order, keys=keys)

    def find(self, chunk: np.ndarray | int, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.bounds is not None:
            at = self.table_base[chunk] + values
            return self.bounds[at], self.bounds[at + 1]
        keys = (np.asarray(chunk).astype(np.uint64) << np.uint64(32)) | values.astype(np.uint64)
        return np.searchsorted(self.keys, keys, "left"), np.searchsorted(self.keys, keys, "right")

    def arrays(self) -> dict[str, np.ndarray]:  # for np.savez; _Buckets(**arrays) reads them back
        return {name: a for name, a in vars(self).items() if a is not None}


@dataclass
class _Segment:
    start: int  # row number of its first item in the whole index
    hashes: np.ndarray  # (size, words) uint64
    buckets: _Buckets
    name: str | None = None  # folder name once saved; segments never change after that

    @property
    def size(self) -> int:
        return len(self.hashes)


class MultiIndexHash:
    """Exact near-duplicate search over `bits`-bit hashes (64: one word; 256: four words)."""

    def __init__(self, bits: int = 64, radius: int = 8, chunks: int | None = None,
                 expected_size: int = 1_000_000, meta: dict | None = None) -> None:
        if bits <= 0 or bits % 64:
            raise ValueError(f"bits must be a multiple of 64, got {bits}")
        self.bits, self.words, self.radius = bits, bits // 64, radius
        m = chunks or choose_chunks(bits, radius, expected_size)
        self.chunks = _even_chunks(bits, m)
        if max(w for _, w in self.chunks) > MAX_CHUNK_BITS:
            raise ValueError(f"{m} chunks of {bits} bits are wider than {MAX_CHUNK_BITS} bits")
        self.meta = dict(meta or {})  # e.g. the HashConfig and library version, checked on load
        self._ids: list[str] = []
        self._segments: list[_Segment] = []

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def ids(self) -> list[str]:
        return list(self._ids)

    @property
    def segment_sizes(self) -> list[int]:
        return [s.size for s in self._segments]

    def words_of(self, hashes: Sequence[int] | np.ndarray) -> np.ndarray:
        """Hashes as an (n, words) uint64 array; word k holds bits 64k .. 64k+63."""
        if isinstance(hashes, np.ndarray) and hashes.dtype == np.uint64:
            return hashes.reshape(-1, self.words)
        nbytes = self.bits // 8
        try:
            raw = b"".join(int(h).to_bytes(nbytes, "little") for h in hashes)
        except OverflowError:
            raise ValueError(f"a hash is negative or wider than {self.bits} bits") from None
        return np.frombuffer(raw, dtype="<u8").astype(np.uint64).reshape(-1, self.words)

    def _segment(self, start: int, words: np.ndarray) -> _Segment:
        return _Segment(start, words, _Buckets.build(words, self.chunks))

    def add(self, ids: Sequence[str], hashes: Sequence[int] | np.ndarray) -> None:
        """Append items; earlier segments stay as they are (only small recent ones merge)."""
        words = self.words_of(hashes)
        if len(words) != len(ids):
            raise ValueError(f"{len(ids)} ids but {len(words)} hashes")
        if not len(ids):
            return
        self._segments.append(self._segment(len(self._ids), np.array(words, dtype=np.uint64, order="C")))
        self._ids.extend(str(i) for i in ids)
        while len(self._segments) >= 2 and self._segments[-2].size <= MERGE_FACTOR * self._segments[-1].size:
            older, newer = self._segments[-2], self._segments.pop()
            self._segments[-1] = self._segment(older.start, np.concatenate([older.hashes, newer.hashes]))

    def all_words(self) -> np.ndarray:
        if not self._segments:
            return np.zeros((0, self.words), dtype=np.uint64)
        return np.concatenate([s.hashes for s in self._segments])

    def query(self, h: int, radius: int | None = None) -> list[tuple[str, int]]:
        """Every (id, distance) within `radius` of `h`, nearest first (ties by id)."""
        return self.query_many([h], radius)[0]

    def query_many(self, hashes: Sequence[int] | np.ndarray, radius: int | None = None) -> list[list[tuple[str, int]]]:
        """`query` for many hashes at once: the lookups of a batch share numpy calls."""
        r = self.radius if radius is None else radius
        q = self.words_of(hashes)
        widths = tuple(w for _, w in self.chunks)
        sub = r // len(widths)
        probes = sum(_ball(w, sub) for w in widths)
        largest = max(self.segment_sizes, default=1)
        candidates = largest * sum(_ball(w, sub) / 2.0**w for w in widths)  # if hashes were random
        per_query = max(1, min(largest, max(probes, int(candidates))))
        step = max(1, (1 << 18) // per_query)  # bounds one block's temporaries to ~10-30 MB
        results: list[list[tuple[str, int]]] = []
        for b in range(0, len(q), step):
            results.extend(self._query_block(q[b:b + step], r, widths, sub, probes))
        return results

    def _query_block(self, q: np.ndarray, r: int, widths: tuple[int, ...], sub: int,
                     probes: int) -> list[list[tuple[str, int]]]:
        hits: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (query, row, distance)
        values = None
        for seg in self._segments:
            scan = seg.size * self.words * _NS_SCAN_ROW
            if probes >= seg.size or scan <= _cost(widths, r, seg.size, False, len(q)):
                # A small segment, or a radius far past the one the index was built for:
                # reading every row costs less than the lookups.
                hits.extend((qi, rows + seg.start, d) for qi, rows, d in _scan(seg.hashes, q, r))
                continue
            chunk, masks = _probe_plan(widths, sub)
            if values is None:  # the probed chunk values are the same for every segment
                qv = np.stack([_chunk_values(q, start, width) for start, width in self.chunks], axis=1)
                values = qv[:, chunk] ^ masks
            lo, hi = seg.buckets.find(chunk, values)
            lo, n = lo.ravel(), (hi - lo).ravel()
            found = np.nonzero(n)[0]
            qi = np.repeat(found // len(chunk), n[found])
            rows = seg.buckets.order[_expand(lo[found], n[found])].astype(np.int64)
            d = np.bitwise_count(seg.hashes[rows] ^ q[qi]).sum(axis=1, dtype=np.int64)
            near = d <= r
            hits.append((qi[near], rows[near] + seg.start, d[near]))
        out: list[dict[str, int]] = [{} for _ in range(len(q))]
        if hits:
            for qi, row, d in zip(*(np.concatenate(x).tolist() for x in zip(*hits))):
                best, id_ = out[qi], self._ids[row]
                if d < best.get(id_, r + 1):  # one id, several chunks or hash variants
                    best[id_] = d
        return [sorted(found.items(), key=lambda kv: (kv[1], kv[0])) for found in out]

    def pairs_within(self, radius: int | None = None, chunks: int | None = None) -> list[tuple[str, str, int]]:
        """Every pair of distinct ids within `radius`: (smaller id, larger id, distance), sorted.
        Per chunk, joins each bucket with the buckets whose values differ in at most
        floor(r/m) bits: the work follows the candidates, not N^2. The chunk count suits
        this N and radius; it need not be the index's."""
        r = self.radius if radius is None else radius
        words = self.all_words()
        n = len(words)
        layout = _even_chunks(self.bits, chunks or choose_chunks(self.bits, r, n, pairs=True))
        sub = r // len(layout)
        found_a, found_b, found_d = [], [], []
        buckets = _Buckets.build(words, layout)
        for c, (start, width) in enumerate(layout):
            order = buckets.order  # positions c*n .. c*n+n-1 hold chunk c's rows in value order
            ks = _chunk_values(words, start, width)[order[c * n:(c + 1) * n]]
            positions = np.arange(c * n, (c + 1) * n, dtype=np.int64)
            for mask in _masks(width, sub):
                if mask == 0:  # within a bucket: each item with the ones after it
                    src, lo = positions, positions + 1
                    n_pairs = buckets.find(c, ks)[1] - lo
                else:  # across two buckets, visited from the smaller value only
                    target = ks ^ mask
                    src = np.nonzero(ks < target)[0]
                    lo, hi = buckets.find(c, target[src])
                    n_pairs = hi - lo
                    src = src + c * n
                keep = np.nonzero(n_pairs > 0)[0]
                src, lo, n_pairs = src[keep], lo[keep], n_pairs[keep]
                for part in _batches(n_pairs, _BATCH):
                    a = order[np.repeat(src[part], n_pairs[part])].astype(np.int64)
                    b = order[_expand(lo[part], n_pairs[part])].astype(np.int64)
                    d = np.bitwise_count(words[a] ^ words[b]).sum(axis=1, dtype=np.int64)
                    near = np.nonzero(d <= r)[0]
                    found_a.append(np.minimum(a[near], b[near]))
                    found_b.append(np.maximum(a[near], b[near]))
                    found_d.append(d[near])
        best: dict[tuple[str, str], int] = {}
        if found_a:
            a, b, d = (np.concatenate(x) for x in (found_a, found_b, found_d))
            _, first = np.unique(a * max(n, 1) + b, return_index=True)  # found in several chunks
            for i, j, dist in zip(a[first].tolist(), b[first].tolist(), d[first].tolist()):
                x, y = self._ids[i], self._ids[j]
                if x == y:
                    continue  # two variants of one item
                key = (x, y) if x < y else (y, x)
                if dist < best.get(key, r + 1):
                    best[key] = dist
        return sorted((x, y, d) for (x, y), d in best.items())


def _scan(hashes: np.ndarray, q: np.ndarray, r: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(query, row, distance) of every row within r of each query, by reading every row.
    One query and one word at a time: 1-D numpy runs ~3x faster than a broadcast block."""
    for i in range(len(q)):
        d = np.bitwise_count(hashes[:, 0] ^ q[i, 0]).astype(np.uint16)
        for k in range(1, hashes.shape[1]):
            d += np.bitwise_count(hashes[:, k] ^ q[i, k])
        rows = np.flatnonzero(d <= r)
        yield np.full(len(rows), i), rows, d[rows].astype(np.int64)


def _chunk_values(words: np.ndarray, start: int, width: int) -> np.ndarray:
    """Bits start .. start+width-1 of every hash, as uint32."""
    i, off = divmod(start, 64)
    v = words[:, i] >> np.uint64(off)
    if off + width > 64:  # the chunk straddles two words
        v = v | (words[:, i + 1] << np.uint64(64 - off))
    return (v & np.uint64((1 << width) - 1)).astype(np.uint32)


__all__ = ["MultiIndexHash", "choose_chunks", "FORMAT"]
