"""Crops among millions: each image's whole-field hash looked up among every other image's window
hashes (:mod:`img2npz.fieldhash`), without comparing all pairs.

The candidates come from multi-index hashing with exact chunk matches only (the first stage of
:mod:`img2npz.neardup`, without its probes): the 256 bits are cut into chunks of about
``log2(n) + 2`` bits (:func:`chunk_bounds`), and a window is a candidate of a whole field
when some chunk of the two is equal. Each candidate's full distance is then computed, and the
pairs within the threshold kept. Unlike the row-hash search this is not exact: a pair 36 bits
apart has some chunk equal most of the time, not always (``bench/neardup.py`` measures the
recall, 98% to 100% for crops up to 10%). What it costs is set by the windows looked up: about
``n * 35 * chunks`` lookups, each finding a whole field by chance a quarter of the time.

The windows are read a block of rows at a time from any array-like (a memory map, a member read
in blocks), so the search holds the whole-field hashes, one chunk table and one block: a few
hundred bytes an image, where all the windows would be 1,120.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np

from img2npz import neardup
from img2npz.fieldhash import BYTES, WINDOWS

MIN_WIDTH = 16  # bits a chunk at least: below, chance candidates outnumber the lookups
MAX_WIDTH = 22  # and at most (a table of 2**22 + 1 starts)
BLOCK_ROWS = 4096  # rows whose windows are looked up at once: 4096 * 35 windows
GAP_ROWS = 64  # rows this close are read in one span (the rows between read and dropped: 74 KB)
CANDIDATES = 1 << 18  # candidate pairs whose distances are computed at once
TABLES_BYTES = 48 << 20  # the chunks' tables held at once (each pass reads every window again)

Windows = Callable[[np.ndarray], np.ndarray]  # ascending rows -> their (rows, WINDOWS, BYTES) hashes


def chunk_bounds(count: int) -> np.ndarray:
    """Chunks of about ``log2(count) + 2`` bits (within MIN_WIDTH..MAX_WIDTH): a window finds a
    whole field by chance a quarter of the times it is looked up, and a crop 36 bits from its
    window still shares an equal chunk with it (``bench/neardup.py`` measures how often)."""
    width = min(MAX_WIDTH, max(MIN_WIDTH, math.ceil(math.log2(max(count, 2))) + 2))
    return np.linspace(0, BYTES * 8, math.ceil(BYTES * 8 / width) + 1).round().astype(int)


class _Table:
    """Where each chunk value's whole fields sit, in a sorted order: a table of bucket starts."""

    def __init__(self, values: np.ndarray, width: int):
        self.order = np.argsort(values, kind="stable").astype(np.int32)
        ordered = values[self.order]
        # where each value starts: searched in slices (a bincount of 2**22 would be 32 MB more)
        self.starts = np.empty((1 << width) + 1, np.int32)
        for low in range(0, len(self.starts), 1 << 18):
            wanted = np.arange(low, min(low + (1 << 18), len(self.starts)), dtype=np.int64)
            self.starts[low : low + len(wanted)] = np.searchsorted(ordered, wanted)

    def candidates(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(query index, whole-field index) of every whole field sharing a query's value."""
        low, high = self.starts[values], self.starts[values.astype(np.int64) + 1]
        lengths = high - low
        queries = np.repeat(np.arange(len(values)), lengths)
        if not len(queries):
            return queries, queries
        offsets = np.arange(len(queries)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        return queries, self.order[np.repeat(low, lengths) + offsets]


def window_reader(fields) -> Windows:
    """A :data:`Windows` of an (n, WINDOWS, BYTES) array-like (an array, a memory map): the span
    from the first row to the last is sliced once."""
    return lambda rows: np.asarray(fields[int(rows[0]) : int(rows[-1]) + 1])[rows - rows[0]]


def read_runs(windows: Windows, rows: np.ndarray) -> np.ndarray:
    """``windows`` of ascending ``rows``, asked for runs of rows at most GAP_ROWS apart (a reader
    takes each run's span in one read: scattered rows must not make it read all between)."""
    runs = np.split(rows, np.flatnonzero(np.diff(rows) > GAP_ROWS) + 1)
    return windows(runs[0]) if len(runs) == 1 else np.concatenate([windows(run) for run in runs])


def crop_pairs(*args, **kwargs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first, second, distance) of :func:`crop_matches`."""
    return crop_matches(*args, **kwargs)[:3]


def crop_matches(
    wholes: np.ndarray,
    windows: Windows,
    bits: int,
    usable: np.ndarray | None = None,
    queries: np.ndarray | None = None,
    layout_rows: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(first, second, distance, whole, window), first < second, sorted, unique: pairs of rows where one row's
    whole field (``wholes``, (n, BYTES): window 0 of each row) is at most ``bits`` from a window
    of the other's (``windows(rows)``: their (rows, WINDOWS, BYTES) hashes, asked for runs of
    rows at most GAP_ROWS apart, read as one span); the distance is the smallest such, ``whole``
    the row whose whole field it is and ``window`` the other's window.
    ``usable``: rows that may be matched (the others are never a candidate); ``queries``: only
    pairs with one of these rows (a rerun's new rows). ``layout_rows`` (default: the rows here)
    sets the chunks (:func:`chunk_bounds`): a pair is a candidate when a chunk is equal, so a
    search of some of a dataset's rows finds what the whole's does only with the whole's chunks."""
    wholes = np.ascontiguousarray(wholes, np.uint8).reshape(-1, BYTES)
    count = len(wholes)
    usable = np.ones(count, bool) if usable is None else np.asarray(usable, bool)
    bounds = chunk_bounds(count if layout_rows is None else layout_rows)
    found: list[np.ndarray] = []
    if queries is None:
        found += _search(wholes, np.flatnonzero(usable), windows, np.flatnonzero(usable), bits, bounds)
    else:
        asked = np.zeros(count, bool)
        asked[np.asarray(queries, np.int64)] = True
        asked &= usable
        # the new rows' whole fields among every window, then every whole field among theirs
        found += _search(wholes, np.flatnonzero(asked), windows, np.flatnonzero(usable), bits, bounds)
        found += _search(wholes, np.flatnonzero(usable), windows, np.flatnonzero(asked), bits, bounds)
    keys = np.concatenate(found) if found else np.zeros(0, np.int64)
    if not len(keys):
        return keys, keys, keys, keys, keys
    # key = (pair << 16) | (distance << 7) | (whole is second << 6) | window: sorted, the first of
    # each pair is its smallest distance (10^7 rows fit)
    keys.sort()
    pairs = keys >> 16
    first_of = np.concatenate(([True], pairs[1:] != pairs[:-1]))
    keys = keys[first_of]
    pair = keys >> 16
    first, second = pair // count, pair % count
    whole = np.where((keys >> 6) & 1, second, first)
    return first, second, (keys >> 7) & 511, whole, keys & 63


def _search(
    wholes: np.ndarray, bases: np.ndarray, windows: Windows, rows: np.ndarray, bits: int, bounds: np.ndarray
) -> list[np.ndarray]:
    """Keys of the pairs of a whole field of ``bases`` and a window of ``rows`` (both ascending),
    as many chunks' tables at a time as fit TABLES_BYTES: every window is read once a pass, and
    the tables (20 MB a chunk at 10^6 rows) are what the search's memory would grow with."""
    if not len(bases) or not len(rows):
        return []
    count = len(wholes)
    base_hashes = wholes if len(bases) == count else wholes[bases]
    words = base_hashes.view(np.uint64)
    found = []
    chunks = list(itertools.pairwise(bounds.tolist()))
    table_bytes = 4 * ((1 << int(np.diff(bounds).max())) + len(bases))
    at_once = max(1, TABLES_BYTES // table_bytes)
    for first in range(0, len(chunks), at_once):
        part = chunks[first : first + at_once]
        base_columns = base_hashes.T  # a view: the tables are built once a pass, a copy would be 32 MB
        tables = [_Table(neardup.chunk_values(base_columns, low, high), high - low) for low, high in part]
        # blocks of BLOCK_ROWS rows (one lookup each, however scattered the rows: a rerun's new
        # ones), each read in runs of rows at most GAP_ROWS apart
        for group in np.split(rows, range(BLOCK_ROWS, len(rows), BLOCK_ROWS)):
            block = np.ascontiguousarray(read_runs(windows, group)[:, 1:], np.uint8)
            owner = np.repeat(group, WINDOWS - 1)
            window = np.tile(np.arange(1, WINDOWS), len(group))
            flat = block.reshape(-1, BYTES)
            flat_words = flat.view(np.uint64)
            columns = neardup.byte_columns(flat)
            seen: list[np.ndarray] = []
            for (low, high), table in zip(part, tables, strict=True):
                query, base = table.candidates(neardup.chunk_values(columns, low, high))
                for at in range(0, len(query), CANDIDATES):
                    q, b = query[at : at + CANDIDATES], base[at : at + CANDIDATES]
                    apart = np.bitwise_count(flat_words[q] ^ words[b]).sum(axis=1, dtype=np.int64)
                    keep = (apart <= bits) & (bases[b] != owner[q])
                    one, other = bases[b[keep]], owner[q[keep]]
                    pair = np.minimum(one, other) * count + np.maximum(one, other)
                    where = ((one > other).astype(np.int64) << 6) | window[q[keep]]
                    seen.append((pair << 16) | (apart[keep] << 7) | where)
            if seen:
                found.append(np.unique(np.concatenate(seen)))
        del tables
    return found
