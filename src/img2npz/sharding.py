"""Content-defined sharding of a sorted path list.

A path is a *candidate* cut when ``path_hash(path) % target == 0``; that depends on the path alone, so
the shards far from an added or removed path keep their members and their ids. Bounds are applied
locally so they cannot cascade along the list:

* ``min_images``: a candidate is dropped when fewer than ``min_images`` paths separate it from the
  previous candidate (or the start), which merges a short run into the next one.
* ``max_images``: a run between two kept cuts that is longer than ``max_images`` is split into equal
  pieces. Only such an over-long run can change in more than two shards when one path changes.

A shard's id is a hash of its last path, so a shard keeps its name while its end stays put.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from img2npz.contract import path_sort_key

ID_DIGEST_BYTES = 8


def sort_paths(paths: Sequence[str]) -> list[str]:
    return sorted(paths, key=path_sort_key)


def _encode(path: str) -> bytes:
    return path.encode("utf-8", "surrogateescape")


_HASH = hashlib.blake2b(digest_size=8)


def path_hash(path: str) -> int:
    """A fixed, seedless 64-bit hash (Python's ``hash()`` changes between processes)."""
    return int.from_bytes(hashlib.blake2b(_encode(path), digest_size=8).digest(), "big")


def path_hashes(paths: Sequence[str]) -> np.ndarray:
    """:func:`path_hash` of every path as a uint64 array; fast enough for 10^6 paths a second."""
    if not paths:
        return np.zeros(0, np.uint64)
    copy = _HASH.copy
    digests = []
    for encoded in _encode("\0".join(paths)).split(b"\0"):
        hasher = copy()
        hasher.update(encoded)
        digests.append(hasher.digest())
    return np.frombuffer(b"".join(digests), dtype=">u8").astype(np.uint64)


def shard_id(last_path: str) -> str:
    return hashlib.blake2b(_encode(last_path), digest_size=ID_DIGEST_BYTES, person=b"img2npz-shard").hexdigest()


# The default shard size by the tree's size: (trees under this many images, target). Each target
# is 4x the last, so a tree that grows past a threshold keeps every cut the larger target allows
# (a path hash divisible by 4,000 is divisible by 1,000): shards merge, none is cut anew, and the
# rebuilt shards copy their rows (img2npz.reuse) rather than decode them.
AUTO_TARGETS = ((300_000, 1_000), (3_000_000, 4_000), (None, 16_000))


def auto_target(images: int) -> int:
    """The default ``shards.target_images`` for a tree of ``images``: jobs of about a minute or less
    at 256 x 256, and at most a few hundred jobs up to 10^7 images, since Snakemake's own work per
    job (0.14 s at 10^3 jobs) and the cluster's per-submission cost grow with their number."""
    for below, target in AUTO_TARGETS:
        if below is None or images < below:
            return target
    raise AssertionError("the last tier has no bound")


def resolve_bounds(bounds: Sequence[int | None], images: int) -> tuple[int, int, int]:
    """(target, min, max) for a tree of ``images`` from the configured ones, where None is derived:
    the target from the tree's size (:func:`auto_target`, kept within a configured min and max),
    min as target // 10 and max as 2 * target."""
    target, low, high = bounds
    if target is None:
        target = auto_target(images)
        target = max(target, low) if low is not None else target
        target = min(target, high) if high is not None else target
    return target, low if low is not None else max(1, target // 10), high if high is not None else 2 * target


@dataclass(frozen=True)
class Shard:
    """Rows ``start`` (inclusive) to ``stop`` (exclusive) of the sorted path list."""

    id: str
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start


def _kept_cuts(hashes: np.ndarray, target: int, min_images: int) -> list[int]:
    candidates = np.flatnonzero(hashes % np.uint64(target) == 0).tolist()
    cuts = []
    previous_candidate = -1
    for position in candidates:
        if position - previous_candidate >= min_images:
            cuts.append(position)
        previous_candidate = position
    return cuts


def _split_run(start: int, stop: int, max_images: int) -> list[tuple[int, int]]:
    length = stop - start
    pieces = -(-length // max_images)
    bounds = [start + (length * k) // pieces for k in range(pieces + 1)]
    return list(itertools.pairwise(bounds))


def assign_shards(
    paths: Sequence[str],
    target: int,
    min_images: int = 1,
    max_images: int | None = None,
    hashes: np.ndarray | None = None,
) -> list[Shard]:
    """Cut ``paths`` (already in :func:`path_sort_key` order) into shards; see the module docstring.

    ``hashes``: :func:`path_hashes` of ``paths`` when already known (the tree walk computes them).
    """
    if target < 1 or min_images < 1:
        raise ValueError("target and min_images must be at least 1")
    if max_images is not None and max_images < 1:
        raise ValueError("max_images must be at least 1")
    hashes = path_hashes(paths) if hashes is None else hashes
    ends = [cut + 1 for cut in _kept_cuts(hashes, target, min_images)]
    if not ends or ends[-1] != len(paths):
        ends.append(len(paths))
    shards = []
    start = 0
    for stop in ends:
        if stop == start:
            continue
        runs = (
            [(start, stop)] if max_images is None or stop - start <= max_images else _split_run(start, stop, max_images)
        )
        shards.extend(Shard(shard_id(paths[b - 1]), a, b) for a, b in runs)
        start = stop
    return shards
