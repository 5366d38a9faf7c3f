"""neardup: the multi-index search returns exactly the pairs within the threshold, as all pairs would."""

import numpy as np
import pytest

from img2npz import fingerprint, neardup


def _planted(count: int, pairs: int, threshold: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 256, (count, fingerprint.BYTES), dtype=np.uint8)
    chosen = rng.choice(count, 2 * pairs, replace=False)
    first, second = chosen[:pairs], chosen[pairs:]
    bits = np.unpackbits(hashes[first], axis=1)
    for number, row in enumerate(bits):
        row[rng.choice(256, number % (threshold + 1), replace=False)] ^= 1  # 0..threshold bits apart
    hashes[second] = np.packbits(bits, axis=1)
    return hashes, set(zip(np.minimum(first, second).tolist(), np.maximum(first, second).tolist(), strict=True))


def test_planted_pairs_are_found_among_a_hundred_thousand_and_none_invented():
    hashes, planted = _planted(100_000, 300, 24)
    first, second = neardup.near_pairs(hashes, 24)
    assert set(zip(first.tolist(), second.tolist(), strict=True)) == planted


@pytest.mark.parametrize("threshold", [0, 5, 24, 40])
def test_same_pairs_as_comparing_all_pairs(threshold):
    rng = np.random.default_rng(threshold)
    base = rng.integers(0, 256, (40, fingerprint.BYTES), dtype=np.uint8)
    bits = np.unpackbits(base[rng.integers(0, 40, 400)], axis=1)
    flips = rng.random(bits.shape) < rng.uniform(0, 0.2, (400, 1))  # clusters at every distance
    hashes = np.packbits(bits ^ flips, axis=1)
    every = neardup.distances(hashes[:, None], hashes[None])
    want = [(i, j) for i, j in zip(*np.nonzero(every <= threshold), strict=True) if i < j]
    first, second = neardup.near_pairs(hashes, threshold)
    assert list(zip(first.tolist(), second.tolist(), strict=True)) == want
    for chunks in (8, 11, 30):  # any cut is exact; the chosen one is only the fastest
        if threshold // chunks < 3:
            assert np.array_equal(neardup.near_pairs(hashes, threshold, chunks)[0], first)


def test_groups_join_chains_under_their_smallest_member():
    groups = neardup.groups(7, np.array([5, 1, 3]), np.array([6, 3, 6]))
    assert groups.tolist() == [0, 1, 2, 1, 4, 1, 1]


def test_many_copies_join_their_first_without_comparing_them_all():
    rng = np.random.default_rng(8)
    hashes = rng.integers(0, 256, (3000, neardup.BYTES), dtype=np.uint8)
    colours = np.full((3000, 3), 100, np.uint8)
    hashes[1000:2500] = hashes[7]  # 1,500 copies of row 7 (blank images, say)
    hashes[2999] = hashes[5]
    hashes[2999, 0] ^= 0b111  # 3 bits from row 5
    colours[2998] = (200, 20, 20)  # a copy of row 7's hash in another colour: no near-duplicate
    hashes[2998] = hashes[7]
    first, second = neardup.near_duplicate_pairs(hashes, colours, 4)
    assert len(first) == 1500 + 1 and (first < second).all()
    assert (np.diff(first * 3000 + second) > 0).all()  # sorted, each once
    roots = neardup.groups(3000, first, second)
    assert set(np.flatnonzero(roots == 7).tolist()) == {7, *range(1000, 2500)}
    assert roots[2999] == 5 and roots[2998] == 2998
    assert (neardup.distances(hashes[first], hashes[second]) <= 4).all()


def test_threads_and_query_blocks_change_nothing(monkeypatch):
    rng = np.random.default_rng(11)
    hashes = rng.integers(0, 256, (3000, neardup.BYTES), dtype=np.uint8)
    hashes[1::3] = hashes[::3]
    hashes[1::3, 5] ^= 0b1011  # 3 bits apart
    serial = neardup.near_pairs(hashes, 24)
    monkeypatch.setattr(neardup, "QUERIES", 700)
    monkeypatch.setattr(neardup, "CANDIDATES", 500)
    for threads in (1, 3):
        found = neardup.near_pairs(hashes, 24, threads=threads)
        assert all((a == b).all() for a, b in zip(found, serial, strict=True)) and len(found[0]) == 1000


@pytest.mark.parametrize(
    ("direct_pairs", "table_bits"),
    [(0, neardup.TABLE_BITS), (0, 0), (10_000, neardup.TABLE_BITS), (neardup.DIRECT_PAIRS, neardup.TABLE_BITS)],
)
def test_pairs_involving_some_rows_are_the_pairs_of_the_whole_that_touch_them(monkeypatch, direct_pairs, table_bits):
    """Looking up only some rows finds exactly the pairs (within the bits, colours alike) that have
    one of them: every such pair of a brute-force comparison, each once; through the chunk tables
    (the rows sorted by chunk value, or, for a few queries, their probes), with or without bucket
    tables, or by comparing the rows with all (in blocks of a few rows), as many as there are."""
    monkeypatch.setattr(neardup, "DIRECT_PAIRS", direct_pairs)
    monkeypatch.setattr(neardup, "TABLE_BITS", table_bits)
    monkeypatch.setattr(neardup, "CANDIDATES", 2000)
    rng = np.random.default_rng(11)
    hashes = rng.integers(0, 256, (800, neardup.BYTES), dtype=np.uint8)
    for source, copy in ((5, 790), (17, 18), (400, 799), (401, 799), (7, 8), (8, 9)):
        hashes[copy] = hashes[source]
        hashes[copy, source % neardup.BYTES] ^= 1 << (source % 8)  # a bit or two apart
    colours = np.full((800, 3), 128, np.uint8)
    colours[401] = (250, 10, 10)  # near in hash, not in colour
    apart = np.bitwise_count(hashes[:, None, :] ^ hashes[None, :, :]).sum(axis=2)
    alike = neardup.colour_apart(colours[:, None, :], colours[None, :, :]) <= neardup.COLOUR_TOLERANCE
    close = np.triu((apart <= 20) & alike, 1)
    for queries in ([799], [18, 790], [9], list(range(0, 800, 7)), []):
        first, second = neardup.pairs_involving(hashes, colours, 20, np.array(queries, np.int64))
        brute = [(i, j) for i, j in zip(*np.nonzero(close), strict=True) if i in queries or j in queries]
        assert list(zip(first.tolist(), second.tolist(), strict=True)) == sorted(brute), queries
