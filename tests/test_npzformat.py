import contextlib
import errno
import hashlib
import io
import os
import zipfile
import zlib

import numpy as np
import pytest

from img2npz.filecopy import ByteRange, copy_ranges
from img2npz.npzformat import (
    ALIGNMENT,
    NpzWriter,
    array_layout,
    iter_chunks,
    read_array,
    read_rows,
    write_npz,
)


def arrays():
    rng = np.random.default_rng(0)
    return {
        "images": rng.integers(0, 256, (7, 5, 3, 3), dtype=np.uint8),
        "labels": np.arange(7, dtype=np.int64) - 1,
        "paths": np.array([f"c/{i}é.jpg" for i in range(7)]),
        "meta": np.array('{"k": 1}'),
    }


def written(compress=False, data=None):
    buffer = io.BytesIO()
    write_npz(buffer, data or arrays(), compress=compress)
    return buffer.getvalue()


def test_numpy_reads_it_and_every_member_is_aligned(tmp_path):
    path = tmp_path / "d.npz"
    path.write_bytes(written())
    with np.load(path) as loaded:
        for key, value in arrays().items():
            assert np.array_equal(loaded[key], value)
    for layout in array_layout(path).values():
        assert layout.offset % ALIGNMENT == 0
        raw = np.memmap(path, dtype=layout.dtype, mode="r", offset=layout.offset, shape=layout.shape)
        assert np.array_equal(raw, arrays()[layout.name])
    with zipfile.ZipFile(path) as archive:
        assert all(info.compress_type == zipfile.ZIP_STORED for info in archive.infolist())
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_same_arrays_same_bytes():
    assert written() == written()
    assert written(compress=True) == written(compress=True)


def test_compressed_members_are_readable_but_not_mappable(tmp_path):
    path = tmp_path / "c.npz"
    path.write_bytes(written(compress=True))
    layouts = array_layout(path)
    assert all(layout.offset is None for layout in layouts.values())
    assert np.array_equal(read_array(path, "images"), arrays()["images"])
    assert np.array_equal(read_rows(path, "images", [5, 0, 5]), arrays()["images"][[5, 0, 5]])


def test_chunks_and_rows(tmp_path):
    path = tmp_path / "d.npz"
    path.write_bytes(written())
    chunks = list(iter_chunks(path, "images", chunk_bytes=100))
    assert all(len(chunk) == 2 for chunk in chunks[:-1])
    assert np.array_equal(np.concatenate(chunks), arrays()["images"])
    assert np.array_equal(read_rows(path, "images", [6, 1]), arrays()["images"][[6, 1]])
    assert str(read_array(path, "meta")) == '{"k": 1}'


def test_streamed_member_must_match_its_shape():
    writer = NpzWriter(io.BytesIO())
    with pytest.raises(ValueError, match="short"), writer.stream("x", np.uint8, (4, 2)) as member:
        member.write(np.zeros((1, 2), np.uint8))
    with pytest.raises(TypeError), writer.stream("y", np.uint8, (1,)) as member:
        member.write(np.zeros(1, np.int64))


def test_large_members_stay_aligned_with_zip64(tmp_path):
    path = tmp_path / "z.npz"
    with open(path, "wb") as handle:
        writer = NpzWriter(handle)
        writer.add("a", np.zeros(3, np.uint8))
        writer.add("b", np.ones((1, 61), np.uint8))
        writer.close()
    for layout in array_layout(path).values():
        assert layout.offset % ALIGNMENT == 0


def _sources(tmp_path, known_crc=False):
    """Three stored npz files and the byte ranges of their images (one empty), as merge hands them over."""
    rng = np.random.default_rng(1)
    parts = [rng.integers(0, 256, (n, 4, 3, 3), dtype=np.uint8) for n in (5, 0, 3)]
    ranges = []
    for number, part in enumerate(parts):
        path = tmp_path / f"s{number}.npz"
        path.write_bytes(written(data={"images": part, "meta": np.array("{}")}))
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
            copy_ranges(member, ranges, seen.update, release=release)
        writer.add("last", np.array("after"))
        writer.close()
        if way == "in-memory":
            out.write_bytes(handle.getvalue())
    assert bool(calls) == way.startswith(("kernel", "no-kernel"))  # kernel copy tried only where it can work
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
