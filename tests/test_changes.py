"""changes: the catalogue of the last checked dataset, the change rows against it, the merge's shard table."""

import os

import numpy as np

from img2npz.changes import Catalogue, ShardRecord, compare, read_shard_table, write_shard_table
from img2npz.contract import ShardStats


def test_change_rows_count_added_removed_changed_and_written_shards():
    prints = np.arange(8, dtype=np.uint64).reshape(4, 2)
    first = Catalogue.of("a", ["c/1", "c/2", "d/3", "d/4"], ["c", "c", "d", "d"], ["t"] * 4, prints, {"s1": 1, "s2": 2})
    first = compare(None, first)
    assert ("added", "c", "t", 2) in first.rows and ("shards written", "", "", 2) in first.rows
    changed = prints.copy()
    changed[2] += np.uint64(1)  # d/3's pixels
    second = Catalogue.of(
        "b", ["c/1", "d/3", "d/4", "e/5"], ["c", "d", "d", "e"], ["t"] * 4, changed[[0, 2, 3, 1]], {"s1": 1, "s2": 3}
    )
    second.fingerprints[3] = [99, 99]
    work = {"s1": ShardRecord(1, 0, 7), "s2": ShardRecord(3, 5, 2)}  # s1 was not written: not counted
    second = compare(first, second, work)
    assert second.rows == [
        ("added", "e", "t", 1),
        ("removed", "c", "t", 1),
        ("changed", "d", "t", 1),
        ("shards written", "", "", 1),
        ("shards in total", "", "", 2),
        ("images decoded", "", "", 2),
        ("rows copied", "", "", 5),
    ]
    same = compare(second, Catalogue.of("b", [], [], [], np.zeros((0, 2), np.uint64), {"s1": 1, "s2": 3}))
    assert same.rows == second.rows  # same dataset bytes (a validate-only rerun): the same report
    compacted = compare(second, Catalogue.of("b", [], [], [], np.zeros((0, 2), np.uint64), {"s3": 4}))
    assert ("shards written", "", "", 1) in compacted.rows  # the same bytes from other shards: news


def test_the_merge_notes_each_shard_npz_mtime_and_work_for_the_change_report(tmp_path):
    for name, mtime in (("b", 2_000_000_123), ("a", 1_000_000_456)):
        (tmp_path / f"{name}.npz").write_bytes(b"x")
        os.utime(tmp_path / f"{name}.npz", ns=(mtime, mtime))
    stats = {"a": ShardStats(3, 1, 2, 2), "b": ShardStats(5, 0, 0, 5)}
    write_shard_table([str(tmp_path / "b.npz"), str(tmp_path / "a.npz")], stats, tmp_path / "t.tsv")
    assert read_shard_table(tmp_path / "t.tsv") == {
        "a": ShardRecord(1_000_000_456, 2, 2),
        "b": ShardRecord(2_000_000_123, 0, 5),
    }


def test_catalogue_round_trips(tmp_path):
    catalogue = Catalogue.of(
        "sha",
        ["x", "y\udcff"],
        ["", "k"],
        ["", ""],
        np.ones((2, 2), np.uint64),
        {"s": 5},
        [("added", "", "", 2)],
        {"added": ["x"]},
    )
    catalogue.verified = {"s": 5, "t": 7}
    catalogue.save(tmp_path / "c.npz")
    loaded = Catalogue.load(tmp_path / "c.npz")
    per_image = [
        (path, loaded.class_names[label], loaded.split_names[split])
        for path, label, split in zip(loaded.iter_paths(), loaded.labels, loaded.splits, strict=True)
    ]
    assert per_image == [("x", "", ""), ("y\udcff", "k", "")] and loaded.shards == {"s": 5}
    assert loaded.verified == {"s": 5, "t": 7} and loaded.passed
    catalogue.passed = False  # a failed validation's: the next run takes none of its rows as verified
    catalogue.save(tmp_path / "c.npz")
    assert not Catalogue.load(tmp_path / "c.npz").passed
    assert loaded.rows == [("added", "", "", 2)] and loaded.examples == {"added": ["x"]}
    assert Catalogue.load(tmp_path / "missing.npz") is None


