"""Which shard row holds each image: shards are immutable, so a rerun only appends.

The index's manifests (``results/index/shards/{shard}.tsv``) are the only record of what the shards
hold: a manifest line is a row of its shard, keyed by the image's path, size and mtime (the path
as its 64-bit hash: :mod:`img2npz.manifests` keeps every line's key in arrays, and the whole tree
is matched against them in numpy). An image whose key is on some manifest line stays in that row
(the first such line in shard-id order when a crash left it on two); every other image is *new*
and goes into new shards. A line whose key is no
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
    """Every shard after this run (sorted ids), each image's shard (a code into ``shards``) and row
    there, and what changed: the new shards' manifests, the removed shards, the compaction."""

    shards: list[str]
    shard_code: np.ndarray  # int32 per image, in the index order
    row_of: np.ndarray  # int64 per image
    lines: dict[str, list[Line]] = field(default_factory=dict)  # the new shards' manifests
    removed: list[str] = field(default_factory=list)
    compaction: Compaction | None = None

    @property
    def new(self) -> list[str]:
        return sorted(self.lines)

    @property
    def written(self) -> dict:
        lines = [line for shard_lines in self.lines.values() for line in shard_lines]
        copied = sum(line.source != NO_SOURCE for line in lines)
        return {"shards": len(self.lines), "decode": len(lines) - copied, "copy": copied}


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


def _mixed(keys: np.ndarray) -> np.ndarray:
    """One 64-bit number per key (the path hash is uniform already): sorted, it finds the
    candidates; the full keys are compared after."""
    with np.errstate(over="ignore"):
        return (
            keys["hash"]
            ^ (keys["size"].view(np.uint64) * np.uint64(0x9E3779B97F4A7C15))
            ^ (keys["mtime"].view(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F))
        )


def match(keys: np.ndarray, table: np.ndarray) -> np.ndarray:
    """For each key, the first row of ``table`` that holds it, or -1."""
    found = np.full(len(keys), -1, np.int64)
    if not len(table) or not len(keys):
        return found
    mixed = _mixed(table)
    order = np.argsort(mixed, kind="stable")
    ordered = mixed[order]
    wanted = _mixed(keys)
    at = np.minimum(np.searchsorted(ordered, wanted), len(table) - 1)
    candidate = order[at]
    same = ordered[at] == wanted
    equal = same & (table[candidate] == keys)
    found[equal] = candidate[equal]
    for number in np.flatnonzero(same & ~equal):  # two keys of one mixed number: about never
        spot = int(at[number]) + 1
        while spot < len(table) and ordered[spot] == wanted[number]:
            if table[order[spot]] == keys[number]:
                found[number] = order[spot]
                break
            spot += 1
    return found


def allocate(
    paths: Sequence[str],
    keys: np.ndarray,
    existing: Mapping[str, np.ndarray],
    target: int,
    min_images: int,
    max_images: int,
    compact_dropped: float = 0.2,
    compact_small: int = 8,
) -> Allocation:
    """The allocation for the tree ``paths`` (in the index order, with their ``keys``:
    :data:`img2npz.manifests.KEY`) given the ``existing`` manifests' keys by shard id; see the
    module docstring."""
    old = sorted(existing)
    counts = np.array([len(existing[shard]) for shard in old], np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)])
    table = np.concatenate([existing[shard] for shard in old]) if old else keys[:0]
    at = match(keys, table)
    placed = at >= 0
    code = np.searchsorted(starts, at, side="right") - 1  # the old shard of each placed image
    row = at - starts[np.maximum(code, 0)]
    live = np.bincount(code[placed], minlength=len(old))

    reasons = []
    rewrite = (live > 0) & (counts - live > compact_dropped * counts)
    if rewrite.any():
        reasons.append(f"{int(rewrite.sum())} shards with more than {compact_dropped:g} of their rows dropped")
    small = (live > 0) & (live < min_images)
    fresh = int((~placed).sum())
    new_small = sum(b - a < min_images for a, b in pieces(fresh, target, max_images))
    if int(small.sum()) + new_small > compact_small and (small & ~rewrite).any():
        reasons.append(
            f"{int(small.sum()) + new_small} shards of fewer than {min_images} rows (shards.min_images),"
            f" more than shards.compact_small = {compact_small}"
        )
        rewrite |= small

    rewritten = placed & rewrite[np.maximum(code, 0)] if old else placed
    pool = np.flatnonzero(~placed | rewritten)
    lines: dict[str, list[Line]] = {}
    members_of = {}
    for start, stop in pieces(len(pool), target, max_images):
        members = pool[start:stop]
        shard_lines = [
            Line(
                paths[n],
                int(keys["size"][n]),
                int(keys["mtime"][n]),
                f"{old[code[n]]}:{row[n]}" if placed[n] else NO_SOURCE,
            )
            for n in members.tolist()
        ]
        shard = shard_id(shard_lines)
        lines[shard], members_of[shard] = shard_lines, members
    kept = [shard for shard, alive, gone in zip(old, live, rewrite, strict=True) if alive and not gone]
    shards = sorted([*kept, *lines])
    final = {shard: number for number, shard in enumerate(shards)}
    renumber = np.array([final.get(shard, -1) for shard in old], np.int32)
    shard_code = renumber[code] if old else np.full(len(paths), -1, np.int32)
    row_of = row.copy()
    for shard, members in members_of.items():
        shard_code[members] = final[shard]
        row_of[members] = np.arange(len(members))
    copied = int(placed[pool].sum())
    compaction = Compaction(reasons, int(rewrite.sum()), copied, len(lines)) if rewrite.any() else None
    removed = sorted(set(old) - set(shards))
    return Allocation(shards, shard_code.astype(np.int32), row_of, lines, removed, compaction)
