"""readback: the merge hashes every row as it reads its copy back, and names the row that differs."""

import contextlib
import hashlib
import os
import zlib

import numpy as np
import pytest

from img2npz.filecopy import ByteRange, CopyMismatch, copy_ranges, row_ranges
from img2npz.npzformat import NpzWriter
from img2npz.readback import RowReadBack

SHAPE = (4, 3, 3)
PATHS = [f"c/{n}.png" for n in range(12)]


def _rows(dtype, count=12):
    rng = np.random.default_rng(3)
    if np.dtype(dtype).kind == "f":
        rows = rng.uniform(-0.5, 2.0, (count, *SHAPE)).astype(dtype)
    else:
        rows = rng.integers(0, 256, (count, *SHAPE), dtype=dtype)
    rows[4] = rows[4, 0, 0]  # one colour throughout
    return rows


def _recorded(rows):
    sha = np.stack([np.frombuffer(hashlib.sha256(row.tobytes()).digest(), np.uint8) for row in rows])
    crc = np.array([zlib.crc32(row.tobytes()) for row in rows], np.uint32)
    constant = np.array([len(np.unique(row.reshape(-1, 3), axis=0)) == 1 for row in rows])
    return {"sha256s": sha, "crc32s": crc, "constant": constant}


def _ranges(tmp_path, rows):
    """Ranges of 2 rows from two source files (7 and 5 rows), as the merge hands them over."""
    ranges = []
    for part, chunk in enumerate((rows[:7], rows[7:])):
        path = tmp_path / f"source{part}.bin"
        path.write_bytes(b"x" * 16 + chunk.tobytes())
        crcs = [zlib.crc32(row.tobytes()) for row in chunk]
        ranges += row_ranges(str(path), 16, chunk[0].nbytes, crcs, chunk_bytes=2 * chunk[0].nbytes)
    return ranges


def _copy(tmp_path, rows, ranges, read_back, readers, name="out.npz"):
    handle = open(tmp_path / name, "w+b")  # noqa: SIM115 (outlives the writer, whose close needs it)
    writer = NpzWriter(handle)
    try:
        with writer.stream("images", rows.dtype, rows.shape) as member:
            assert copy_ranges(member, ranges, verify=read_back, readers=readers)
        read_back.finish()
    finally:
        with contextlib.suppress(ValueError):  # a member left short by a failed copy
            writer.close()
        handle.close()


@pytest.mark.parametrize("readers", [1, 3])
@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_every_row_is_hashed_as_read_back_and_matches_what_was_recorded(tmp_path, readers, dtype):
    rows = _rows(dtype)
    ranges = _ranges(tmp_path, rows)
    read_back = RowReadBack(ranges, SHAPE, rows.dtype, _recorded(rows), PATHS)
    _copy(tmp_path, rows, ranges, read_back, readers)
    assert len(ranges) == 7 and read_back.read.all() and read_back.hashed.all()  # 2 + 2 + 2 + 1, 2 + 2 + 1 rows
    assert _recorded(rows)["constant"].sum() == 1
    if dtype == "float32":
        assert (read_back.low, read_back.high) == (float(rows.min()), float(rows.max())) and read_back.finite
    else:
        assert read_back.low is None


@pytest.mark.parametrize("spoil", ["sha256s", "crc32s", "constant"])
def test_a_row_other_than_its_shard_recorded_stops_the_copy_naming_its_image(tmp_path, spoil):
    rows = _rows("uint8")
    ranges = _ranges(tmp_path, rows)
    recorded = _recorded(rows)
    recorded[spoil][9] = ~recorded[spoil][9]
    read_back = RowReadBack(ranges, SHAPE, rows.dtype, recorded, PATHS)
    with pytest.raises(CopyMismatch, match=r"^c/9\.png: its row read back from the copy has another"):
        _copy(tmp_path, rows, ranges, read_back, 2)


