"""filecopy: ranges of other files appended to a member, by the kernel or through zipfile, with exact CRCs."""

import contextlib
import errno
import hashlib
import io
import os
import zipfile
import zlib

import numpy as np
import pytest

from img2npz.filecopy import ByteRange, CopyMismatch, copy_ranges, row_ranges
from img2npz.npzformat import NpzWriter, array_layout, write_npz


def _sources(tmp_path, known_crc=False):
    """Three stored npz files and the byte ranges of their images (one empty), as merge hands them over."""
    rng = np.random.default_rng(1)
    parts = [rng.integers(0, 256, (n, 4, 3, 3), dtype=np.uint8) for n in (5, 0, 3)]
    ranges = []
    for number, part in enumerate(parts):
        path = tmp_path / f"s{number}.npz"
        buffer = io.BytesIO()
        write_npz(buffer, {"images": part, "meta": np.array("{}")})
        path.write_bytes(buffer.getvalue())
        layout = array_layout(path)["images"]
        assert layout.crc32 == zlib.crc32(part.tobytes())
        ranges.append(ByteRange(str(path), layout.offset, layout.nbytes, layout.crc32 if known_crc else None))
    return ranges, np.concatenate(parts)


@pytest.mark.parametrize("release", [False, True])
@pytest.mark.parametrize("way", ["kernel", "kernel-known-crc", "no-kernel-copy", "compressed", "in-memory"])
def test_copy_from_appends_exact_bytes_with_a_valid_crc(tmp_path, monkeypatch, way, release):
    ranges, expected = _sources(tmp_path, known_crc=way == "kernel-known-crc")
    sources = {r.path: open(r.path, "rb").read() for r in ranges}  # noqa: SIM115
    calls, advice = [], []
    real_copy = os.copy_file_range

    def posix_fadvise(fd, offset, length, what):
        advice.append((os.readlink(f"/proc/self/fd/{fd}"), offset, length, what))

    def copy_file_range(*args):
        calls.append(args)
        if way == "no-kernel-copy":
            raise OSError(errno.EXDEV, "cross-device")
        return real_copy(*args)

    monkeypatch.setattr(os, "copy_file_range", copy_file_range)
    monkeypatch.setattr(os, "posix_fadvise", posix_fadvise)
    seen = hashlib.sha256()
    out = tmp_path / "out.npz"
    with open(out, "w+b") if way != "in-memory" else contextlib.nullcontext(io.BytesIO()) as handle:
        writer = NpzWriter(handle, compress=way == "compressed")
        writer.add("first", np.arange(3, dtype=np.int16))
        with writer.stream("images", np.uint8, expected.shape) as member:
            verified = copy_ranges(member, ranges, seen.update, release=release, verify=True)
        writer.add("last", np.array("after"))
        writer.close()
        if way == "in-memory":
            out.write_bytes(handle.getvalue())
    assert bool(calls) == way.startswith(("kernel", "no-kernel"))  # kernel copy tried only where it can work
    assert verified == way.startswith("kernel")  # read back only where the kernel copied
    with zipfile.ZipFile(out) as archive:
        assert archive.testzip() is None  # every member's CRC matches its bytes
    with np.load(out) as loaded:
        assert np.array_equal(loaded["images"], expected)
        assert str(loaded["last"]) == "after"
    assert seen.hexdigest() == hashlib.sha256(expected.tobytes()).hexdigest()
    # release: each copied source range is dropped from the page cache once, and never changed
    wanted = [(r.path, r.offset, r.nbytes, os.POSIX_FADV_DONTNEED) for r in ranges if r.nbytes] if release else []
    assert advice == wanted
    assert {r.path: open(r.path, "rb").read() for r in ranges} == sources  # noqa: SIM115


def test_copy_from_a_short_source_fails_and_names_it(tmp_path):
    ranges, _ = _sources(tmp_path)
    short = ByteRange(ranges[0].path, ranges[0].offset, os.path.getsize(ranges[0].path))
    handle = open(tmp_path / "out.npz", "w+b")  # noqa: SIM115 (outlives the writer, whose close needs it)
    writer = NpzWriter(handle)
    with (
        pytest.raises(ValueError, match=r"s0\.npz: ends before byte"),
        writer.stream("images", np.uint8, (short.nbytes,)) as member,
    ):
        copy_ranges(member, [short])
    writer.close()
    handle.close()


