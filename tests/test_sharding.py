"""sharding: content-defined cuts keep shards stable under additions (property tests)."""

import itertools
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from img2npz.contract import in_index_order
from img2npz.sharding import assign_shards, path_hash, shard_id, sort_paths

path_lists = st.lists(
    st.text(alphabet="abcdefgh/-. é", min_size=1, max_size=12).filter(lambda p: not p.startswith("/")),
    min_size=0,
    max_size=300,
    unique=True,
).map(sort_paths)


def members(paths, shards):
    return {shard.id: tuple(paths[shard.start : shard.stop]) for shard in shards}


def test_component_order_puts_folder_before_its_dashed_sibling():
    assert sort_paths(["cat-big/a.jpg", "cat/b.jpg", "cat/a/c.jpg"]) == ["cat/a/c.jpg", "cat/b.jpg", "cat-big/a.jpg"]


def test_hash_is_fixed_across_processes():
    # A constant: Python's hash() would change with PYTHONHASHSEED, blake2b does not.
    assert path_hash("cat/a.jpg") == path_hash("cat/a.jpg")
    assert shard_id("cat/a.jpg") == shard_id("cat/a.jpg") != shard_id("cat/b.jpg")
    assert len(shard_id("x")) == 16


@settings(max_examples=200, deadline=None)
@given(path_lists, st.integers(1, 20), st.integers(1, 8), st.integers(0, 40))
def test_every_path_in_exactly_one_shard_within_bounds(paths, target, low, extra):
    high = max(target, low) + extra
    low = min(low, target)
    shards = assign_shards(paths, target, low, high)
    covered = [i for shard in shards for i in range(shard.start, shard.stop)]
    assert covered == list(range(len(paths)))
    assert len({shard.id for shard in shards}) == len(shards)
    for shard in shards:
        assert 0 < len(shard) <= high
    for shard in shards[:-1]:
        assert len(shard) >= min(low, high // 2)
    assert assign_shards(paths, target, low, high) == shards


@settings(max_examples=300, deadline=None)
@given(path_lists, st.text(alphabet="abcdefgh/-. é", min_size=1, max_size=12), st.integers(1, 10), st.integers(1, 4))
def test_inserting_or_deleting_one_path_changes_at_most_two_shards(paths, new, target, low):
    low = min(low, target)
    if new in paths or new.startswith("/"):
        return
    grown = sort_paths([*paths, new])
    before = members(paths, assign_shards(paths, target, low, None))
    after = members(grown, assign_shards(grown, target, low, None))
    changed_after = {key for key, value in after.items() if before.get(key) != value}
    changed_before = {key for key, value in before.items() if after.get(key) != value}
    assert len(changed_after) <= 2
    assert len(changed_before) <= 2


def test_shard_id_comes_from_the_last_path():
    paths = sort_paths([f"c{i // 10}/img{i:03d}.jpg" for i in range(200)])
    for shard in assign_shards(paths, 10, 2, 40):
        assert shard.id == shard_id(paths[shard.stop - 1])


def test_over_long_runs_are_split_evenly():
    paths = [f"x{i:04d}" for i in range(1000)]
    shards = assign_shards(paths, 10**9, 1, 300)
    assert [len(s) for s in shards] == [250, 250, 250, 250]


@dataclass
class Piece:
    first_path: str
    rows: list


@settings(max_examples=200, deadline=None)
@given(path_lists, st.integers(1, 15), st.integers(1, 5), st.integers(0, 30), st.randoms(), st.integers(0, 4))
def test_merged_row_order_never_depends_on_the_shard_layout(paths, target, low, extra, rng, fail_every):
    low = min(low, target)
    shards = assign_shards(paths, target, low, target + extra)
    keep = [fail_every == 0 or i % (fail_every + 1) for i in range(len(paths))]
    pieces = [
        Piece(paths[s.start], [p for p, k in zip(paths[s.start : s.stop], keep[s.start : s.stop], strict=True) if k])
        for s in shards
    ]
    rng.shuffle(pieces)
    merged = [row for piece in in_index_order(pieces) for row in piece.rows]
    assert merged == [p for p, k in zip(paths, keep, strict=True) if k]


def test_the_default_target_grows_with_the_tree_by_factors_of_four():
    from img2npz.sharding import AUTO_TARGETS, auto_target

    assert [auto_target(n) for n in (1, 299_999, 300_000, 2_999_999, 3_000_000, 10**8)] == [
        1000,
        1000,
        4000,
        4000,
        16000,
        16000,
    ]
    targets = [target for _, target in AUTO_TARGETS]
    assert all(larger % smaller == 0 for smaller, larger in itertools.pairwise(targets))


def test_a_larger_tier_only_drops_cuts():
    # a hash divisible by the larger target is divisible by the smaller: the larger tier's shards are
    # unions of the smaller's (before the min and max bounds), so a tree that crosses a threshold
    # re-cuts nothing, it merges
    paths = sort_paths([f"c{i % 37}/img{i:06d}.jpg" for i in range(60_000)])
    small = {shard.stop for shard in assign_shards(paths, 1000)}
    large = {shard.stop for shard in assign_shards(paths, 4000)}
    assert large <= small and len(large) < len(small)


def test_bounds_left_null_are_resolved_by_the_tree_size():
    from img2npz.sharding import resolve_bounds

    assert resolve_bounds((None, None, None), 1000) == (1000, 100, 2000)
    assert resolve_bounds((None, None, None), 10**6) == (4000, 400, 8000)
    assert resolve_bounds((500, None, None), 10**6) == (500, 50, 1000)  # a configured target is kept
    assert resolve_bounds((None, None, 3000), 10**6) == (3000, 300, 3000)  # the derived one within max
    assert resolve_bounds((None, 2000, None), 10) == (2000, 2000, 4000)  # and within min
    assert resolve_bounds((None, 7, 9), 10**6) == (9, 7, 9)
