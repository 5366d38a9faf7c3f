"""pixelpass: fingerprints and one-colour rows in every row layout; duplicates confirmed byte for byte."""

import zlib

import numpy as np
import pytest

from img2npz import pixelpass
from img2npz.npzformat import array_layout, write_npz
from img2npz.pixelpass import duplicate_groups, row_fingerprints, scan_images
from img2npz.treedigest import tree_digest


def test_row_fingerprints_find_one_colour_rows_in_every_layout():
    rng = np.random.default_rng(3)
    for shape, dtype in (((4, 8, 8, 3), np.uint8), ((4, 5, 5, 3), np.uint8), ((4, 8, 8, 3), np.float32)):
        rows = rng.random(shape).astype(dtype) if dtype is np.float32 else rng.integers(0, 256, shape, dtype=dtype)
        rows[1] = np.array([10, 200, 30], dtype=dtype)  # one colour, not grey
        rows[3] = rows[0]
        prints, constant = row_fingerprints(rows)
        assert constant.tolist() == [False, True, False, False], (shape, dtype)
        assert (prints[0] == prints[3]).all() and len({tuple(p) for p in prints.tolist()}) == 3


def test_equal_fingerprints_are_no_duplicates_until_the_bytes_agree(tmp_path):
    rng = np.random.default_rng(5)
    rows = rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    words = rows[1].reshape(-1).view(np.uint64).copy()
    words[[0, 1]] = words[[1, 0]]  # the same words in another order: the same sum and xor
    rows[2] = words.view(np.uint8).reshape(8, 8, 3)
    rows[3] = rows[0]
    path = tmp_path / "d.npz"
    with open(path, "wb") as handle:
        write_npz(handle, {"images": rows})
    layout = array_layout(path)["images"]
    scan = scan_images(str(path), layout)
    assert (scan.fingerprints[1] == scan.fingerprints[2]).all() and not np.array_equal(rows[1], rows[2])
    assert duplicate_groups(str(path), layout, scan.fingerprints) == [[0, 3]]
    assert scan.crcs.tolist() == [zlib.crc32(row.tobytes()) for row in rows]
    assert scan.sha256 == tree_digest(rows) and (scan.low, scan.high) == (0.0, 255.0)


def test_float_rows_report_their_range_and_any_value_that_is_not_finite(tmp_path):
    rows = np.linspace(-2, 3, 4 * 4 * 4 * 3, dtype=np.float32).reshape(4, 4, 4, 3)
    path = tmp_path / "f.npz"
    with open(path, "wb") as handle:
        write_npz(handle, {"images": rows})
    scan = scan_images(str(path), array_layout(path)["images"])
    assert (scan.low, scan.high, scan.finite) == (-2.0, 3.0, True)
    rows[2, 1, 1, 1] = np.nan
    with open(path, "wb") as handle:
        write_npz(handle, {"images": rows})
    assert scan_images(str(path), array_layout(path)["images"]).finite is False


@pytest.mark.parametrize("compress", [False, True])
def test_any_number_of_threads_finds_the_same_in_the_same_order(tmp_path, monkeypatch, compress):
    """Chunks of 3 rows over 3 to 7 threads: every per-row fact lands on its row, the digest is
    the rows' tree in order, one-colour rows are found across chunk boundaries."""
    rng = np.random.default_rng(9)
    rows = rng.integers(0, 256, (23, 8, 8, 3), dtype=np.uint8)
    rows[[4, 17]] = 7
    path = tmp_path / "t.npz"
    with open(path, "wb") as handle:
        write_npz(handle, {"images": rows}, compress=compress)
    layout = array_layout(path)["images"]
    monkeypatch.setattr(pixelpass, "CHUNK_ROWS_BYTES", 3 * rows[0].nbytes)
    scans = [scan_images(str(path), layout, threads) for threads in (1, 3, 7)]
    for scan in scans:
        assert scan.sha256 == tree_digest(rows) and scan.constant == [4, 17]
        assert scan.crcs.tolist() == [zlib.crc32(row.tobytes()) for row in rows]
        assert (scan.fingerprints == scans[0].fingerprints).all()
    rows[22, 7, 7, 2] ^= 1
    with open(path, "wb") as handle:
        write_npz(handle, {"images": rows}, compress=compress)
    assert scan_images(str(path), array_layout(path)["images"], 3).sha256 != scans[0].sha256
