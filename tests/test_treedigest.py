"""treedigest: the root is the documented two-level sha256, and moves with any byte of any row."""

import hashlib

import numpy as np
import pytest

from img2npz.treedigest import TreeDigest, row_digests, tree_digest


def test_the_root_is_sha256_of_the_rows_sha256s_in_order():
    rows = np.random.default_rng(1).integers(0, 256, (5, 4, 4, 3), dtype=np.uint8)
    by_hand = hashlib.sha256(b"".join(hashlib.sha256(row.tobytes()).digest() for row in rows)).hexdigest()
    assert tree_digest(rows) == by_hand
    assert row_digests(rows).shape == (5, 32) and row_digests(rows)[2].tobytes() == hashlib.sha256(rows[2]).digest()


def test_batches_of_any_size_give_the_same_root_and_order_matters():
    rows = np.random.default_rng(2).integers(0, 256, (7, 2, 2, 3), dtype=np.uint8)
    digests = row_digests(rows)
    for cuts in ([], [3], [1, 2, 6], [0, 7]):
        tree = TreeDigest()
        for part in np.split(digests, cuts):
            tree.update(part)
        assert tree.hexdigest() == tree_digest(rows) and tree.rows == 7
    assert tree_digest(rows[::-1]) != tree_digest(rows)
    assert tree_digest(rows[:0]) == hashlib.sha256(b"").hexdigest()


def test_one_changed_bit_anywhere_changes_the_root():
    rows = np.random.default_rng(3).integers(0, 256, (4, 3, 3, 3), dtype=np.uint8)
    root = tree_digest(rows)
    flat = rows.reshape(-1)
    for at in (0, flat.size // 2, flat.size - 1):
        changed = flat.copy()
        changed[at] ^= 1
        assert tree_digest(changed.reshape(rows.shape)) != root


def test_digests_of_the_wrong_shape_are_refused():
    with pytest.raises(ValueError, match="row digests"):
        TreeDigest().update(np.zeros((2, 16), np.uint8))
