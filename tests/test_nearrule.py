"""nearrule: which rows are near-duplicates, by row hash or as crops, and which are never matched."""

import dataclasses

import numpy as np
from PIL import Image

from img2npz import cropsearch, nearrule
from img2npz.fieldhash import BYTES, WINDOWS
from img2npz.nearrule import HashColumns, NearRule

COUNT = 16


def flipped(hash_: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    bits = np.unpackbits(hash_)
    bits[rng.choice(bits.size, count, replace=False)] ^= 1
    return np.packbits(bits)


def columns_of_planted_pairs() -> HashColumns:
    """Random rows (about 128 bits apart, colours far apart) with planted pairs:

    0-1 row hashes 5 bits apart; 2-3, 4-5, 6-7: 3's (5's, 7's) whole field 10 bits from a window of
    2's (4's, 6's), but 5's colour is another and 6's field is of low quality; 8-9 row hashes 5
    bits apart, 8's hash of low quality; 10-11 the same hash and colour, both of low quality;
    12-13 both a row-hash pair (3 bits) and a crop pair (20 bits)."""
    rng = np.random.default_rng(4)
    hashes = rng.integers(0, 256, (COUNT, 32), dtype=np.uint8)
    colours = (np.arange(COUNT)[:, None] * [13, 0, 0] % 256 + [0, 100, 200]).astype(np.uint8)
    fields = rng.integers(0, 256, (COUNT, WINDOWS, BYTES), dtype=np.uint8)
    quality = np.full(COUNT, 80, np.uint8)
    field_quality = np.full(COUNT, 60, np.uint8)
    for one, other, apart in ((0, 1, 5), (8, 9, 5), (12, 13, 3)):
        hashes[other], colours[other] = flipped(hashes[one], apart, rng), colours[one]
    for one, other, apart in ((2, 3, 10), (4, 5, 10), (6, 7, 10), (12, 13, 20)):
        fields[other, 0] = flipped(fields[one, 7], apart, rng)
        colours[other] = colours[one]
    colours[5] = [250, 10, 10]
    field_quality[6] = 10
    quality[8] = 5
    hashes[11], colours[11] = hashes[10], colours[10]
    quality[10] = quality[11] = 0
    return HashColumns(hashes, colours, quality, field_quality, cropsearch.window_reader(fields))


def found(rule: NearRule, columns: HashColumns, queries=None) -> dict:
    first, second, distance = nearrule.pairs(rule, columns, 1, queries)
    assert (first < second).all()
    return dict(zip(zip(first.tolist(), second.tolist(), strict=True), distance.tolist(), strict=True))


def test_row_hash_pairs_crops_and_the_quality_floors():
    columns = columns_of_planted_pairs()
    with_crops = found(NearRule(24, 36, min_quality=20, min_field_quality=40), columns)
    # 5's colour is another, 6's field is of low quality, 8's hash is: none of them is matched;
    # the copies of low quality are; a pair of both kinds keeps its row-hash distance
    assert with_crops == {(0, 1): 5, (2, 3): 10, (10, 11): 0, (12, 13): 3}
    assert found(NearRule(24, None, 20, 40), columns) == {(0, 1): 5, (10, 11): 0, (12, 13): 3}
    no_floors = {(0, 1): 5, (2, 3): 10, (6, 7): 10, (8, 9): 5, (10, 11): 0, (12, 13): 3}
    assert found(NearRule(24, 36, 0, 0), columns) == no_floors
    assert found(NearRule(24, 8, 20, 40), columns) == {(0, 1): 5, (10, 11): 0, (12, 13): 3}  # 10 bits > 8


def test_crop_pairs_whose_rows_disagree_are_dropped_and_row_hash_pairs_kept():
    columns = columns_of_planted_pairs()
    rule = NearRule(24, 36, min_quality=20, min_field_quality=40)
    rows = np.random.default_rng(7).integers(0, 256, (COUNT, 64, 64, 3), dtype=np.uint8)  # noise: no row agrees
    checked = dataclasses.replace(
        columns, sizes=np.full((COUNT, 2), 64), pixels=lambda asked: rows[asked], placement=((64, 64), "center-crop")
    )
    assert found(rule, checked) == {(0, 1): 5, (10, 11): 0, (12, 13): 3}  # 2-3, a crop pair, is gone
    # 2 a smooth picture, 3 its window 7 (95% of each side, from the top left), as a crop would be
    smooth = Image.fromarray(rows[2, :8, :8]).resize((64, 64), Image.Resampling.BICUBIC)
    rows[2] = np.asarray(smooth)
    rows[3] = np.asarray(smooth.crop((0, 0, 60.8, 60.8)).resize((64, 64), Image.Resampling.BICUBIC))
    assert found(rule, checked)[(2, 3)] == 10


def test_queries_give_the_pairs_of_those_rows_and_a_subset_its_own_rows():
    columns = columns_of_planted_pairs()
    rule = NearRule(24, 36, 20, 40)
    every = found(rule, columns)
    queries = np.array([1, 3, 9, 12])
    assert found(rule, columns, queries) == {pair: d for pair, d in every.items() if set(pair) & {1, 3, 9, 12}}
    rows = np.array([2, 3, 5, 12, 13])
    part = columns.subset(rows)
    assert np.array_equal(part.wholes(), columns.wholes()[rows])
    assert found(rule, part) == {(0, 1): 10, (3, 4): 3}  # rows 2-3 and 12-13, numbered in the subset


def test_a_set_of_copies_is_as_usable_as_its_best_hash_whichever_row_is_looked_up():
    # rows 0 and 1 the same hash and colour, 0's hash of low quality; 2 is 5 bits from both
    columns = columns_of_planted_pairs()
    columns.hashes[1], columns.colours[1] = columns.hashes[0], columns.colours[0]
    columns.hashes[2], columns.colours[2] = flipped(columns.hashes[0], 5, np.random.default_rng(1)), columns.colours[0]
    columns.quality[0] = 5
    rule = NearRule(24, 36, 20, 40)
    every = found(rule, columns)
    assert every.keys() >= {(0, 1), (0, 2)}
    # a lookup of row 2 meets both copies (the whole search joins the set through its first)
    assert found(rule, columns, np.array([2])) == {(0, 2): 5, (1, 2): 5}


def test_the_key_holds_what_a_rerun_keeps_pairs_by(monkeypatch):
    before = NearRule(24, 36, 20, 40).key()
    monkeypatch.setattr(nearrule, "CROP_COLOUR_TOLERANCE", 0.05)
    assert NearRule(24, 36, 20, 40).key() != before
    tolerance = NearRule(24, 36, 20, 40).key()
    monkeypatch.setattr(nearrule, "SCORES_VERSION", nearrule.SCORES_VERSION + 1)
    assert NearRule(24, 36, 20, 40).key() not in (before, tolerance) and NearRule(24).key() == 24


def test_each_rule_has_its_own_key_and_the_old_rule_its_old_one():
    rules = [NearRule(24), NearRule(24, 36), NearRule(24, 36, 20), NearRule(24, 36, 20, 40), NearRule(24, None, 20)]
    rules += [NearRule(16, 36, 20, 40), NearRule(24, 40, 20, 40), NearRule(24, 36, 100, 100), NearRule(24, 96, 0, 100)]
    keys = [rule.key() for rule in rules]
    assert len(set(keys)) == len(keys) and NearRule(24).key() == 24  # a catalogue's near_bits of old
    assert max(keys) < 2**63
