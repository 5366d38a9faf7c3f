"""npzformat: stored, aligned, reproducible members that numpy reads; chunked and row reads."""

import io
import zipfile

import numpy as np
import pytest

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


def test_a_streamed_blob_reads_back_in_chunks_of_any_size():
    from img2npz.npzformat import iter_blob, streamed_blob, strings_blob

    items = ["a", "", "bcd", "é\udcff", "x" * 40, "", "z"]
    blob, count = streamed_blob(iter(items), batch=2)
    assert count == len(items) and blob.tobytes() == strings_blob(items).tobytes()
    for chunk in (1, 2, 3, 7, 64, 1 << 20):
        assert list(iter_blob(blob, count, chunk_bytes=chunk)) == items, chunk
    assert list(iter_blob(*streamed_blob([""]))) == [""] and list(iter_blob(*streamed_blob([]))) == []
