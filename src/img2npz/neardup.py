"""Every pair of perceptual hashes within a Hamming distance, without comparing all pairs; and
which images that makes near-duplicates (numpy only: the loader's splits use it too).

Multi-index hashing (Norouzi, Punjani and Fleet, CVPR 2012), exact: the 256 bits are cut into
``m`` chunks; two hashes at most ``t`` bits apart differ in at most ``t // m`` bits of some chunk
(pigeonhole). So for each chunk, each item is looked up, among the items sorted by that chunk's
value, under its own value and under every value ``t // m`` bits or fewer away; what is found is
a candidate, and every candidate's full distance is computed. Nothing within ``t`` is missed and
nothing beyond it is reported; the result is the same pairs, in the same order, as comparing all
``n * (n - 1) / 2`` pairs.

The cost is set by ``m``: with chunks of about ``log2(n)`` bits, a random value finds about one
other item under each looked-up value. :func:`chunk_count` picks ``m`` for ``n`` and ``t`` by
that estimate. The bits are taken in a fixed scattered order (:data:`PERMUTATION`), so that the
correlated lowest frequencies do not crowd into one chunk. Memory is a few arrays of ``n`` entries
plus at most :data:`CANDIDATES` candidates at a time.

A rerun looks up only its new rows among all (``queries``). For a few queries the chunk's roles
swap: the queries' own probe values are sorted instead of all the rows, and every row's value is
looked up among them, a pass over the rows rather than a sort (:func:`_probe_chunk`); fewer still
are compared with every row directly (:data:`DIRECT_PAIRS`).
"""

from __future__ import annotations

import itertools
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np

BITS = 256  # the hashes compared: img2npz.fingerprint's
BYTES = BITS // 8
COLOUR_TOLERANCE = 0.08  # near-duplicates' mean colours: chromaticities at most this far apart
MIN_CHUNKS = BITS // 32  # a chunk's value is at most 32 bits
TABLE_BITS = 22  # chunks this wide or narrower are looked up in a table of 2**bits + 1 int64s
CANDIDATES = 1 << 17  # candidate pairs checked at once: most of a thread's working memory (8 MB)
QUERIES = 1 << 16  # items looked up at once
# Few queries (a rerun's new rows): compared with every row, about 10 ns a pair, where the chunk
# tables cost about 0.15 s whatever the number of queries (measured at 22,000 rows).
DIRECT_PAIRS = 1 << 24


def distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamming distances, in bits, between the rows of two broadcastable (..., BYTES) uint8 arrays."""
    a = np.ascontiguousarray(a, np.uint8)
    b = np.ascontiguousarray(b, np.uint8)
    words = np.bitwise_xor(a.view(">u8"), b.view(">u8"))
    return np.bitwise_count(words).sum(axis=-1, dtype=np.int64)


def colour_apart(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """How far apart the chromaticities of two broadcastable (..., 3) mean colours are: the largest
    difference of ``(c + 8) / (r + g + b + 24)`` over the channels (the offset keeps near-black
    colours from swinging). Brightness edits keep it (the ratios stay); another colour does not."""
    a = np.asarray(a, np.float64) + 8
    b = np.asarray(b, np.float64) + 8
    return np.abs(a / a.sum(axis=-1, keepdims=True) - b / b.sum(axis=-1, keepdims=True)).max(axis=-1)


def near_duplicate_pairs(
    hashes: np.ndarray, colours: np.ndarray, bits: int, threads: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """(first, second) rows, first < second, sorted: near-duplicate pairs (hashes within ``bits``,
    mean colours within :data:`COLOUR_TOLERANCE`) that join exactly the sets all such pairs join.

    Images with the same hash and colour (blank images, copies) are joined to the first of them
    only, and two such sets by one pair of their firsts: a thousand copies give 999 pairs, not half
    a million, and the search looks at each distinct hash once. What is joined is the same, and a
    set of copies straddles two splits exactly when one of these pairs does.
    """
    hashes = np.ascontiguousarray(hashes, np.uint8).reshape(-1, BYTES)
    if not len(hashes):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    colours = np.asarray(colours, np.uint8).reshape(-1, 3)
    firsts, owner = _distinct(hashes, colours)
    copies = np.flatnonzero(owner != np.arange(len(hashes)))
    alone = len(firsts) == len(hashes)  # no two alike: search the hashes as they are, no copy
    near_first, near_second = near_pairs(hashes if alone else hashes[firsts], bits, threads=threads)
    tones = colours if alone else colours[firsts]
    alike = colour_apart(tones[near_first], tones[near_second]) <= COLOUR_TOLERANCE
    a, b = firsts[near_first[alike]], firsts[near_second[alike]]
    first = np.concatenate([owner[copies], np.minimum(a, b)]).astype(np.int64)
    second = np.concatenate([copies, np.maximum(a, b)]).astype(np.int64)
    order = np.lexsort((second, first))
    return first[order], second[order]


def copy_owners(hashes: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """Each row's first row with the same hash and mean colour (itself, unless it is a copy)."""
    hashes = np.ascontiguousarray(hashes, np.uint8).reshape(-1, BYTES)
    return _distinct(hashes, np.asarray(colours, np.uint8).reshape(-1, 3))[1]


