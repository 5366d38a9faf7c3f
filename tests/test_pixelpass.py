"""pixelpass: fingerprints and one-colour rows in every row layout; duplicates confirmed byte for byte."""

import zlib

import numpy as np
import pytest

from img2npz import pixelpass
from img2npz.npzformat import array_layout, read_array, read_rows, write_npz
from img2npz.pixelpass import duplicate_groups, fingerprints_of, row_fingerprints, scan_images, scan_shards
from img2npz.treedigest import row_digests, tree_digest


def test_row_fingerprints_find_one_colour_rows_in_every_layout():
    rng = np.random.default_rng(3)
    for shape, dtype in (((4, 8, 8, 3), np.uint8), ((4, 5, 5, 3), np.uint8), ((4, 8, 8, 3), np.float32)):
        rows = rng.random(shape).astype(dtype) if dtype is np.float32 else rng.integers(0, 256, shape, dtype=dtype)
        rows[1] = np.array([10, 200, 30], dtype=dtype)  # one colour, not grey
        rows[3] = rows[0]
        prints, constant = row_fingerprints(rows)
        assert constant.tolist() == [False, True, False, False], (shape, dtype)
        assert (prints[0] == prints[3]).all() and len({tuple(p) for p in prints.tolist()}) == 3


@pytest.mark.parametrize("dtype", [np.uint8, np.float16, np.float32])
def test_a_row_of_a_repeated_pattern_is_not_one_colour(dtype):
    """Stripes repeat every 24 bytes too (8 uint8 pixels, 4 float16, 2 float32): one colour is one
    pixel repeated, as the shard job's channel counts say."""
    period = 24 // (3 * np.dtype(dtype).itemsize)
    rows = np.zeros((2, 16, 16, 3), dtype)
    rows[0, :, ::period] = 1  # a stripe every period pixels: the row repeats every 24 bytes
    rows[1, :, 1::2] = 1
    assert row_fingerprints(rows)[1].tolist() == [False, False]
    rows[:] = 7
    assert row_fingerprints(rows)[1].tolist() == [True, True]


def test_equal_fingerprints_are_no_duplicates_until_the_bytes_agree(tmp_path):
    rng = np.random.default_rng(5)
    rows = rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    words = rows[1].reshape(-1).view(np.uint64).copy()
    words[[0, 1]] = words[[1, 0]]  # the same words in another order
    rows[2] = words.view(np.uint8).reshape(8, 8, 3)
    rows[3] = rows[0]
    path = tmp_path / "d.npz"
    with open(path, "wb") as handle:
        write_npz(handle, {"images": rows})
    layout = array_layout(path)["images"]
    scan = scan_images(str(path), layout)
    assert np.array_equal(scan.fingerprints, fingerprints_of(row_digests(rows.reshape(4, -1))))  # the sha256s
    assert not (scan.fingerprints[1] == scan.fingerprints[2]).all()

    def read(numbers):
        return read_rows(path, "images", numbers, layout)

    assert duplicate_groups(read, scan.fingerprints) == [[0, 3]]
    colliding = scan.fingerprints.copy()
    colliding[2] = colliding[1]  # a fingerprint collision proposes rows 1 and 2: their bytes differ
    assert duplicate_groups(read, colliding) == [[0, 3]]
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


