"""allocation: an image stays in its shard row for good; new images go to new shards; a compaction
rewrites only what its keys name (property tests over random histories)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from img2npz.allocation import NO_SOURCE, Line, allocate, pieces, shard_id
from img2npz.sharding import sort_paths

names = st.text(alphabet="abcdefgh/-. é", min_size=1, max_size=10).filter(lambda p: not p.startswith("/"))


def run(tree: dict[str, int], existing, target=6, low=3, high=12, **compaction):
    paths = sort_paths(tree)
    return allocate(paths, [1] * len(paths), [tree[p] for p in paths], existing, target, low, high, **compaction)


def placed(allocation, paths):
    return {path: (allocation.shard_of[n], int(allocation.row_of[n])) for n, path in enumerate(paths)}


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
        paths = sort_paths(tree)
        now = placed(allocation, paths)
        for path, (shard, row) in now.items():
            assert allocation.manifests[shard][row] == Line(
                path, 1, tree[path], allocation.manifests[shard][row].source
            )
        lines = [line for lines in allocation.manifests.values() for line in lines]
        assert {line.path for line in lines} >= set(tree)
        new = set(allocation.new)
        for shard, lines in allocation.manifests.items():
            if shard not in new:
                assert lines == manifests[shard]  # never rewritten
            else:
                assert 0 < len(lines) <= 12
        for path, (shard, row) in now.items():
            old = before.get(path)
            if old is None or old[0] not in manifests or manifests[old[0]][old[1]].key != (path, 1, tree[path]):
                assert shard in new and allocation.manifests[shard][row].source == NO_SOURCE  # decoded
            elif shard in new:
                assert allocation.manifests[shard][row].source == f"{old[0]}:{old[1]}"  # compacted: copied
            else:
                assert (shard, row) == old
        assert set(allocation.removed) == set(manifests) - set(allocation.manifests)
        manifests, before = allocation.manifests, now


def test_small_shards_are_compacted_only_past_the_limit_with_the_new_images():
    tree = {f"a/{n:03d}": 0 for n in range(12)}
    first = run(tree, {}, compact_small=2)
    assert len(first.new) == 2 and first.compaction is None
    manifests = first.manifests
    for step in range(1, 3):  # two small additions: two small shards, within the limit
        tree[f"b/{step}"] = step
        allocation = run(tree, manifests, compact_small=2)
        assert allocation.compaction is None and allocation.written == {"shards": 1, "decode": 1, "copy": 0}
        manifests = allocation.manifests
    tree["b/3"] = 3
    allocation = run(tree, manifests, compact_small=2)
    assert allocation.compaction.shards == 2 and allocation.compaction.rows == 2
    assert allocation.written == {"shards": 1, "decode": 1, "copy": 2} and len(allocation.manifests) == 3
    assert "shards.compact_small = 2" in allocation.compaction.reasons[0]


def test_a_shard_mostly_dropped_is_rewritten_alone():
    tree = {f"a/{n:03d}": 0 for n in range(12)}
    first = run(tree, {})
    gone = first.manifests[first.new[0]][:2]
    for line in gone:
        del tree[line.path]
    kept = run(tree, first.manifests, compact_dropped=0.4)
    assert kept.compaction is None and kept.written["shards"] == 0  # 2 of 6 dropped: under 0.4
    del tree[first.manifests[first.new[0]][2].path]
    allocation = run(tree, first.manifests, compact_dropped=0.4)
    assert allocation.compaction.shards == 1 and allocation.compaction.rows == 3
    assert first.new[1] in allocation.manifests and first.new[0] in allocation.removed
    assert "more than 0.4" in allocation.compaction.reasons[0]


def test_an_image_back_with_its_old_key_takes_its_old_row():
    tree = {f"a/{n:03d}": 0 for n in range(6)}
    first = run(tree, {})
    del tree["a/002"]
    second = run(tree, first.manifests)
    tree["a/002"] = 0  # restored as it was (a backup): the row is still there
    third = run(tree, second.manifests)
    assert third.written["shards"] == 0 and placed(third, sort_paths(tree)) == placed(first, sort_paths(tree))