def _distinct(hashes: np.ndarray, colours: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the first row of each distinct hash and colour, ascending; each row's first row with its
    hash and colour), by one stable sort on five 64-bit columns: a few arrays of n int64s, where
    ``np.unique(..., axis=0)`` copies and sorts every 35-byte row several times."""
    tone = colours.astype(np.uint32)
    columns = [*hashes.view(np.uint64).T, (tone[:, 0] << 16) | (tone[:, 1] << 8) | tone[:, 2]]
    order = np.lexsort(columns[::-1])  # stable: equal keys keep their row order, the first leads
    new = np.zeros(len(order), bool)
    new[0] = True
    for column in columns:
        ordered = column[order]
        new[1:] |= ordered[1:] != ordered[:-1]
        del ordered
    leaders = order[np.flatnonzero(new)]
    owner = np.empty(len(order), np.int64)
    owner[order] = leaders[np.cumsum(new) - 1]
    return np.sort(leaders), owner


def chunk_count(count: int, threshold: int) -> int:
    """The number of chunks whose estimated lookups plus candidates are fewest."""

    def cost(chunks: int) -> float:
        width = BITS / chunks
        radius = threshold // chunks
        probes = sum(math.comb(math.ceil(width), k) for k in range(radius + 1))
        return chunks * probes * (1 + count / 2**width)

    return min(range(MIN_CHUNKS, 65), key=lambda chunks: (cost(chunks), chunks))


# Chunks take the bits in this order: bit ``PERMUTATION[k]`` is the k-th. Consecutive hash bits
# are neighbouring DCT frequencies, and the lowest few are alike across many photos (smooth
# pictures share their coarsest layout); chunks of consecutive bits would then gather them into a
# few values shared by thousands of images, and the candidates grow with the square of those.
# Stride 97 (odd, so a permutation) puts any ten consecutive bits into ten different chunks.
PERMUTATION = (np.arange(BITS) * 97) % BITS


def byte_columns(hashes: np.ndarray) -> np.ndarray:
    """The hashes' bytes as (BYTES, n) rows: a chunk's value reads a few of them whole."""
    return np.ascontiguousarray(hashes.T)


def chunk_values(columns: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Permuted bits ``start:stop`` (at most 32) of each hash (:func:`byte_columns`), as uint32: each
    source byte looked up in a table of what its bits add to the value (unpacking every hash into
    bits cost 13 times as much)."""
    width = stop - start
    tables: dict[int, np.ndarray] = {}
    for place, bit in enumerate(PERMUTATION[start:stop].tolist()):
        table = tables.setdefault(bit // 8, np.zeros(256, np.uint32))
        table[(np.arange(256) >> (7 - bit % 8)) & 1 == 1] |= np.uint32(1 << (width - 1 - place))
    values = np.zeros(columns.shape[1], np.uint32)
    for byte, table in tables.items():
        values |= np.take(table, columns[byte])
    return values


def _masks(width: int, radius: int) -> list[int]:
    masks = [0]
    for flips in range(1, radius + 1):
        for bits in itertools.combinations(range(width), flips):
            masks.append(sum(1 << bit for bit in bits))
    return masks


class _Lookup:
    """Where each value's items start and end in ``order``: a table of bucket starts for chunks
    of up to :data:`TABLE_BITS` bits (one memory access a lookup), else binary search."""

    def __init__(self, values: np.ndarray, order: np.ndarray, width: int):
        self._sorted = values[order]
        self._table = None
        if width <= TABLE_BITS:
            counts = np.bincount(values, minlength=1 << width)
            self._table = np.concatenate(([0], np.cumsum(counts))).astype(order.dtype)

    def ranges(self, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._table is not None:
            wanted = wanted.astype(np.int64)
            return self._table[wanted], self._table[wanted + 1]
        return np.searchsorted(self._sorted, wanted, "left"), np.searchsorted(self._sorted, wanted, "right")


def near_pairs(
    hashes: np.ndarray, threshold: int, chunks: int | None = None, threads: int = 1, queries: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(first, second) int64 row indices, first < second, of every pair at most ``threshold``
    bits apart, sorted by (first, second). ``threads`` search chunks at once (numpy's gathers
    and counts release the GIL); the result does not depend on them. ``queries``: only the pairs
    with at least one of these rows (each looks itself up among all; a rerun's new rows)."""
    hashes = np.ascontiguousarray(hashes, np.uint8).reshape(-1, BYTES)
    count = len(hashes)
    if count < 2 or threshold < 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    chunks = chunks or chunk_count(count, threshold)
    if not MIN_CHUNKS <= chunks <= BITS:
        raise ValueError(f"chunks must be {MIN_CHUNKS}..{BITS}, not {chunks}")
    bounds = np.linspace(0, BITS, chunks + 1).round().astype(int)
    words = hashes.view(np.uint64)  # (count, 4): distances a word at a time (_near_in)
    columns = byte_columns(hashes)
    asked = None
    if queries is not None:
        asked = np.zeros(count, bool)
        asked[np.asarray(queries, np.int64)] = True
    rows = np.flatnonzero(asked) if asked is not None else None

    radius = threshold // chunks
    probes = len(_masks(int(np.diff(bounds).max()), radius))
    chunk_search = _search_chunk if rows is None or len(rows) * probes > count else _probe_chunk

    def search(span: tuple[int, int]) -> list[np.ndarray]:
        return chunk_search(columns, words, int(span[0]), int(span[1]), radius, threshold, rows, asked)

    if rows is not None and len(rows) * count <= DIRECT_PAIRS:
        found = _compare_with_all(words, rows, threshold, asked)
    else:
        with ThreadPoolExecutor(max(1, threads), thread_name_prefix="neardup") as pool:
            found = [keys for part in pool.map(search, itertools.pairwise(bounds)) for keys in part]
    if not found:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    keys = np.unique(np.concatenate(found))
    return keys // count, keys % count


def _compare_with_all(words, rows: np.ndarray, threshold: int, asked: np.ndarray) -> list[np.ndarray]:
    """The pair keys of ``rows``, each compared with every row (no chunk tables)."""
    count = len(words)
    every = np.arange(count)
    step = max(1, CANDIDATES // count)
    return [
        _near_in(words, every, np.zeros(len(who), np.int64), np.full(len(who), count), who, threshold, asked)
        for who in (rows[at : at + step] for at in range(0, len(rows), step))
    ]


def _search_chunk(
    columns, words, start: int, stop: int, radius: int, threshold: int, rows=None, asked=None
) -> list[np.ndarray]:
    """The pair keys that chunk ``start:stop`` finds: every item (or every row of ``rows``) looked
    up under every value within ``radius`` bits of its own."""
    count, width = len(words), stop - start
    values = chunk_values(columns, start, stop)
    order = np.argsort(values, kind="stable").astype(np.int32 if count < 2**31 else np.int64)
    lookup = _Lookup(values, order, width)
    found = []
    looked_up = count if rows is None else len(rows)
    for mask, block in itertools.product(_masks(width, radius), range(0, looked_up, QUERIES)):
        who = np.arange(block, min(block + QUERIES, count)) if rows is None else rows[block : block + QUERIES]
        low, high = lookup.ranges(values[who] ^ np.uint32(mask))
        lengths = high - low
        ends = np.cumsum(lengths)
        first = 0
        while first < len(low):  # runs of queries with at most CANDIDATES candidates (or one query)
            last = int(np.searchsorted(ends, ends[first] - lengths[first] + CANDIDATES, "right"))
            last = max(first + 1, last)
            found.append(_near_in(words, order, low[first:last], high[first:last], who[first:last], threshold, asked))
            first = last
    return found


def _probe_chunk(columns, words, start: int, stop: int, radius: int, threshold: int, rows, asked) -> list[np.ndarray]:
    """What :func:`_search_chunk` finds for a few ``rows``, the other way round: their values
    within ``radius`` bits (the probes) are marked, and every row whose value is marked is a
    candidate of the rows that probed it. No sort of all rows: a rerun's search costs a pass over
    the chunk's values, not a sort of them."""
    width = stop - start
    values = chunk_values(columns, start, stop)
    masks = np.array(_masks(width, radius), np.uint32)
    probes = (values[rows][:, None] ^ masks).reshape(-1)
    order = np.argsort(probes, kind="stable")
    prober = np.repeat(rows, len(masks))[order]
    lookup = _Lookup(probes, order, width)
    if width <= TABLE_BITS:  # every row looked up in the probes' table: a gather
        low, high = lookup.ranges(values)
        candidates = np.flatnonzero(high > low)
        low, high = low[candidates], high[candidates]
    else:
        candidates = np.flatnonzero(np.isin(values, probes))
        low, high = lookup.ranges(values[candidates])
    lengths = high - low
    ends = np.cumsum(lengths)
    found, first = [], 0
    while first < len(low):  # runs of candidates with at most CANDIDATES probers (or one)
        last = max(first + 1, int(np.searchsorted(ends, ends[first] - lengths[first] + CANDIDATES, "right")))
        span = slice(first, last)
        found.append(_near_in(words, prober, low[span], high[span], candidates[span], threshold, asked, probed=True))
        first = last
    return found


def _near_in(words, order, low, high, who: np.ndarray, threshold: int, asked=None, probed=False) -> np.ndarray:
    """Pair keys (``smaller * n + larger``) of the queries ``who`` whose candidates
    ``order[low:high]`` are within ``threshold``; ``words``: the hashes as (n, 4) uint64; ``asked``:
    which rows are queries (None: all), so a pair of two queries is kept once. ``probed``: ``who``
    are rows that queries probed (:func:`_probe_chunk`), and the candidates are those queries.

    The distance is summed a 64-bit word at a time, dropping candidates as soon as the bits seen
    differ in more than ``threshold``: the last word (the highest frequencies, the least alike
    between photos) leaves about 3% of unrelated candidates, so most are never read whole."""
    lengths = high - low
    queries = np.repeat(who, lengths)
    if not len(queries):
        return np.zeros(0, np.int64)
    starts = np.repeat(low - np.cumsum(lengths) + lengths, lengths)
    others = order[np.arange(len(queries)) + starts]
    keep = queries < others  # each pair once, never an item with itself
    if asked is not None:  # a query and a row that is none: found from the query's side only
        keep |= ~asked[queries if probed else others]
    queries, others = queries[keep], others[keep]
    apart = np.zeros(len(queries), np.int64)
    for word in range(words.shape[1] - 1, -1, -1):
        apart += np.bitwise_count(words[queries, word] ^ words[others, word])
        close = apart <= threshold
        queries, others, apart = queries[close], others[close], apart[close]
    return np.minimum(queries, others).astype(np.int64) * len(words) + np.maximum(queries, others)


def pairs_involving(
    hashes: np.ndarray, colours: np.ndarray, bits: int, queries: np.ndarray, threads: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """(first, second), first < second, sorted: every near-duplicate pair (hashes within ``bits``,
    colours alike) with at least one row of ``queries``, found by looking up those rows only."""
    hashes = np.ascontiguousarray(hashes, np.uint8).reshape(-1, BYTES)
    colours = np.asarray(colours, np.uint8).reshape(-1, 3)
    if not len(queries):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    first, second = near_pairs(hashes, bits, threads=threads, queries=queries)
    alike = colour_apart(colours[first], colours[second]) <= COLOUR_TOLERANCE
    return first[alike], second[alike]


def groups(count: int, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Each item's group: the smallest index among the items its pairs connect it to (itself
    when it has no pair). Union-find, all in arrays: ``first`` and ``second`` may be long."""
    parent = np.arange(count)
    first, second = np.asarray(first, np.int64), np.asarray(second, np.int64)
    while True:
        low = np.minimum(parent[first], parent[second])
        changed = False
        for side in (first, second):
            roots = parent[side]
            moved = low < roots
            if moved.any():
                np.minimum.at(parent, roots[moved], low[moved])
                changed = True
        parent = parent[parent]  # path halving, until every item points at its root
        while True:
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand
        if not changed:
            return parent