def test_a_class_with_a_tab_in_its_name_survives_the_catalogue(tmp_path):
    rows = [("added", "a\tb", "", 1), ("shards written", "", "", 1)]
    catalogue = Catalogue.of(
        "s", ["a\tb/1.png"], ["a\tb"], [""], np.ones((1, 2), np.uint64), {}, rows, {"added": ["a\tb/1.png"]}
    )
    catalogue.save(tmp_path / "c.npz")
    loaded = Catalogue.load(tmp_path / "c.npz")
    assert loaded.rows == rows and loaded.examples == {"added": ["a\tb/1.png"]}
    assert loaded.class_names[loaded.labels[0]] == "a\tb"


def test_the_comparison_matches_rows_by_path_in_the_index_order():
    """``cat/x`` sorts before ``cat-big/x`` (by components); additions and removals interleave."""
    prints = np.zeros((4, 2), np.uint64)
    before = Catalogue.of(
        "a", ["cat/1", "cat/3", "cat-big/1", "dog/2"], ["cat", "cat", "cat-big", "dog"], [""] * 4, prints, {}
    )
    after = Catalogue.of(
        "b", ["cat/2", "cat/3", "cat-big/0", "cat-big/1"], ["cat", "cat", "cat-big", "cat-big"], [""] * 4, prints, {}
    )
    rows = compare(before, after).rows
    assert rows[:4] == [
        ("added", "cat", "", 1),
        ("added", "cat-big", "", 1),
        ("removed", "cat", "", 1),
        ("removed", "dog", "", 1),
    ]
    assert after.examples == {"added": ["cat/2", "cat-big/0"], "removed": ["cat/1", "dog/2"]}


def test_a_large_catalogue_round_trips_through_chunked_reading(tmp_path):
    paths = [f"class{n % 7}/{'x' * (n % 50)}{n:06d}.jpg" for n in range(30000)]
    paths.sort(key=lambda path: path.split("/"))
    catalogue = Catalogue.of(
        "s", paths, [p.split("/")[0] for p in paths], [""] * len(paths), np.zeros((30000, 2), np.uint64), {}
    )
    catalogue.save(tmp_path / "c.npz")
    loaded = Catalogue.load(tmp_path / "c.npz")
    assert list(loaded.iter_paths()) == paths
    assert [loaded.class_names[label] for label in loaded.labels] == [p.split("/")[0] for p in paths]


def test_a_compaction_is_a_change_row_and_says_why():
    prints = np.zeros((1, 2), np.uint64)
    first = compare(None, Catalogue.of("a", ["c/1"], ["c"], [""], prints, {"s1": 1}))
    compaction = {"reasons": ["9 shards of fewer than 500 rows"], "shards": 9, "rows": 1234, "into": 2}
    second = compare(first, Catalogue.of("b", ["c/1"], ["c"], [""], prints + 1, {"s2": 2}), None, compaction)
    assert ("shards compacted", "", "", 9) in second.rows
    assert second.examples["compaction"] == [
        "9 shards rewritten into 2, copying 1,234 rows, because 9 shards of fewer than 500 rows"
    ]
    assert "shards compacted" not in [row[0] for row in compare(None, first).rows]


def test_a_class_or_split_renamed_or_moved_is_a_change_whatever_the_codes():
    """Rows are compared by their names, not their codes into each catalogue's name lists; the row
    matching a caller passes in gives what compare finds itself."""
    from img2npz.changes import previous_rows

    prints = np.arange(10, dtype=np.uint64).reshape(5, 2)
    paths = ["a/1", "a/2", "b/1", "b/2", "c/1"]
    before = Catalogue.of("a", paths, ["a", "a", "b", "b", "c"], ["t", "t", "t", "v", "t"], prints, {})
    after = Catalogue.of("b", paths[1:], ["a", "c", "b", "c"], ["t", "t", "t", "t"], prints[1:], {})
    assert after.class_names == ["a", "b", "c"] and before.split_names == ["t", "v"]  # other codes for "t"
    rows = compare(before, after).rows
    assert rows[:4] == [
        ("removed", "a", "t", 1),
        ("changed", "b", "t", 1),
        ("changed", "c", "t", 1),
        ("shards written", "", "", 0),
    ]
    assert after.examples == {"removed": ["a/1"], "changed": ["b/1", "b/2"]}  # b/1 moved class, b/2 split
    old_of = previous_rows(before, after.path_keys)
    assert old_of.tolist() == [1, 2, 3, 4] and compare(before, after, old_of=old_of).rows == rows
    after.split_names[0] = "u"  # a split renamed: every row in it changed
    assert ("changed", "a", "u", 1) in compare(before, after, old_of=old_of).rows
