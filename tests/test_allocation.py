"""allocation: an image stays in its shard row for good; new images go to new shards; a compaction
rewrites only what its keys name (property tests over random histories)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from img2npz.allocation import NO_SOURCE, Line, _mixed, allocate, match, pieces, shard_id
from img2npz.manifests import keys_of, line_keys
from img2npz.sharding import path_hashes, sort_paths

names = st.text(alphabet="abcdefgh/-. é", min_size=1, max_size=10).filter(lambda p: not p.startswith("/"))


def run(tree: dict[str, int], manifests, target=6, low=3, high=12, **compaction):
    """Allocate ``tree`` (path -> mtime, every size 1) given the ``manifests`` on disk (shard -> lines)."""
    paths = sort_paths(tree)
    keys = keys_of(path_hashes(paths), [1] * len(paths), [tree[p] for p in paths])
    existing = {shard: line_keys(lines) for shard, lines in manifests.items()}
    return allocate(paths, keys, existing, target, low, high, **compaction)


def on_disk(allocation, manifests):
    """The manifests after the run: the kept ones and the new ones."""
    return {
        shard: allocation.lines[shard] if shard in allocation.lines else manifests[shard] for shard in allocation.shards
    }


def placed(allocation, paths):
    return {
        path: (allocation.shards[allocation.shard_code[n]], int(allocation.row_of[n])) for n, path in enumerate(paths)
    }


def test_pieces_are_equal_and_near_the_target():
    assert pieces(0, 10, 20) == []
    assert pieces(7, 10, 20) == [(0, 7)]
    assert [b - a for a, b in pieces(25, 10, 20)] == [12, 13]
    assert [b - a for a, b in pieces(100, 10, 12)] == [10] * 10
    assert [b - a for a, b in pieces(30, 1000, 12)] == [10, 10, 10]  # never over max


def test_a_shard_id_is_its_manifest_digest():
    lines = [Line("a", 1, 2), Line("b", 3, 4, "0123456789abcdef:5")]
    assert shard_id(lines) == shard_id(list(lines)) != shard_id(lines[:1]) and len(shard_id(lines)) == 16


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.lists(names, max_size=30, unique=True), st.lists(names, max_size=8, unique=True), st.booleans()),
        min_size=1,
        max_size=6,
    ),
    st.floats(0.0, 1.0),
    st.integers(0, 4),
)
def test_a_history_keeps_every_image_where_it_was_unless_compacted(steps, dropped, small):
    """Each step adds some paths, deletes some, maybe replaces one (new mtime). After each: every
    image is on exactly one line that names it with its key; an image that was placed before and not
    changed keeps its row unless its shard was compacted (then a line copies it from that row); a
    kept manifest is never changed; and the new shards are within the bounds."""
    tree: dict[str, int] = {}
    manifests: dict[str, list[Line]] = {}
    before: dict[str, tuple[str, int]] = {}
    for step, (added, deleted, replace) in enumerate(steps):
        for path in added:
            tree.setdefault(path, step)
        for path in deleted:
            tree.pop(path, None)
        if replace and tree:
            tree[sorted(tree)[0]] = 100 + step
        allocation = run(tree, manifests, compact_dropped=dropped, compact_small=small)
        after = on_disk(allocation, manifests)
        paths = sort_paths(tree)
        now = placed(allocation, paths)
        for path, (shard, row) in now.items():
            assert after[shard][row] == Line(path, 1, tree[path], after[shard][row].source)
        lines = [line for lines in after.values() for line in lines]
        assert {line.path for line in lines} >= set(tree)
        new = set(allocation.new)
        assert new <= set(allocation.shards) == set(after)
        for shard, lines in after.items():
            if shard not in new:
                assert lines == manifests[shard]  # never rewritten
            else:
                assert 0 < len(lines) <= 12
        for path, (shard, row) in now.items():
            old = before.get(path)
            if old is None or old[0] not in manifests or manifests[old[0]][old[1]].key != (path, 1, tree[path]):
                assert shard in new and after[shard][row].source == NO_SOURCE  # decoded
            elif shard in new:
                assert after[shard][row].source == f"{old[0]}:{old[1]}"  # compacted: copied
            else:
                assert (shard, row) == old
        assert set(allocation.removed) == set(manifests) - set(after)
        manifests, before = after, now


def test_small_shards_are_compacted_only_past_the_limit_with_the_new_images():
    tree = {f"a/{n:03d}": 0 for n in range(12)}
    first = run(tree, {}, compact_small=2)
    assert len(first.new) == 2 and first.compaction is None
    manifests = on_disk(first, {})
    for step in range(1, 3):  # two small additions: two small shards, within the limit
        tree[f"b/{step}"] = step
        allocation = run(tree, manifests, compact_small=2)
        assert allocation.compaction is None and allocation.written == {"shards": 1, "decode": 1, "copy": 0}
        manifests = on_disk(allocation, manifests)
    tree["b/3"] = 3
    allocation = run(tree, manifests, compact_small=2)
    assert allocation.compaction.shards == 2 and allocation.compaction.rows == 2
    assert allocation.written == {"shards": 1, "decode": 1, "copy": 2} and len(allocation.shards) == 3
    assert "shards.compact_small = 2" in allocation.compaction.reasons[0]


def test_a_shard_mostly_dropped_is_rewritten_alone():
    tree = {f"a/{n:03d}": 0 for n in range(12)}
    first = run(tree, {})
    gone = first.lines[first.new[0]][:2]
    for line in gone:
        del tree[line.path]
    kept = run(tree, first.lines, compact_dropped=0.4)
    assert kept.compaction is None and kept.written["shards"] == 0  # 2 of 6 dropped: under 0.4
    del tree[first.lines[first.new[0]][2].path]
    allocation = run(tree, first.lines, compact_dropped=0.4)
    assert allocation.compaction.shards == 1 and allocation.compaction.rows == 3
    assert first.new[1] in allocation.shards and first.new[0] in allocation.removed
    assert "more than 0.4" in allocation.compaction.reasons[0]


def test_an_image_back_with_its_old_key_takes_its_old_row():
    tree = {f"a/{n:03d}": 0 for n in range(6)}
    first = run(tree, {})
    del tree["a/002"]
    second = run(tree, first.lines)
    tree["a/002"] = 0  # restored as it was (a backup): the row is still there
    third = run(tree, on_disk(second, first.lines))
    assert third.written["shards"] == 0 and placed(third, sort_paths(tree)) == placed(first, sort_paths(tree))


def test_a_key_matches_its_first_row_even_when_two_keys_mix_to_one_number():
    table = keys_of(np.array([5, 7, 5], np.uint64), [1, 1, 1], [2, 2, 2])  # key 5 on rows 0 and 2
    # a key whose hash is chosen so that it mixes to the same number as row 1's key
    other = keys_of(np.array([7], np.uint64), [3], [4])
    other["hash"] = _mixed(table[1:2]) ^ _mixed(other) ^ np.uint64(7)
    assert _mixed(other)[0] == _mixed(table[1:2])[0]
    table = np.concatenate([table, other])
    wanted = np.concatenate([table[[2, 3, 1]], keys_of(np.array([9], np.uint64), [1], [2])])
    assert match(wanted, table).tolist() == [0, 3, 1, -1]
    assert match(wanted, table[:0]).tolist() == [-1] * 4


def test_a_small_tree_that_grows_under_the_default_bounds_keeps_its_shards():
    """The default target follows a small tree (32 shards), its min does not: 8,000 images in 32
    shards of 250, grown to 20,000, add shards and compact none."""
    from img2npz.sharding import resolve_bounds

    tree = {f"c{n % 10}/{n:06d}.jpg": 1 for n in range(8000)}
    first = run(tree, {}, *resolve_bounds((None, None, None), len(tree)))
    assert len(first.shards) == 32 and first.compaction is None
    manifests = on_disk(first, {})
    tree.update({f"c{n % 10}/{n:06d}.jpg": 1 for n in range(8000, 20000)})
    grown = run(tree, manifests, *resolve_bounds((None, None, None), len(tree)))
    assert grown.compaction is None and set(first.shards) < set(grown.shards) and grown.written["copy"] == 0
