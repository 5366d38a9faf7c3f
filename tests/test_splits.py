"""splits: fixed by the group key, stable under additions, in proportion per class."""

import random

import numpy as np
import pytest
from PIL import Image

from img2npz import splits
from img2npz.config import ConfigError, validate_config
from img2npz.splits import assign, group_function

FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}


def paths(count, seed=0, classes=("cat", "dog", "eel")):
    rng = random.Random(seed)
    return [f"{rng.choice(classes)}/{rng.getrandbits(48):012x}.jpg" for _ in range(count)]


def test_adding_images_never_moves_an_existing_one():
    old = paths(10_000)
    new = old + paths(1_000, seed=1)
    random.Random(2).shuffle(new)
    before = dict(zip(old, assign(old, FRACTIONS).tolist(), strict=True))
    after = dict(zip(new, assign(new, FRACTIONS).tolist(), strict=True))
    assert all(after[path] == split for path, split in before.items())
    removed = old[::3]
    assert dict(zip(removed, assign(removed, FRACTIONS).tolist(), strict=True)) == {p: before[p] for p in removed}


def test_fractions_hold_within_one_percent_overall_and_per_class():
    many = paths(30_000, seed=3)
    split = assign(many, FRACTIONS)
    shares = np.bincount(split, minlength=3) / len(many)
    assert np.abs(shares - list(FRACTIONS.values())).max() < 0.01
    for name in ("cat", "dog", "eel"):  # about 10,000 a class: stratified within the binomial noise
        in_class = split[[p.startswith(f"{name}/") for p in many]]
        shares = np.bincount(in_class, minlength=3) / len(in_class)
        assert np.abs(shares - list(FRACTIONS.values())).max() < 0.015, name


@pytest.mark.parametrize(
    ("group_by", "group_of"),
    [
        ("parent", lambda path: path.rsplit("/", 1)[0]),
        (r"/(subject\d+)_", lambda path: path.split("/")[1].split("_")[0]),
    ],
)
def test_group_by_keeps_every_group_in_one_split(group_by, group_of):
    rng = random.Random(4)
    tree = [
        f"{rng.choice(['a', 'b'])}/subject{s:03d}_{i}.png" if group_by != "parent" else f"c/subject{s:03d}/{i}.png"
        for s in range(300)
        for i in range(rng.randint(1, 6))
    ]
    split = assign(tree, FRACTIONS, group_by)
    seen = {}
    for path, where in zip(tree, split.tolist(), strict=True):
        assert seen.setdefault(group_of(path), where) == where, path
    assert len(set(seen.values())) == 3  # the groups themselves spread over every split


def test_a_path_the_regex_misses_is_its_own_group():
    assert group_function(r"(subject\d+)")("other/x.png") == "other/x.png"


def test_bad_split_config_names_the_key():
    with pytest.raises(ConfigError, match=r"'splits'.*add up to 1\.1"):
        validate_config({"splits": {"train": 0.9, "val": 0.2}})
    with pytest.raises(ConfigError, match=r"'group_by'.*capturing group"):
        validate_config({"group_by": "subject"})
    assert validate_config({"splits": "{train: 0.5, test: 0.5}"})["splits"] == {"train": 0.5, "test": 0.5}


def noise(seed):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (10, 12, 3), dtype=np.uint8))


def test_near_duplicate_pairs_join_groups_under_the_smallest_value():
    tree = [f"p/{n:03d}.png" for n in range(300)]
    alone = assign(tree, FRACTIONS)
    # chains of pairs (0-1, 1-2) and a pair inside a folder group: each set shares one split
    first, second = np.array([0, 1, 10, 40]), np.array([1, 2, 11, 200])
    joined_split = assign(tree, FRACTIONS, "path", (first, second))
    for rows in ([0, 1, 2], [10, 11], [40, 200]):
        values = splits.key_values([tree[r] for r in rows])
        assert set(joined_split[rows].tolist()) == {alone[rows[int(np.argmin(values))]]}, rows
    untouched = np.setdiff1d(np.arange(300), [0, 1, 2, 10, 11, 40, 200])
    assert np.array_equal(joined_split[untouched], alone[untouched])  # a picture with no copy never moves
    by_folder = [f"f{n // 3}/{n}.png" for n in range(30)]  # groups of three, one pair links f0 and f5
    together = assign(by_folder, FRACTIONS, "parent", (np.array([0]), np.array([15])))
    assert len(set(together[[0, 1, 2, 15, 16, 17]].tolist())) == 1
