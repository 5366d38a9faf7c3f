"""The copies the merge leaves out with ``filters.drop_duplicates``: every row of a set of copies
but the first in the index order.

``exact``: rows with the same perceptual hash and CRC-32 as an earlier row, whose bytes are then
found equal to its.
``near``: :func:`img2npz.neardup.near_duplicate_pairs` (exact copies among them). Copies form
sets through their pairs, so in a chain of near-duplicates (A like B, B like C) only A stays, even
where A and C are further apart than the threshold. Each dropped row becomes a ``failures.tsv``
line (stage ``filter``) naming the path it is a copy of.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Protocol

import numpy as np

from img2npz import neardup
from img2npz.contract import FILTER_STAGE
from img2npz.dtypes import uint8_of
from img2npz.filecopy import ByteRange, row_ranges
from img2npz.npzformat import ArrayLayout, read_array, read_rows


class Shard(Protocol):
    """What this module needs of a shard (the merge's summary of one)."""

    npz: str
    layouts: dict[str, ArrayLayout]
    images: int  # decoded rows


@dataclass
class Copies:
    """Per shard (in merge order): which decoded rows stay, and the failure lines of the others."""

    keep: list[np.ndarray] = field(default_factory=list)
    failures: list[list[tuple[str, str, str]]] = field(default_factory=list)

    @property
    def dropped(self) -> int:
        return sum(len(lines) for lines in self.failures)


def _column(shards: Sequence[Shard], name: str, empty: np.ndarray) -> np.ndarray:
    return np.concatenate([empty, *(read_array(s.npz, name, s.layouts[name]) for s in shards)])


def _row_reader(shards: Sequence[Shard], starts: np.ndarray):
    """Row number (in merge order) -> its bytes; an earlier copy's are read once for all its copies."""

    @lru_cache(maxsize=256)
    def row_bytes(row: int) -> bytes:
        number = int(np.searchsorted(starts, row, side="right")) - 1
        shard = shards[number]
        return read_rows(shard.npz, "images", [row - int(starts[number])], shard.layouts["images"]).tobytes()

    return row_bytes


def find_copies(shards: Sequence[Shard], mode: str, bits: int) -> Copies:
    """The rows ``mode`` (``exact`` or ``near``) drops, ``bits`` the near-duplicate threshold."""
    starts = np.cumsum([0] + [shard.images for shard in shards])
    count = int(starts[-1])
    hashes = _column(shards, "phashes", np.zeros((0, neardup.BYTES), np.uint8))
    if mode == "near":
        colours = _column(shards, "mean_rgb", np.zeros((0, 3), np.uint8))
        first, second = neardup.near_duplicate_pairs(hashes, colours, bits)
    else:
        crcs = np.ascontiguousarray(_column(shards, "crc32s", np.zeros(0, np.uint32)), "<u4")
        keys = np.concatenate([hashes, crcs.view(np.uint8).reshape(-1, 4)], axis=1)
        _, firsts, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        owner = firsts[inverse.reshape(-1)] if count else np.zeros(0, np.int64)
        candidates = np.flatnonzero(owner != np.arange(count))  # same hash and CRC as an earlier row
        row_bytes = _row_reader(shards, starts)
        same = [int(row) for row in candidates if row_bytes(int(owner[row])) == row_bytes(int(row))]
        first, second = owner[same].astype(np.int64), np.array(same, np.int64)
    roots = neardup.groups(count, first, second)  # each set's smallest row: its first in the index order
    paths = _column(shards, "paths", np.zeros(0, "<U1")) if (roots != np.arange(count)).any() else None
    reason = "same pixels as" if mode == "exact" else "near-duplicate of"
    copies = Copies()
    for number in range(len(shards)):
        rows = np.arange(starts[number], starts[number + 1])
        keep = roots[rows] == rows
        copies.keep.append(keep)
        copies.failures.append(
            [
                (str(paths[row]), FILTER_STAGE, f"{reason} {paths[roots[row]]} (filters.drop_duplicates: {mode})")
                for row in rows[~keep].tolist()
            ]
        )
    return copies


def kept_ranges(shard: Shard, keep: np.ndarray, crcs: np.ndarray) -> list[ByteRange]:
    """The byte ranges of a shard's kept rows, a range per run of them, each with its CRC-32."""
    layout = shard.layouts["images"]
    row_bytes = layout.nbytes // layout.shape[0] if layout.shape[0] else 0
    edges = np.flatnonzero(np.diff(np.concatenate([[0], np.asarray(keep, np.int8), [0]])))
    ranges = []
    for start, stop in zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True):
        ranges.extend(row_ranges(shard.npz, layout.offset + start * row_bytes, row_bytes, crcs[start:stop]))
    return ranges


def dropped_counts(shard: Shard, keep: np.ndarray, pixel: dict) -> np.ndarray:
    """The (3, 256) uint8 value counts of a shard's dropped rows (to take from its histogram)."""
    counts = np.zeros((3, 256), np.int64)
    dropped = np.flatnonzero(~keep).tolist()
    if not dropped:
        return counts
    for stored in read_rows(shard.npz, "images", dropped, shard.layouts["images"]):
        pixels = uint8_of(stored, pixel["dtype"], pixel["normalize"])
        if pixels is None:
            raise ValueError(f"{shard.npz}: a dropped row's pixels cannot be recovered to count them")
        for channel in range(3):
            counts[channel] += np.bincount(pixels[..., channel].reshape(-1), minlength=256)
    return counts
