import json
import os
import random

import numpy as np
import pytest
from conftest import build_dataset, save
from PIL import Image

from img2npz.changes import Catalogue, ShardRecord, compare, read_shard_table, write_shard_table
from img2npz.config import ConfigError, validate_config
from img2npz.contract import ShardStats
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


def test_change_rows_count_added_removed_changed_and_rebuilt_shards():
    prints = np.arange(8, dtype=np.uint64).reshape(4, 2)
    first = Catalogue("a", ["c/1", "c/2", "d/3", "d/4"], ["c", "c", "d", "d"], ["t"] * 4, prints, {"s1": 1, "s2": 2})
    first = compare(None, first)
    assert ("added", "c", "t", 2) in first.rows and ("shards rebuilt", "", "", 2) in first.rows
    changed = prints.copy()
    changed[2] += np.uint64(1)  # d/3's pixels
    second = Catalogue(
        "b", ["c/1", "d/3", "d/4", "e/5"], ["c", "d", "d", "e"], ["t"] * 4, changed[[0, 2, 3, 1]], {"s1": 1, "s2": 3}
    )
    second.fingerprints[3] = [99, 99]
    work = {"s1": ShardRecord(1, 0, 7), "s2": ShardRecord(3, 5, 2)}  # s1 was not rebuilt: not counted
    second = compare(first, second, work)
    assert second.rows == [
        ("added", "e", "t", 1),
        ("removed", "c", "t", 1),
        ("changed", "d", "t", 1),
        ("shards rebuilt", "", "", 1),
        ("shards in total", "", "", 2),
        ("images decoded", "", "", 2),
        ("images reused", "", "", 5),
    ]
    same = compare(second, Catalogue("b", [], [], [], np.zeros((0, 2), np.uint64), {}))
    assert same.rows == second.rows  # same dataset bytes (a validate-only rerun): the same report


def test_the_merge_notes_each_shard_npz_mtime_and_work_for_the_change_report(tmp_path):
    for name, mtime in (("b", 2_000_000_123), ("a", 1_000_000_456)):
        (tmp_path / f"{name}.npz").write_bytes(b"x")
        os.utime(tmp_path / f"{name}.npz", ns=(mtime, mtime))
    stats = {"a": ShardStats(3, 1, 2, 2, "a/1", "a/4"), "b": ShardStats(5, 0, 0, 5, "b/1", "b/5")}
    write_shard_table([str(tmp_path / "b.npz"), str(tmp_path / "a.npz")], stats, tmp_path / "t.tsv")
    assert read_shard_table(tmp_path / "t.tsv") == {
        "a": ShardRecord(1_000_000_456, 2, 2),
        "b": ShardRecord(2_000_000_123, 0, 5),
    }


def test_catalogue_round_trips(tmp_path):
    catalogue = Catalogue(
        "sha",
        ["x", "y\udcff"],
        ["", "k"],
        ["", ""],
        np.ones((2, 2), np.uint64),
        {"s": 5},
        [("added", "", "", 2)],
        {"added": ["x"]},
    )
    catalogue.save(tmp_path / "c.npz")
    loaded = Catalogue.load(tmp_path / "c.npz")
    assert (loaded.paths, loaded.classes, loaded.splits, loaded.shards) == (
        ["x", "y\udcff"],
        ["", "k"],
        ["", ""],
        {"s": 5},
    )
    assert loaded.rows == [("added", "", "", 2)] and loaded.examples == {"added": ["x"]}
    assert Catalogue.load(tmp_path / "missing.npz") is None


def noise(seed):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (10, 12, 3), dtype=np.uint8))


def test_merged_split_key_and_dataset_selection(tmp_path):
    torch = pytest.importorskip("torch")
    from img2npz import NPZDataset, ShardedNPZDataset

    for i in range(40):
        save(noise(i), tmp_path / "src" / ("a" if i % 2 else "b") / f"{i:02d}.png")
    out, _, meta, _ = build_dataset(tmp_path, 6, "d", splits=FRACTIONS)
    with np.load(out) as data:
        assert data["split"].dtype == np.int8 and data["splits"].tolist() == list(FRACTIONS)
        expected = assign(data["paths"].tolist(), FRACTIONS)
        assert np.array_equal(data["split"], expected)
        images = data["images"]
    assert json.loads(meta.to_json())["splits"]["counts"] == {
        name: int((expected == number).sum()) for number, name in enumerate(FRACTIONS)
    }
    shards = sorted(p for p in (tmp_path / "d").glob("*.npz") if p.name != "dataset.npz")
    for number, name in enumerate(FRACTIONS):
        chosen = NPZDataset(out, split=name)
        rows = np.flatnonzero(expected == number)
        assert len(chosen) == len(rows) and chosen.split == name
        assert all(
            torch.equal(chosen[i][0], torch.from_numpy(images[row]).permute(2, 0, 1)) for i, row in enumerate(rows)
        )
        assert isinstance(chosen._array("images"), np.memmap)  # rows index the mapped file, no copy
        sharded = ShardedNPZDataset(
            tmp_path / "d", classes=tmp_path / "d" / "classes.tsv", files=shards, split=name, splits=FRACTIONS
        )
        assert sharded.samples == chosen.samples
    with pytest.raises(ValueError, match="no split 'holdout'"):
        NPZDataset(out, split="holdout")
    plain, _, _, _ = build_dataset(tmp_path, 6, "plain")
    with np.load(plain) as data:
        assert "split" not in data  # no splits configured: the file keeps its five keys
    with pytest.raises(ValueError, match="built without splits"):
        NPZDataset(plain, split="train")


def test_a_duplicate_in_two_splits_fails_validation(tmp_path):
    from test_validate import run

    from img2npz.validate import ValidationFailed

    names = [f"a/{i:03d}.png" for i in range(200)]
    split = assign(names, FRACTIONS).tolist()
    first = names[split.index(0)]
    second = names[split.index(1)]  # a train path and a val path
    for i in range(12):
        save(noise(100 + i), tmp_path / "src" / "a" / f"x{i:02d}.png")
    save(noise(7), tmp_path / "src" / first)
    save(noise(7), tmp_path / "src" / second)  # the same pixels under a val name
    out, fail, _, _ = build_dataset(tmp_path, 6, "d", splits=FRACTIONS)
    with pytest.raises(ValidationFailed, match="split_duplicates") as caught:
        run(tmp_path, out, fail)
    assert first in str(caught.value) and second in str(caught.value)
