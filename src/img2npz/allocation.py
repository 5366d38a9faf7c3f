"""Which shard row holds each image: shards are immutable, so a rerun only appends.

The index's manifests (``results/index/shards/{shard}.tsv``) are the only record of what the shards
hold: a manifest line is a row of its shard, keyed by the image's path, size and mtime. An image
whose key is on some manifest line stays in that row (the first such line in shard-id order when a
crash left it on two); every other image is *new* and goes into new shards. A line whose key is no
longer in the tree (the image was deleted or changed) is a *dropped* row: the shard keeps it, the
dataset leaves it out. So a rerun decodes the new images only and writes no old shard again.

New images are cut, in the index order, into equal shards near ``target_images`` (never over
``max_images``). A shard's id is a digest of its manifest, so the same tree with the same history
gives the same ids. A shard of no live row is removed.

A *compaction* rewrites shards into full ones, copying their rows (manifest lines ``from`` =
``{shard}:{row}``) and decoding nothing, when

* ``compact_dropped``: more than this fraction of a shard's rows are dropped (that shard), or
* ``compact_small``: more than this many shards (counting the new ones) hold fewer than
  ``min_images`` rows (all of those, with the new images).

Its cost is bounded by those shards' rows: about ``compact_small`` shards of under ``min_images``,
and the shards whose dropped rows passed the fraction.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import numpy as np

ID_DIGEST_BYTES = 8
NO_SOURCE = ""


class Line(NamedTuple):
    """One manifest line: the image's key, and where a compaction copies its row from (a tuple:
    every run reads a line per image of the tree)."""

    path: str
    size: int
    mtime: int
    source: str = NO_SOURCE  # "" to decode, or "{shard}:{row}"

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.path, self.size, self.mtime)


@dataclass(frozen=True)
class Compaction:
    """What a compaction rewrote (``shards`` into ``into``, copying ``rows``) and why."""

    reasons: list[str]
    shards: int
    rows: int
    into: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Allocation:
    """The manifests after this run (shard id -> lines), each image's (shard id, row), and what
    changed: the new shards, the removed ones, the compaction."""

    manifests: dict[str, list[Line]]
    shard_of: list[str]  # per image, in the index order
    row_of: np.ndarray  # int64 per image
    new: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    compaction: Compaction | None = None

    @property
    def written(self) -> dict:
        lines = [line for shard in self.new for line in self.manifests[shard]]
        copied = sum(line.source != NO_SOURCE for line in lines)
        return {"shards": len(self.new), "decode": len(lines) - copied, "copy": copied}


def shard_id(lines: Sequence[Line]) -> str:
    """A digest of the manifest's keys and sources: the same lines, the same id."""
    digest = hashlib.blake2b(digest_size=ID_DIGEST_BYTES, person=b"img2npz-shard")
    for line in lines:
        digest.update(f"{line.path}\0{line.size}\0{line.mtime}\0{line.source}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def pieces(count: int, target: int, max_images: int) -> list[tuple[int, int]]:
    """``count`` items cut into equal runs near ``target`` (none over ``max_images``)."""
    if count == 0:
        return []
    number = max(1, round(count / target), -(-count // max_images))
    bounds = [count * k // number for k in range(number + 1)]
    return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]


def allocate(
    paths: Sequence[str],
    sizes: Sequence[int],
    mtimes: Sequence[int],
    existing: Mapping[str, Sequence[Line]],
    target: int,
    min_images: int,
    max_images: int,
    compact_dropped: float = 0.2,
    compact_small: int = 8,
) -> Allocation:
    """The allocation for the tree ``paths`` (in the index order, with their sizes and mtimes) given
    the ``existing`` manifests; see the module docstring."""
    placed: dict[tuple[str, int, int], tuple[str, int]] = {}
    for shard in sorted(existing):
        for row, (path, size, mtime, _) in enumerate(existing[shard]):
            placed.setdefault((path, size, mtime), (shard, row))
    count = len(paths)
    where: list[tuple[str, int] | None] = [
        placed.get((path, int(size), int(mtime))) for path, size, mtime in zip(paths, sizes, mtimes, strict=True)
    ]
    live: dict[str, int] = {}
    for spot in where:
        if spot is not None:
            live[spot[0]] = live.get(spot[0], 0) + 1
    fresh = [number for number in range(count) if where[number] is None]

    reasons = []
    rewrite = {shard for shard, n in live.items() if len(existing[shard]) - n > compact_dropped * len(existing[shard])}
    if rewrite:
        reasons.append(f"{len(rewrite)} shards with more than {compact_dropped:g} of their rows dropped")
    small = {shard for shard, n in live.items() if n < min_images}
    new_small = sum(b - a < min_images for a, b in pieces(len(fresh), target, max_images))
    if len(small) + new_small > compact_small and small - rewrite:
        reasons.append(
            f"{len(small) + new_small} shards of fewer than {min_images} rows (shards.min_images),"
            f" more than shards.compact_small = {compact_small}"
        )
        rewrite |= small

    pool = sorted(fresh + [number for number in range(count) if where[number] and where[number][0] in rewrite])
    manifests = {shard: list(lines) for shard, lines in existing.items() if shard in live and shard not in rewrite}
    shard_of: list[str] = [spot[0] if spot else "" for spot in where]
    row_of = np.array([spot[1] if spot else -1 for spot in where], np.int64)
    new = []
    for start, stop in pieces(len(pool), target, max_images):
        members = pool[start:stop]
        lines = [
            Line(paths[n], int(sizes[n]), int(mtimes[n]), f"{where[n][0]}:{where[n][1]}" if where[n] else NO_SOURCE)
            for n in members
        ]
        shard = shard_id(lines)
        manifests[shard] = lines
        new.append(shard)
        for row, number in enumerate(members):
            shard_of[number] = shard
            row_of[number] = row
    copied = sum(where[n] is not None for n in pool)
    compaction = Compaction(reasons, len(rewrite), copied, len(new)) if rewrite else None
    removed = sorted(set(existing) - set(manifests))
    return Allocation(manifests, shard_of, row_of, sorted(new), removed, compaction)