def test_a_byte_the_copy_got_wrong_names_its_image(tmp_path, monkeypatch):
    rows = _rows("uint8")
    real = os.copy_file_range
    row_bytes = rows[0].nbytes

    def copy_file_range(source, out, count, offset_source, offset_out):
        done = real(source, out, count, offset_source, offset_out)
        if os.readlink(f"/proc/self/fd/{source}").endswith("source1.bin") and offset_source == 16:
            os.pwrite(out, bytes([os.pread(out, 1, offset_out + row_bytes + 1)[0] ^ 0xFF]), offset_out + row_bytes + 1)
        return done

    monkeypatch.setattr(os, "copy_file_range", copy_file_range)
    ranges = _ranges(tmp_path, rows)
    read_back = RowReadBack(ranges, SHAPE, rows.dtype, _recorded(rows), PATHS)
    with pytest.raises(CopyMismatch, match=r"^c/8\.png: "):  # the second row of the second source
        _copy(tmp_path, rows, ranges, read_back, 2)


def test_a_trusted_range_is_checked_by_its_crc_and_its_rows_are_not_hashed(tmp_path, monkeypatch):
    """Rows from a shard an earlier merge hashed: their range's CRC-32 read back, nothing hashed; a
    byte the copy got wrong there still fails, naming the source."""
    rows = _rows("uint8")
    path = tmp_path / "source.bin"
    path.write_bytes(rows.tobytes())
    ranges = row_ranges(str(path), 0, rows[0].nbytes, [zlib.crc32(r.tobytes()) for r in rows], 4 * rows[0].nbytes)
    trusted = [True, False, True]
    recorded = _recorded(rows)
    recorded["sha256s"][0] = 0  # a trusted row's record is not compared again
    read_back = RowReadBack(ranges, SHAPE, rows.dtype, recorded, PATHS, trusted)
    _copy(tmp_path, rows, ranges, read_back, 2)
    assert read_back.read.all() and read_back.hashed.tolist() == [False] * 4 + [True] * 4 + [False] * 4

    real = os.copy_file_range

    def copy_file_range(source, out, count, offset_source, offset_out):
        done = real(source, out, count, offset_source, offset_out)
        if offset_source == 0:  # the first range, a trusted one, gets a byte wrong
            os.pwrite(out, bytes([os.pread(out, 1, offset_out + 3)[0] ^ 0xFF]), offset_out + 3)
        return done

    monkeypatch.setattr(os, "copy_file_range", copy_file_range)
    again = RowReadBack(ranges, SHAPE, rows.dtype, recorded, PATHS, trusted)
    with pytest.raises(CopyMismatch, match=r"source\.bin: the 144 bytes from byte 0 read back"):
        _copy(tmp_path, rows, ranges, again, 2, "again.npz")


def test_a_mismatch_stops_the_kernel_copy_before_the_later_ranges(tmp_path, monkeypatch):
    """A reader's error is seen by the copy loop: the ranges after it are not copied at all."""
    import threading

    rows = _rows("uint8")
    ranges = _ranges(tmp_path, rows)
    recorded = _recorded(rows)
    recorded["crc32s"][0] ^= 1  # the first range is found wrong
    first_read = threading.Event()

    class Reading(RowReadBack):
        def __call__(self, out_fd, number, position):
            try:
                super().__call__(out_fd, number, position)
            finally:
                first_read.set()

    copied = []
    real = os.copy_file_range

    def copy_file_range(source, out, count, offset_source, offset_out):
        copied.append(offset_out)
        if len(copied) == 2:  # the first range is queued now: let its reader finish with it
            assert first_read.wait(timeout=60)
        return real(source, out, count, offset_source, offset_out)

    monkeypatch.setattr(os, "copy_file_range", copy_file_range)
    read_back = Reading(ranges, SHAPE, rows.dtype, recorded, PATHS)
    with pytest.raises(CopyMismatch, match=r"^c/0\.png"):
        _copy(tmp_path, rows, ranges, read_back, 1)
    assert len(copied) == 2 < len(ranges)


def test_readers_are_as_many_as_their_buffers_allow():
    big = RowReadBack([ByteRange("x", 0, 0)], (4096, 4096, 3), np.dtype("float32"), _recorded(_rows("uint8")), [])
    assert big.readers(16) == 1  # a 192 MB row: one reader's buffer
    assert RowReadBack([ByteRange("x", 0, 0)], SHAPE, np.dtype("uint8"), {}, []).readers(16) == 16


def test_ranges_of_part_rows_are_refused():
    with pytest.raises(ValueError, match="no whole rows"):
        RowReadBack([ByteRange("x", 0, 10)], SHAPE, np.dtype("uint8"), {}, [])
