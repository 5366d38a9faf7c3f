"""sharding: the index order, the fixed path hash, and shard sizes by the tree's size."""

import numpy as np

from img2npz.sharding import AUTO_TARGETS, auto_target, path_hash, path_hashes, resolve_bounds, sort_paths


def test_component_order_puts_folder_before_its_dashed_sibling():
    assert sort_paths(["cat-big/a.jpg", "cat/b.jpg", "cat/a/c.jpg"]) == ["cat/a/c.jpg", "cat/b.jpg", "cat-big/a.jpg"]


def test_hash_is_fixed_across_processes_and_the_array_form_agrees():
    # A constant: Python's hash() would change with PYTHONHASHSEED, blake2b does not.
    assert path_hash("cat/a.jpg") == 0x4DCCD668EAF1D732
    paths = ["cat/a.jpg", "dog/é.png", "x"]
    assert path_hashes(paths).tolist() == [path_hash(p) for p in paths]
    assert path_hashes([]).dtype == np.uint64


def test_the_default_target_grows_with_the_tree():
    assert [auto_target(n) for n in (1, 299_999, 300_000, 2_999_999, 3_000_000, 10**8)] == [
        250,
        1000,
        4000,
        4000,
        16000,
        16000,
    ]
    assert AUTO_TARGETS[-1][0] is None
    # a small tree is still cut into 32 jobs, of at least 250 images
    assert [auto_target(n) for n in (8_000, 20_000, 31_999, 32_000, 100_000)] == [250, 625, 1000, 1000, 1000]


def test_bounds_left_null_are_resolved_by_the_tree_size():
    assert resolve_bounds((None, None, None), 1000) == (250, 125, 500)
    assert resolve_bounds((None, None, None), 20_000) == (625, 125, 1250)  # min stays as the tree grows
    assert resolve_bounds((None, None, None), 50_000) == (1000, 125, 2000)
    assert resolve_bounds((None, None, None), 300_000) == (4000, 2000, 8000)
    assert resolve_bounds((None, None, None), 10**6) == (4000, 2000, 8000)
    assert resolve_bounds((500, None, None), 10**6) == (500, 250, 1000)  # a configured target is kept
    assert resolve_bounds((None, None, 3000), 10**6) == (3000, 1500, 3000)  # the derived one within max
    assert resolve_bounds((None, 2000, None), 10) == (2000, 2000, 4000)  # and within min
    assert resolve_bounds((None, 7, 9), 10**6) == (9, 7, 9)
