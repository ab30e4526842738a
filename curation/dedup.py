"""Near-duplicate groups, the member each group keeps, and the pairs a person should check.

Pure functions over pairs found by curation.nearindex and facts about each crop. Groups are
transitive (a~b and b~c put a, b, c together), so each row also carries its distance to the
keeper: a chain can join crops that are further apart than the radius, and that shows.

Keeper policies are comma-separated criteria, applied in order, ties broken by the next
criterion and finally by id (so the choice is stable across runs):

    clean       the clean copy first: no marks drawn over the art (a detector's boxes, landmark
                dots), then not heavily JPEG-compressed at the crop's scale (curation/cleanliness.py)
    largest     more pixels first (a 2x upscale also wins: pair this with review if that matters)
    lossless    lossless files (PNG, lossless WebP, BMP, TIFF, GIF) before lossy (JPEG, lossy WebP, AVIF)
    original    the original source before reposts
    earliest    earliest publication first; unknown dates last
    latest      latest publication first; unknown dates last
    most_bytes  bigger files first (at one resolution, usually the less compressed)

The default, "clean,largest,lossless,original,earliest", keeps the clean copy, and of clean
copies the one with the most pixels for training: a bigger copy with boxes drawn over the faces
loses to the smaller clean one.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from datetime import datetime, timezone
from numbers import Integral
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from curation.hashes import HASH_LIBRARY_VERSION, HashConfig, hamming
from curation.nearindex import MultiIndexHash
from curation.nearindex_store import load_index
from manifests.records import DupGroup

DEFAULT_POLICY = "clean,largest,lossless,original,earliest"
LOSSLESS_FORMATS = frozenset({"PNG", "APNG", "BMP", "TIFF", "GIF", "PPM", "TGA"})


@dataclass(frozen=True)
class Candidate:
    """What the keeper policy needs to know about one crop. The caller decides
    is_original_source from where the image came from (a repost site, a mirror, ...)."""

    id: str
    width: int
    height: int
    lossless: bool
    is_original_source: bool = True
    published_at: datetime | None = None
    bytes: int = 0
    marks: float = 0.0  # share of the crop that is drawn-on strokes (cleanliness.drawn_marks)
    compression: float = 0.0  # the file's JPEG quantiser at the crop's scale (cleanliness); 0 = lossless

    @property
    def dirty(self) -> tuple[bool, bool]:
        from curation.cleanliness import COMPRESSED, MARKED

        return self.marks >= MARKED, self.compression > COMPRESSED


@dataclass(frozen=True)
class Borderline:
    """A pair close to the radius, for the review queue: `grouped` says which side it fell."""

    a: str
    b: str
    distance: int
    grouped: bool
    reason: str


def is_lossless(fmt: str, head: bytes = b"") -> bool:
    """From the format detected in the bytes (StoredImage.format) and, for WebP, the first
    few KB: a lossless WebP carries a VP8L chunk, a lossy one VP8 (plus ALPH for alpha)."""
    fmt = fmt.upper()
    if fmt == "WEBP":
        return b"VP8L" in head and b"VP8 " not in head
    return fmt in LOSSLESS_FORMATS


def _timestamp(when: datetime) -> float:
    # Naive datetimes are taken as UTC so aware and naive values from different sources sort together.
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()


_CRITERIA: dict[str, Callable[[Candidate], object]] = {
    "clean": lambda c: c.dirty,
    "largest": lambda c: -(c.width * c.height),
    "lossless": lambda c: not c.lossless,
    "original": lambda c: not c.is_original_source,
    "earliest": lambda c: (c.published_at is None, _timestamp(c.published_at) if c.published_at else 0.0),
    "latest": lambda c: (c.published_at is None, -_timestamp(c.published_at) if c.published_at else 0.0),
    "most_bytes": lambda c: -c.bytes,
}


def parse_policy(policy: str) -> list[str]:
    names = [p.strip() for p in policy.split(",") if p.strip()]
    unknown = [n for n in names if n not in _CRITERIA]
    if unknown or not names:
        raise ValueError(f"keeper policy {policy!r}: unknown {unknown}; use a comma-separated list of {sorted(_CRITERIA)}")
    return names


def choose_keeper(members: Sequence[Candidate], policy: str = DEFAULT_POLICY) -> str:
    """The id of the member to keep, by the policy's criteria in order, then by id."""
    if not members:
        raise ValueError("choose_keeper needs at least one member")
    keys = [_CRITERIA[name] for name in parse_policy(policy)]
    return min(members, key=lambda c: (*(k(c) for k in keys), c.id)).id


def why_kept(keeper: Candidate, other: Candidate, policy: str = DEFAULT_POLICY) -> str:
    """The first criterion of the policy on which the keeper beat `other`, in words."""
    for name in parse_policy(policy):
        k = _CRITERIA[name]
        if k(keeper) != k(other):
            if name == "clean":
                from curation.cleanliness import describe

                return (f"the keeper is the clean copy ({describe(keeper.marks, keeper.compression)}; this one: "
                        f"{describe(other.marks, other.compression)})")
            return {"largest": f"the keeper is larger ({keeper.width}x{keeper.height} px against "
                               f"{other.width}x{other.height})",
                    "lossless": "the keeper's file is lossless, this one's lossy",
                    "original": "the keeper comes from the original source, this one from a repost",
                    "earliest": "the keeper was published earlier",
                    "latest": "the keeper was published later",
                    "most_bytes": f"the keeper's file is bigger ({keeper.bytes} bytes against {other.bytes})"}[name]
    return "the policy ties: the smaller id is kept"


