"""The copies the merge leaves out with ``filters.drop_duplicates``: every row of a set of copies
but the first in the index order.

``exact``: rows with the same perceptual hash and CRC-32 as an earlier row, whose bytes are then
found equal to its.
``near``: the near-duplicate pairs of :mod:`img2npz.nearrule` (exact copies and crops among them). Copies form
sets through their pairs, so in a chain of near-duplicates (A like B, B like C) only A stays, even
where A and C are further apart than the threshold. Each dropped row becomes a ``failures.tsv``
line (stage ``filter``) naming the path it is a copy of.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np

from img2npz import neardup
from img2npz.contract import FILTER_STAGE


def find_copies(
    hashes: np.ndarray,
    colours: np.ndarray,
    crcs: np.ndarray,
    paths: np.ndarray,
    mode: str,
    near: Callable[[], tuple[np.ndarray, np.ndarray]],
    row_bytes: Callable[[int], bytes],
) -> tuple[np.ndarray, list[tuple[str, str, str]]]:
    """Which rows (of the dataset, in the index order) ``mode`` (``exact`` or ``near``) keeps, and a
    failure line for each other one; ``near()`` the near-duplicate pairs (asked in ``near`` mode
    only), ``row_bytes(row)`` a row's stored bytes (read only for rows whose hash and CRC equal an
    earlier row's)."""
    count = len(hashes)
    if mode == "near":
        first, second = near()
    else:
        crcs = np.ascontiguousarray(crcs, "<u4")
        keys = np.concatenate([hashes, crcs.view(np.uint8).reshape(-1, 4)], axis=1)
        _, firsts, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        owner = firsts[inverse.reshape(-1)] if count else np.zeros(0, np.int64)
        candidates = np.flatnonzero(owner != np.arange(count))  # same hash and CRC as an earlier row
        cached = lru_cache(maxsize=256)(row_bytes)  # an earlier copy's bytes, read once for all its copies
        same = [int(row) for row in candidates if cached(int(owner[row])) == cached(int(row))]
        first, second = owner[same].astype(np.int64), np.array(same, np.int64)
    roots = neardup.groups(count, first, second)  # each set's smallest row: its first in the index order
    keep = roots == np.arange(count)
    reason = "same pixels as" if mode == "exact" else "near-duplicate of"
    lines = [
        (str(paths[row]), FILTER_STAGE, f"{reason} {paths[roots[row]]} (filters.drop_duplicates: {mode})")
        for row in np.flatnonzero(~keep).tolist()
    ]
    return keep, lines
