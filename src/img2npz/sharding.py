"""Shard sizes, and the path hashes the tree walk records.

A shard holds about ``target_images`` rows (one preprocess job each); which rows is
:mod:`img2npz.allocation`'s. The default target grows with the tree (:data:`AUTO_TARGETS`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from img2npz.contract import path_sort_key


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


# The default shard size by the tree's size: (trees under this many images, target). A tree that
# grows past a threshold keeps the shards it has; new ones take the new target.
AUTO_TARGETS = ((300_000, 1_000), (3_000_000, 4_000), (None, 16_000))
# Below the first tier's, a tree is cut into at least this many shards (while they keep at least
# AUTO_MIN_TARGET images): equal jobs fill 2, 4, 8, 16 or 32 cores evenly, 12 within 1.13x.
AUTO_SHARDS = 32
AUTO_MIN_TARGET = 250


def auto_target(images: int) -> int:
    """The default ``shards.target_images`` for a tree of ``images``: jobs of about a minute or less
    at 256 x 256, and at most a few hundred jobs up to 10^7 images, since Snakemake's own work per
    job (0.14 s at 10^3 jobs) and the cluster's per-submission cost grow with their number. A small
    tree still makes :data:`AUTO_SHARDS` jobs: 20 jobs of 1,000 on 16 cores ran in two rounds, the
    second on 4 cores, while a job's fixed cost (about 0.25 s of a core) makes shards of a few
    hundred images cheap enough."""
    for below, target in AUTO_TARGETS:
        if below is None or images < below:
            return min(target, max(AUTO_MIN_TARGET, -(-images // AUTO_SHARDS)))
    raise AssertionError("the last tier has no bound")


def resolve_bounds(bounds: Sequence[int | None], images: int) -> tuple[int, int, int]:
    """(target, min, max) for a tree of ``images`` from the configured ones, where None is derived:
    the target from the tree's size (:func:`auto_target`, kept within a configured min and max),
    min as target // 2 (fewer rows make a shard *small*, for a compaction) and max as 2 * target.
    Where the first tier's target follows the tree (under 32,000 images), min stays at
    AUTO_MIN_TARGET // 2: the shards of a tree that grows would otherwise turn small under it."""
    target, low, high = bounds
    auto_low = None
    if target is None:
        target = auto_target(images)
        if target <= AUTO_TARGETS[0][1]:
            auto_low = AUTO_MIN_TARGET // 2
        target = max(target, low) if low is not None else target
        target = min(target, high) if high is not None else target
    if low is None:
        low = min(auto_low, target) if auto_low is not None else max(1, target // 2)
    return target, low, high if high is not None else 2 * target