def test_a_source_corrupted_after_its_crc_was_taken_fails_the_zip_check(tmp_path):
    """With known CRCs the copy never recomputes them: damage in a shard shows in the merged zip."""
    ranges, _ = _sources(tmp_path, known_crc=True)
    with open(ranges[0].path, "r+b") as handle:
        handle.seek(ranges[0].offset + 7)
        byte = handle.read(1)
        handle.seek(ranges[0].offset + 7)
        handle.write(bytes([byte[0] ^ 0xFF]))
    out = tmp_path / "out.npz"
    with open(out, "w+b") as handle:
        writer = NpzWriter(handle)
        with writer.stream("images", np.uint8, (sum(r.nbytes for r in ranges),)) as member:
            copy_ranges(member, ranges)
        writer.close()
    with zipfile.ZipFile(out) as archive:
        assert archive.testzip() == "images.npy"


def _damage(byte_range, at):
    with open(byte_range.path, "r+b") as handle:
        handle.seek(byte_range.offset + at)
        byte = handle.read(1)
        handle.seek(byte_range.offset + at)
        handle.write(bytes([byte[0] ^ 0xFF]))


@pytest.mark.parametrize("spoil", ["source", "output"])
def test_verify_reads_the_copy_back_and_names_the_source_that_differs(tmp_path, monkeypatch, spoil):
    """The read-back compares what the output holds with the source's known CRC: a source damaged
    after its CRC was taken, or bytes the copy got wrong, fail it; in parallel streams nothing is
    read back (the validation then reads the copy)."""
    ranges, expected = _sources(tmp_path, known_crc=True)
    for streams, proven in ((1, True), (2, False)):
        out = tmp_path / f"out{streams}.npz"
        with open(out, "w+b") as handle:
            writer = NpzWriter(handle)
            with writer.stream("images", np.uint8, expected.shape) as member:
                assert copy_ranges(member, ranges, streams=streams, verify=True) == proven
            writer.close()
        with np.load(out) as loaded:
            assert np.array_equal(loaded["images"], expected)
    if spoil == "source":
        _damage(ranges[2], 5)  # the source no longer holds what its known CRC says
    else:
        real = os.copy_file_range

        def copy_file_range(source, out, count, offset_source, offset_out):
            done = real(source, out, count, offset_source, offset_out)
            if os.readlink(f"/proc/self/fd/{source}") == ranges[2].path:  # one byte of the last range goes wrong
                os.pwrite(out, bytes([os.pread(out, 1, offset_out + 5)[0] ^ 0xFF]), offset_out + 5)
            return done

        monkeypatch.setattr(os, "copy_file_range", copy_file_range)
    handle = open(tmp_path / "again.npz", "w+b")  # noqa: SIM115 (outlives the writer, whose close needs it)
    writer = NpzWriter(handle)
    with (
        pytest.raises(CopyMismatch, match=r"s2\.npz: the 108 bytes from byte \d+ read back from the copy"),
        writer.stream("images", np.uint8, expected.shape) as member,
    ):
        copy_ranges(member, ranges, verify=True)
    writer.close()
    handle.close()


def test_row_ranges_cover_the_rows_with_their_combined_crcs(tmp_path):
    data = bytes(range(256)) * 8  # 16 rows of 128 bytes after a 64-byte header
    path = tmp_path / "rows.bin"
    path.write_bytes(b"h" * 64 + data)
    crcs = [zlib.crc32(data[row * 128 : (row + 1) * 128]) for row in range(2, 12)]
    for chunk_bytes, expected in ((None, 1), (128 * 4, 3), (1, 10)):
        ranges = row_ranges(str(path), 64 + 2 * 128, 128, crcs, chunk_bytes)
        assert len(ranges) == expected
        assert b"".join(data[r.offset - 64 : r.offset - 64 + r.nbytes] for r in ranges) == data[256 : 12 * 128]
        assert all(r.crc32 == zlib.crc32(data[r.offset - 64 : r.offset - 64 + r.nbytes]) for r in ranges)
    assert row_ranges(str(path), 64, 128, []) == []