def test_the_shards_layout_reads_only_shards_not_checked_before(tmp_path):
    """A shard an earlier run verified is taken as recorded (a damaged row there goes unseen unless
    its row table disagrees with its file); any other is read, and its damage shows."""
    from conftest import build_dataset, make_tree

    make_tree(tmp_path / "src", per_class=4)
    table, _, meta, _ = build_dataset(tmp_path, 4, "s", layout="shards")
    files = [str(table.parent / name) for name in read_array(table, "shards").tolist()]
    layouts = [array_layout(path)["images"] for path in files]
    shard, row = read_array(table, "shard"), read_array(table, "row")
    recorded = {name: read_array(table, name) for name in ("sha256s", "crc32s", "constant")}
    on_file = {n: read_array(path, "sha256s") for n, path in enumerate(files)}

    def scan(checked):
        return scan_shards(files, layouts, shard, row, recorded, {n: on_file[n] for n in checked})

    assert scan(set()).sha256 == scan(set(on_file)).sha256 == meta.images_sha256
    victim = int(shard[0])
    with open(files[victim], "r+b") as handle:  # one byte of the dataset's first row
        handle.seek(layouts[victim].offset + int(row[0]) * layouts[victim].nbytes // layouts[victim].shape[0])
        byte = handle.read(1)
        handle.seek(-1, 1)
        handle.write(bytes([byte[0] ^ 0xFF]))
    damaged = scan(set())
    assert damaged.sha256 != meta.images_sha256 and damaged.crcs[0] != recorded["crc32s"][0]
    assert scan(set(on_file)).sha256 == meta.images_sha256  # verified before: not read again
    recorded["sha256s"][0, 0] ^= 1  # the row table disagrees with the shard file
    assert scan(set(on_file)).sha256 != meta.images_sha256


@pytest.mark.parametrize("compress", [False, True])
def test_known_rows_are_taken_as_recorded_once_their_crc_holds(tmp_path, monkeypatch, compress):
    """Rows an earlier validation verified are not hashed (their recorded sha256 and one-colour flag
    stand), yet every row's CRC-32 is taken: a known row whose bytes changed gets a zero digest, so
    the tree digest and the CRC check both fail, whatever the chunking and threads."""
    rng = np.random.default_rng(11)
    rows = rng.integers(0, 256, (13, 8, 8, 3), dtype=np.uint8)
    rows[[2, 9]] = 5
    path = tmp_path / "k.npz"
    with open(path, "wb") as handle:
        write_npz(handle, {"images": rows}, compress=compress)
    layout = array_layout(path)["images"]
    monkeypatch.setattr(pixelpass, "CHUNK_ROWS_BYTES", 4 * rows[0].nbytes)
    digests = row_digests(rows.reshape(13, -1))
    recorded = {
        "sha256s": digests,
        "crc32s": np.array([zlib.crc32(row.tobytes()) for row in rows], np.uint32),
        "constant": np.isin(np.arange(13), [2, 9]),
    }
    known = np.ones(13, bool)
    known[[0, 5, 6, 12]] = False  # new rows, one of them in a chunk of known ones
    hashed = []
    real = pixelpass.row_digests
    monkeypatch.setattr(pixelpass, "row_digests", lambda flat: hashed.append(len(flat)) or real(flat))
    for threads in (1, 3):
        hashed.clear()
        scan = scan_images(str(path), layout, threads, known, recorded)
        assert sum(hashed) == 4  # only the new rows were hashed
        assert scan.sha256 == tree_digest(rows) and scan.constant == [2, 9]
        assert np.array_equal(scan.digests, digests) and np.array_equal(scan.crcs, recorded["crc32s"])
    lying = {**recorded, "sha256s": digests.copy(), "constant": np.zeros(13, bool)}
    lying["sha256s"][[1, 5]] = 0  # what the dataset says of a known row is what counts; a new row is hashed
    scan = scan_images(str(path), layout, 2, known, lying)
    assert scan.sha256 != tree_digest(rows) and np.array_equal(scan.digests[5], digests[5])
    assert scan.constant == []  # recorded for the known rows 2 and 9
    damaged = rows.copy()
    damaged[7, 0, 0, 0] ^= 1  # a known row's bytes change after it was verified
    with open(path, "wb") as handle:
        write_npz(handle, {"images": damaged}, compress=compress)
    scan = scan_images(str(path), array_layout(path)["images"], 2, known, recorded)
    assert not scan.digests[7].any() and scan.crcs[7] != recorded["crc32s"][7]
    assert scan.sha256 != tree_digest(rows) and np.array_equal(np.delete(scan.digests, 7, 0), np.delete(digests, 7, 0))


def test_rows_found_damaged_are_no_group_of_duplicates():
    """Their zero digests are marks, not pixels: many damaged rows must not be read as one group."""
    prints = np.zeros((5, 4), np.uint64)
    prints[[1, 3], 0] = 7
    prints[[1, 3], 1:] = 9
    read = []
    groups = duplicate_groups(lambda rows: read.append(rows) or np.zeros((len(rows), 2, 2, 3), np.uint8), prints)
    assert groups == [[1, 3]] and read == [[1, 3]]


def test_a_copy_the_merge_proved_is_read_only_where_rows_are_hashed(tmp_path, monkeypatch):
    """``proven``: the known rows are neither read nor hashed (the merge read them back as it copied
    them), the new ones are, and the scan says what a full pass says."""
    rng = np.random.default_rng(12)
    rows = rng.integers(0, 256, (13, 8, 8, 3), dtype=np.uint8)
    rows[4] = 7
    path = tmp_path / "p.npz"
    with open(path, "wb") as handle:
        write_npz(handle, {"images": rows})
    layout = array_layout(path)["images"]
    monkeypatch.setattr(pixelpass, "CHUNK_ROWS_BYTES", 2 * rows[0].nbytes)
    recorded = {
        "sha256s": row_digests(rows.reshape(13, -1)),
        "crc32s": np.array([zlib.crc32(row.tobytes()) for row in rows], np.uint32),
        "constant": np.arange(13) == 4,
    }
    known = np.ones(13, bool)
    known[[1, 4, 9, 10, 11]] = False
    read = []
    real = pixelpass.read_rows
    monkeypatch.setattr(pixelpass, "read_rows", lambda *args: read.extend(args[2]) or real(*args))
    monkeypatch.setattr(pixelpass, "_read_rows", lambda *args: pytest.fail("a chunk was read whole"))
    whole = None
    for threads in (1, 3):
        read.clear()
        scan = scan_images(str(path), layout, threads, known, recorded, proven=True)
        assert sorted(read) == [1, 4, 9, 10, 11]
        assert scan.sha256 == tree_digest(rows) and scan.constant == [4]
        assert np.array_equal(scan.crcs, recorded["crc32s"]) and np.array_equal(scan.digests, recorded["sha256s"])
        whole = whole or scan
    monkeypatch.undo()
    full = scan_images(str(path), layout, 2, known, recorded)
    assert (full.sha256, full.constant) == (whole.sha256, whole.constant)
