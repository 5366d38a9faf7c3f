"""pathkeys: keys and the index-order check in arrays agree with the per-path definitions."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from img2npz.contract import path_sort_key
from img2npz.pathkeys import first_rows, keys_of_strings, order_breaks, path_keys

names = st.lists(st.text(alphabet="ab-._é\udce9 ", min_size=1, max_size=4), min_size=1, max_size=3).map("/".join)


def test_a_key_depends_on_the_path_only_not_on_the_array_width():
    narrow, wide = np.array(["a/b", "c"]), np.array(["a/b", "c", "a-very-long/name.jpg"])
    assert path_keys(narrow).tolist() == path_keys(wide)[:2].tolist()
    assert len(set(keys_of_strings(["a/b", "a/c", "ab", "b/a", "a\udce9"]).tolist())) == 5
    assert path_keys(np.array([], dtype=str)).tolist() == []


def test_first_rows_finds_the_first_row_of_each_key():
    table = keys_of_strings(["x", "y", "x", "z"])
    assert first_rows(keys_of_strings(["z", "x", "w"]), table).tolist() == [3, 0, -1]
    assert first_rows(keys_of_strings(["x"]), table[:0]).tolist() == [-1]


@settings(max_examples=200, deadline=None)
@given(st.lists(names, max_size=12), st.integers(0, 12))
def test_order_breaks_count_what_comparing_path_sort_keys_counts(paths, cut):
    """In one array or cut in two chunks, the breaks are the paths not above their predecessor."""
    keys = [path_sort_key(p) for p in paths]
    broken = [paths[n] for n in range(1, len(paths)) if not keys[n - 1] < keys[n]]
    whole = np.array(paths, dtype=str)
    assert order_breaks(whole) == (len(broken), broken[0] if broken else None)
    head, tail = whole[:cut], whole[cut:]
    first, second = order_breaks(head), order_breaks(tail, head[-1:])
    assert first[0] + second[0] == len(broken)
    assert (first[1] or second[1]) == (broken[0] if broken else None)
