"""cropsearch: whole fields found among windows, at scale, without comparing all pairs."""

import numpy as np
import pytest

from img2npz import cropsearch
from img2npz.fieldhash import BYTES, WINDOWS
from img2npz.neardup import distances


def planted(count: int, pairs: int, most: int, seed: int = 0):
    """Random field hashes where each planted second row's whole field is a window of its first
    row's with up to ``most`` bits flipped."""
    rng = np.random.default_rng(seed)
    fields = rng.integers(0, 256, (count, WINDOWS, BYTES), dtype=np.uint8)
    chosen = rng.choice(count, 2 * pairs, replace=False)
    first, second = chosen[:pairs], chosen[pairs:]
    for one, other in zip(first, second, strict=True):
        bits = np.unpackbits(fields[one, rng.integers(1, WINDOWS)])
        bits[rng.choice(bits.size, int(rng.integers(0, most + 1)), replace=False)] ^= 1
        fields[other, 0] = np.packbits(bits)
    want = set(zip(np.minimum(first, second).tolist(), np.maximum(first, second).tolist(), strict=True))
    return fields, want


def brute_force(fields, bits):
    """Every pair with a whole field within ``bits`` of the other's window, and the distance."""
    apart = distances(fields[:, None, None, 0], fields[None, :, 1:]).min(axis=2)  # [whole's row, windows' row]
    np.fill_diagonal(apart, 999)
    apart = np.minimum(apart, apart.T)
    first, second = np.nonzero(np.triu(apart <= bits, 1))
    return {(a, b): int(apart[a, b]) for a, b in zip(first.tolist(), second.tolist(), strict=True)}


def as_dict(found):
    first, second, distance = found
    return dict(zip(zip(first.tolist(), second.tolist(), strict=True), distance.tolist(), strict=True))


def test_planted_crops_are_found_and_none_invented_at_100000_hashes():
    fields, want = planted(100_000, 300, 24)
    first, second, distance = cropsearch.crop_pairs(fields[:, 0], cropsearch.window_reader(fields), 36)
    got = set(zip(first.tolist(), second.tolist(), strict=True))
    assert not got - want  # random hashes are about 128 bits apart: nothing else is within 36
    assert len(got) >= 0.97 * len(want)  # candidates need an equal chunk: nearly always, not always
    assert (first < second).all() and (distance <= 24).all()


def test_the_pairs_and_distances_are_those_of_comparing_every_pair():
    fields, _ = planted(300, 40, 30, seed=1)
    exact = brute_force(fields, 36)
    found = as_dict(cropsearch.crop_pairs(fields[:, 0], cropsearch.window_reader(fields), 36))
    assert found.items() <= exact.items() and len(found) >= 0.9 * len(exact) and len(exact) >= 40


def test_queries_give_the_pairs_with_those_rows_and_unusable_rows_are_never_matched():
    fields, _ = planted(2000, 60, 20, seed=2)
    reader = cropsearch.window_reader(fields)
    every = as_dict(cropsearch.crop_pairs(fields[:, 0], reader, 36))
    queries = np.arange(0, 2000, 7)
    asked = as_dict(cropsearch.crop_pairs(fields[:, 0], reader, 36, queries=queries))
    assert asked == {pair: d for pair, d in every.items() if pair[0] % 7 == 0 or pair[1] % 7 == 0} and asked
    usable = np.ones(2000, bool)
    usable[[pair[0] for pair in every][:10]] = False
    kept = as_dict(cropsearch.crop_pairs(fields[:, 0], reader, 36, usable=usable))
    assert kept == {pair: d for pair, d in every.items() if usable[pair[0]] and usable[pair[1]]}


def test_a_search_of_some_rows_finds_what_the_whole_search_finds_of_them():
    # pairs up to 36 bits apart are found only when some chunk is equal: a rerun's lookup of its
    # new rows, and a search of a subset, must cut the chunks as the whole search does (at 40,000
    # rows 15 chunks, at a few hundred 16)
    fields, _ = planted(40_000, 400, 36, seed=6)
    reader = cropsearch.window_reader(fields)
    whole = as_dict(cropsearch.crop_pairs(fields[:, 0], reader, 36))
    assert sum(d >= 30 for d in whole.values()) >= 40
    queries = np.array(sorted({pair[1] for pair in whole}))
    asked = as_dict(cropsearch.crop_pairs(fields[:, 0], reader, 36, queries=queries))
    assert asked == whole
    rows = np.unique(np.concatenate([np.array(list(whole)).ravel(), np.arange(0, 40_000, 50)]))
    part = cropsearch.crop_pairs(fields[rows, 0], cropsearch.window_reader(fields[rows]), 36, layout_rows=40_000)
    assert {(int(rows[a]), int(rows[b])): d for (a, b), d in as_dict(part).items()} == whole


def test_scattered_rows_are_read_in_runs_not_in_one_span_over_the_rows_between():
    fields, _ = planted(20_000, 30, 20, seed=3)
    asked_for = []

    def reader(rows):
        asked_for.append(rows)
        return cropsearch.window_reader(fields)(rows)

    queries = np.arange(5, 20_000, 1000)  # a rerun's few new rows, far apart
    found = as_dict(cropsearch.crop_pairs(fields[:, 0], reader, 36, queries=queries))
    whole = as_dict(cropsearch.crop_pairs(fields[:, 0], cropsearch.window_reader(fields), 36))
    assert found == {pair: d for pair, d in whole.items() if set(pair) & set(queries.tolist())}
    assert all((np.diff(rows) <= cropsearch.GAP_ROWS).all() for rows in asked_for)
    spans = sum(int(rows[-1] - rows[0] + 1) for rows in asked_for)
    assert spans <= 20_000 + len(queries) * 4  # every row once for the other side, the queries alone


@pytest.mark.parametrize("count", [0, 1])
def test_too_few_rows_give_no_pair(count):
    fields = np.zeros((count, WINDOWS, BYTES), np.uint8)
    first, second, distance = cropsearch.crop_pairs(fields[:, 0], cropsearch.window_reader(fields), 36)
    assert len(first) == len(second) == len(distance) == 0
