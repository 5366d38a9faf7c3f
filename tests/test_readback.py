"""readback: the merge hashes every row as it reads its copy back, and names the row that differs."""

import hashlib
import os
import zlib

import numpy as np
import pytest

from img2npz.filecopy import ByteRange, CopyMismatch, copy_ranges, row_ranges
from img2npz.npzformat import NpzWriter
from img2npz.readback import RowReadBack

SHAPE = (4, 3, 3)


def _rows(dtype, count=12):
    rng = np.random.default_rng(3)
    if np.dtype(dtype).kind == "f":
        rows = rng.uniform(-0.5, 2.0, (count, *SHAPE)).astype(dtype)
    else:
        rows = rng.integers(0, 256, (count, *SHAPE), dtype=dtype)
    rows[4] = rows[4, 0, 0]  # one colour throughout
    return rows


def _copy(tmp_path, rows, readers, name="out.npz"):
    """Copy ``rows`` from two source files, in ranges of 2 rows, with a RowReadBack in ``readers`` threads."""
    ranges = []
    for part, chunk in enumerate((rows[:7], rows[7:])):
        path = tmp_path / f"source{part}.bin"
        path.write_bytes(b"x" * 16 + chunk.tobytes())
        crcs = [zlib.crc32(row.tobytes()) for row in chunk]
        ranges += row_ranges(str(path), 16, chunk[0].nbytes, crcs, chunk_bytes=2 * chunk[0].nbytes)
    read_back = RowReadBack(ranges, SHAPE, rows.dtype)
    with open(tmp_path / name, "w+b") as handle:
        writer = NpzWriter(handle)
        with writer.stream("images", rows.dtype, rows.shape) as member:
            assert copy_ranges(member, ranges, verify=read_back, readers=readers)
        writer.close()
    return read_back, ranges


def _recorded(rows):
    sha = np.stack([np.frombuffer(hashlib.sha256(row.tobytes()).digest(), np.uint8) for row in rows])
    crc = np.array([zlib.crc32(row.tobytes()) for row in rows], np.uint32)
    constant = np.array([len(np.unique(row.reshape(-1, 3), axis=0)) == 1 for row in rows])
    return sha, crc, constant


@pytest.mark.parametrize("readers", [1, 3])
@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_every_row_is_hashed_as_read_back_and_matches_what_was_recorded(tmp_path, readers, dtype):
    rows = _rows(dtype)
    read_back, ranges = _copy(tmp_path, rows, readers)
    assert len(ranges) == 7 and read_back.read.all()  # 2 + 2 + 2 + 1, 2 + 2 + 1 rows
    sha, crc, constant = _recorded(rows)
    assert np.array_equal(read_back.digests, sha) and np.array_equal(read_back.crcs, crc)
    assert read_back.constant.tolist() == constant.tolist() and constant.sum() == 1
    paths = [f"c/{n}.png" for n in range(len(rows))]
    read_back.check(sha, crc, constant, paths)
    if dtype == "float32":
        assert (read_back.low, read_back.high) == (float(rows.min()), float(rows.max())) and read_back.finite
    else:
        assert read_back.low is None
    for spoil in range(3):  # what a shard recorded differs from its row: the merge names the image
        wrong = [array.copy() for array in (sha, crc, constant)]
        wrong[spoil][9] = ~wrong[spoil][9] if spoil != 2 else not wrong[spoil][9]
        with pytest.raises(CopyMismatch, match=r"^c/9\.png: its row read back .* \(1 rows differ\)"):
            read_back.check(*wrong, paths)


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
    read_back, _ = _copy(tmp_path, rows, 2)
    with pytest.raises(CopyMismatch, match=r"^c/8\.png: "):  # the second row of the second source
        read_back.check(*_recorded(rows), [f"c/{n}.png" for n in range(len(rows))])


def test_ranges_of_part_rows_are_refused():
    with pytest.raises(ValueError, match="no whole rows"):
        RowReadBack([ByteRange("x", 0, 10)], SHAPE, np.dtype("uint8"))


def test_a_trusted_range_is_checked_by_its_crc_and_its_rows_are_not_hashed(tmp_path, monkeypatch):
    """Rows from a shard an earlier merge hashed: their range's CRC-32 read back, nothing hashed; a
    byte the copy got wrong there still fails, naming the source."""
    rows = _rows("uint8")
    path = tmp_path / "source.bin"
    path.write_bytes(rows.tobytes())
    ranges = row_ranges(str(path), 0, rows[0].nbytes, [zlib.crc32(r.tobytes()) for r in rows], 4 * rows[0].nbytes)
    trusted = [True, False, True]
    read_back = RowReadBack(ranges, SHAPE, rows.dtype, trusted)
    with open(tmp_path / "out.npz", "w+b") as handle:
        writer = NpzWriter(handle)
        with writer.stream("images", rows.dtype, rows.shape) as member:
            copy_ranges(member, ranges, verify=read_back, readers=2)
        writer.close()
    assert read_back.read.all() and read_back.hashed.tolist() == [False] * 4 + [True] * 4 + [False] * 4
    sha, crc, constant = _recorded(rows)
    sha[0] = 0  # a trusted row's record is not compared again
    read_back.check(sha, crc, constant, [str(n) for n in range(12)])

    real = os.copy_file_range

    def copy_file_range(source, out, count, offset_source, offset_out):
        done = real(source, out, count, offset_source, offset_out)
        if offset_source == 0:  # the first range, a trusted one, gets a byte wrong
            os.pwrite(out, bytes([os.pread(out, 1, offset_out + 3)[0] ^ 0xFF]), offset_out + 3)
        return done

    monkeypatch.setattr(os, "copy_file_range", copy_file_range)
    handle = open(tmp_path / "again.npz", "w+b")  # noqa: SIM115 (outlives the writer, whose close needs it)
    writer = NpzWriter(handle)
    with (
        pytest.raises(CopyMismatch, match=r"source\.bin: the 144 bytes from byte 0 read back"),
        writer.stream("images", rows.dtype, rows.shape) as member,
    ):
        copy_ranges(member, ranges, verify=RowReadBack(ranges, SHAPE, rows.dtype, trusted), readers=2)
    writer.close()
    handle.close()