def union_groups(pairs: Iterable[tuple], ids: Iterable[str] = ()) -> dict[str, str]:
    """id -> group id for every id in `ids` and in `pairs` ((a, b) or (a, b, distance)).
    Transitive, by union-find. The group id is the group's smallest member id: stable
    across runs while the group keeps its members (a new smaller member renames it)."""
    parent = {i: i for i in ids}

    def find(x: str) -> str:
        root = parent.setdefault(x, x)
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:  # path compression keeps later finds short
            parent[x], x = root, parent[x]
        return root

    for a, b, *_ in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            # the smaller root wins, so every root is the smallest id of its group
            parent[max(ra, rb)] = min(ra, rb)
    return {x: find(x) for x in parent}


def _path_distances(source: str, members: set[str], pairs: Sequence[tuple[str, str, int]]) -> dict[str, int]:
    """Shortest sum of pair distances from `source` (Dijkstra): by the triangle inequality an
    upper bound on the Hamming distance, used when the hashes themselves are not given."""
    graph: dict[str, list[tuple[str, int]]] = {m: [] for m in members}
    for a, b, d in pairs:
        if a in graph and b in graph:
            graph[a].append((b, d))
            graph[b].append((a, d))
    best, heap = {source: 0}, [(0, source)]
    while heap:
        d, x = heapq.heappop(heap)
        if d > best[x]:
            continue
        for y, step in graph[x]:
            if d + step < best.get(y, d + step + 1):
                best[y] = d + step
                heapq.heappush(heap, (d + step, y))
    return best


def _variants(value: int | Sequence[int]) -> Sequence[int]:
    return (int(value),) if isinstance(value, Integral) else value


def dup_groups(pairs_with_distance: Sequence[tuple[str, str, int]], candidates: Sequence[Candidate],
               policy: str = DEFAULT_POLICY, *, hashes: Mapping[str, int | Sequence[int]] | None = None) -> list[DupGroup]:
    """One DupGroup row per candidate (a crop with no near-duplicate is its own keeper at 0).
    distance: Hamming distance to the keeper from `hashes` (id -> value, or several values
    for hash variants: the smallest counts); without hashes, the shortest chain of pair
    distances, which bounds it from above."""
    parse_policy(policy)
    by_id = {c.id: c for c in candidates}
    stray = {x for a, b, _ in pairs_with_distance for x in (a, b)} - by_id.keys()
    if stray:
        raise ValueError(f"pairs name {len(stray)} ids with no Candidate, e.g. {sorted(stray)[:3]}")
    group_of = union_groups(pairs_with_distance, by_id)
    members: dict[str, list[str]] = {}
    for crop_id, group in group_of.items():
        members.setdefault(group, []).append(crop_id)
    rows = []
    for group, ids in sorted(members.items()):
        keeper = choose_keeper([by_id[i] for i in ids], policy)
        if hashes is not None:
            ref = _variants(hashes[keeper])
            dist = {i: min(hamming(x, y) for x in ref for y in _variants(hashes[i])) for i in ids}
        elif len(ids) > 1:
            dist = _path_distances(keeper, set(ids), pairs_with_distance)
        else:
            dist = {keeper: 0}
        for crop_id in sorted(ids, key=lambda i: (i != keeper, dist[i], i)):
            rows.append(DupGroup(crop_id=crop_id, group_id=group, keeper=crop_id == keeper,
                                 distance=dist[crop_id], policy=policy))
    return rows


def borderline(pairs_with_distance: Iterable[tuple[str, str, int]], radius: int, margin: int) -> list[Borderline]:
    """Pairs with radius - margin <= distance <= radius + margin, nearest the radius first:
    the ones where a hash alone should not decide. Search the index at radius + margin to
    see those just outside."""
    out = []
    for a, b, d in pairs_with_distance:
        if abs(d - radius) <= margin:
            grouped = d <= radius
            side = "grouped as near-duplicates" if grouped else "kept apart"
            out.append(Borderline(a, b, d, grouped, f"Hamming distance {d} is within {margin} of the radius {radius}: {side}"))
    return sorted(out, key=lambda x: (abs(x.distance - radius), x.distance, x.a, x.b))


def open_index(folder: str | Path, cfg: HashConfig = HashConfig()) -> MultiIndexHash:
    """The workspace's index for `cfg` (e.g. manifests/nearindex/phash64): loaded when saved
    before, empty when new. Refuses an index of another algorithm, size or hash library
    version: its values must be recomputed, never compared."""
    expect = {"algorithm": cfg.algorithm, "bits": cfg.bits, "library_version": HASH_LIBRARY_VERSION}
    if (Path(folder) / "index.json").exists():
        return load_index(folder, expect_meta=expect)
    return MultiIndexHash(cfg.bits, cfg.search_radius, meta=cfg.as_dict())


def group_near_duplicates(index: MultiIndexHash, candidates: Sequence[Candidate], cfg: HashConfig = HashConfig(),
                          policy: str = DEFAULT_POLICY, *, hashes: Mapping[str, int | Sequence[int]] | None = None,
                          ) -> tuple[list[DupGroup], list[Borderline]]:
    """The dedup step of `headshot process`: every pair within radius + margin, grouped
    within radius, and the borderline ones for review."""
    pairs = index.pairs_within(cfg.search_radius)
    grouped = [p for p in pairs if p[2] <= cfg.radius]
    return dup_groups(grouped, candidates, policy, hashes=hashes), borderline(pairs, cfg.radius, cfg.review_margin)


__all__ = [
    "DEFAULT_POLICY", "LOSSLESS_FORMATS", "Candidate", "Borderline", "is_lossless", "parse_policy", "choose_keeper", "why_kept",
    "union_groups", "dup_groups", "borderline", "open_index", "group_near_duplicates",
]
