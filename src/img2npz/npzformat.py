"""The bytes of every ``.npz`` img2npz writes: a specification a reader may rely on, and its writer.

What the members mean is :mod:`img2npz.contract`; this is how they are laid out. An img2npz
``.npz`` is an ordinary zip archive that ``numpy.load`` opens, with these promises more:

1. **Members.** Every member is ``KEY.npy``, an NPY file of format version 1.0 (2.0 only where a
   header would pass 65,535 bytes): magic ``\\x93NUMPY``, version, header length, then a header dict
   (``descr``, ``fortran_order: False``, ``shape``) padded with spaces to a multiple of 64 bytes and
   ended by a newline, then the array bytes in C order. No object or Fortran-ordered arrays; text is
   little-endian UTF-32 (``<Un``), a JSON document a 0-d ``<Un`` array.
2. **Stored and aligned.** Unless compression was asked for (``merge.compress``), every member is
   stored (``ZIP_STORED``, so ``compress_size == file_size``) and its NPY data starts at a file offset
   that is a multiple of :data:`ALIGNMENT` (64). With the 64-byte NPY header padding, every array's
   first element is then 64-byte aligned and can be memory-mapped in place. The padding sits in the
   local file header's extra field as one record of id :data:`PADDING_EXTRA_ID` (``0xD935``, as
   Android's ``zipalign`` does) filled with zero bytes; a member over 4 GiB also carries a ZIP64
   extra record (sizes) in its local header, before the padding. So the data of a stored member
   starts at ``header_offset + 30 + len(name) + len(extra)`` (:func:`array_layout` computes it).
3. **Reproducible.** Every member has the timestamp 1980-01-01 00:00:00, external attributes
   ``0o100644 << 16`` (a regular file, mode 0644), "made by" Unix (3), deflate level 6 when
   compressed; members appear in the order written; the zip's CRC-32 of each member is exact. The
   same arrays therefore always give the same bytes.
4. **Streamable.** A member's size is known before it is written (dtype and shape), so a large
   array is written in chunks (:meth:`NpzWriter.stream`) with memory bounded by the chunk, or by
   the kernel from other files (:mod:`img2npz.filecopy`), never held whole.

Readers: :func:`array_layout` finds where each stored array's bytes start, and the CRC-32 of the
array bytes alone (from the zip's CRC, without reading them); :func:`iter_chunks`, :func:`read_array`
and :func:`read_rows` read through plain file reads (no ``np.load`` copy of the whole archive, no
memory map whose pages would count against the reader's resident memory). String lists that are
the workflow's own memory (listings, catalogues) are stored as one NUL-joined byte blob
(:func:`strings_blob`), which is smaller and faster than a ``<Un`` array of long names.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import struct
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from img2npz import crc32

ALIGNMENT = 64
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
PADDING_EXTRA_ID = 0xD935
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")
_ZIP64_EXTRA_BYTES = 20
CHUNK_BYTES = 4 << 20


def npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    buffer = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": tuple(shape)}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue()


def _as_bytes(array: np.ndarray) -> memoryview:
    return memoryview(np.ascontiguousarray(array).reshape(-1).view(np.uint8))


# zipfile's member writer keeps its running CRC and sizes in these fields. Where a future Python
# renames them, members take every byte through zipfile's own write (slower, same file).
_ZIP_MEMBER_FIELDS = {"_crc", "_file_size", "_compress_size"}


class _StreamedMember:
    """Accepts an array's bytes in order; checks that exactly the declared bytes arrive."""

    def __init__(self, handle: BinaryIO, dtype: np.dtype, expected: int, fileobj: BinaryIO, stored: bool):
        self._handle = handle
        self._dtype = dtype
        self._fileobj = fileobj
        self._direct = stored and vars(handle).keys() >= _ZIP_MEMBER_FIELDS
        self.remaining = expected

    def _take(self, nbytes: int) -> None:
        if nbytes > self.remaining:
            raise ValueError("more data than the member's declared shape")
        self.remaining -= nbytes

    def write(self, rows: np.ndarray) -> None:
        if rows.dtype != self._dtype:
            raise TypeError(f"expected dtype {self._dtype}, got {rows.dtype}")
        data = _as_bytes(rows)
        self._take(data.nbytes)
        self._handle.write(data)

    def write_bytes(self, data: memoryview | bytes, crc: int | None = None) -> None:
        """Append raw array bytes; ``crc``: their CRC-32, when the caller knows it (zip's is then
        not recomputed)."""
        nbytes = memoryview(data).nbytes
        self._take(nbytes)
        if crc is not None and self._direct:
            self._fileobj.write(data)
            self._account(nbytes, crc)
        else:
            self._handle.write(data)

    def direct_target(self) -> tuple[int, int] | None:
        """(file descriptor, offset) where this member's next bytes go, when the caller may put them
        there itself (a stored member in a real file) and then report them with :meth:`appended`;
        else None (hand them to :meth:`write_bytes`)."""
        if not self._direct:
            return None
        try:
            fd = self._fileobj.fileno()
        except (OSError, ValueError, io.UnsupportedOperation):  # an in-memory file
            return None
        self._fileobj.flush()
        return fd, self._fileobj.tell()

    def appended(self, nbytes: int, crc: int) -> None:
        """``nbytes`` of CRC-32 ``crc`` were written at :meth:`direct_target`: move past them and
        keep zipfile's running CRC and sizes (its private fields) true."""
        self._take(nbytes)
        self._fileobj.seek(nbytes, os.SEEK_CUR)
        self._account(nbytes, crc)

    def _account(self, nbytes: int, crc: int) -> None:
        self._handle._crc = crc32.combine(self._handle._crc, crc, nbytes)
        self._handle._file_size += nbytes
        self._handle._compress_size += nbytes


class NpzWriter:
    """Write an img2npz archive to a seekable binary file; see the module docstring."""

    def __init__(self, fileobj: BinaryIO, compress: bool = False):
        self.compress = compress
        self._fileobj = fileobj
        self._zip = zipfile.ZipFile(
            fileobj, mode="w", compression=zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED, allowZip64=True
        )

    def _member_info(self, name: str, size: int) -> tuple[zipfile.ZipInfo, bool]:
        info = zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_EPOCH)
        info.create_system = 3
        info.external_attr = 0o100644 << 16
        info.file_size = size
        if self.compress:
            info.compress_type = zipfile.ZIP_DEFLATED
            info._compresslevel = 6
        else:
            info.compress_type = zipfile.ZIP_STORED
        zip64 = size * 1.05 > zipfile.ZIP64_LIMIT
        if not self.compress:
            header_end = self._zip.start_dir + _LOCAL_HEADER.size + len(info.filename.encode("ascii"))
            header_end += _ZIP64_EXTRA_BYTES if zip64 else 0
            pad = -header_end % ALIGNMENT
            if pad:
                pad += ALIGNMENT if pad < 4 else 0
                info.extra = struct.pack("<HH", PADDING_EXTRA_ID, pad - 4) + bytes(pad - 4)
        return info, zip64

    @contextlib.contextmanager
    def stream(self, name: str, dtype: np.dtype | str, shape: tuple[int, ...]) -> Iterator[_StreamedMember]:
        """Write member ``name`` of the given dtype and shape from rows handed to ``write``."""
        dtype = np.dtype(dtype)
        header = npy_header(dtype, shape)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        info, zip64 = self._member_info(name, len(header) + nbytes)
        with self._zip.open(info, mode="w", force_zip64=zip64) as handle:
            handle.write(header)
            member = _StreamedMember(handle, dtype, nbytes, self._fileobj, not self.compress)
            yield member
            if member.remaining:
                raise ValueError(f"member {name!r} is {member.remaining} bytes short of its declared shape")

    def add(self, name: str, array: np.ndarray) -> None:
        array = np.asarray(array)
        with self.stream(name, array.dtype, array.shape) as member:
            if array.size:
                member.write(array)

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> NpzWriter:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        """Close on success; on an error, close quietly (the file is being discarded), so the zip
        is never left to close itself later on a file that is gone."""
        if kind is None:
            self.close()
        else:
            with contextlib.suppress(Exception):
                self.close()


def write_npz(fileobj: BinaryIO, arrays: Mapping[str, np.ndarray], compress: bool = False) -> None:
    with NpzWriter(fileobj, compress=compress) as writer:
        for name, array in arrays.items():
            writer.add(name, array)


@dataclass(frozen=True)
class ArrayLayout:
    """Where one member's array lives: ``offset`` of its first byte when stored, else ``None``;
    ``crc32`` of the array bytes alone (stored members: from the zip's CRC, without reading them)."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    offset: int | None
    crc32: int | None = None

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def _read_npy_header(handle: BinaryIO, source: str) -> tuple[np.dtype, tuple[int, ...]]:
    version = np.lib.format.read_magic(handle)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
    else:
        raise ValueError(f"{source}: unsupported NPY version {version}")
    if fortran or dtype.hasobject:
        raise ValueError(f"{source}: Fortran-ordered or object arrays are not supported")
    return dtype, tuple(shape)


def array_layout(path: str | os.PathLike) -> dict[str, ArrayLayout]:
    """Every member's dtype, shape and (for stored members) data offset, from headers alone."""
    layouts = {}
    with open(path, "rb") as raw, zipfile.ZipFile(raw) as archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            name = info.filename[: -len(".npy")]
            with archive.open(info) as member:
                dtype, shape = _read_npy_header(member, f"{os.fspath(path)}:{info.filename}")
                header_len = member.tell()
            offset = array_crc = None
            if info.compress_type == zipfile.ZIP_STORED:
                raw.seek(info.header_offset)
                fields = _LOCAL_HEADER.unpack(raw.read(_LOCAL_HEADER.size))
                name_len, extra_len = fields[-2], fields[-1]
                offset = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len + header_len
                raw.seek(offset - header_len)
                array_crc = crc32.tail(info.CRC, zlib.crc32(raw.read(header_len)), info.file_size - header_len)
            layouts[name] = ArrayLayout(name, dtype, shape, offset, array_crc)
    return layouts


def ring_buffers(count: int, nbytes: int) -> list[np.ndarray]:
    """``count`` reusable uint8 buffers of ``nbytes`` for :func:`read_chunks`. They are backed by
    bytearrays: numpy's own large allocations ask for huge pages, whose first touch cost more than
    the merge's copy itself on the bench VM (a merge of 0.9 GB: 1.8 s against 1.3 s)."""
    return [np.frombuffer(bytearray(nbytes), np.uint8) for _ in range(count)]


def read_chunks(
    handle: BinaryIO,
    nbytes: int,
    chunk_bytes: int = CHUNK_BYTES,
    ring: int | list[np.ndarray] = 0,
    short: str = "ends early",
) -> Iterator[np.ndarray]:
    """``nbytes`` from ``handle``'s position as uint8 arrays of ``chunk_bytes`` (the last one shorter).

    ``ring``: a number of buffers, or the buffers themselves (:func:`ring_buffers`, at least
    ``chunk_bytes`` each), reused in turn (no allocation or page faults per chunk): a chunk is valid
    until ``ring`` more have been yielded. 0: a new array per chunk. A file that ends first raises
    ``ValueError(short)``.
    """
    buffers = ring if isinstance(ring, list) else ring_buffers(ring, min(chunk_bytes, nbytes))
    ring = len(buffers)
    left, turn = nbytes, 0
    while left:
        want = min(left, chunk_bytes)
        buffer = buffers[turn % ring][:want] if ring else np.empty(want, np.uint8)
        view = memoryview(buffer)
        got = 0
        while got < want:
            count = handle.readinto(view[got:])
            if not count:
                raise ValueError(short)
            got += count
        yield buffer
        left -= want
        turn += 1


def iter_chunks(
    path: str | os.PathLike,
    name: str,
    chunk_bytes: int = CHUNK_BYTES,
    layout: ArrayLayout | None = None,
    ring: int = 0,
) -> Iterator[np.ndarray]:
    """Yield member ``name`` in whole-row chunks of about ``chunk_bytes``, with bounded memory
    (``ring``: see :func:`read_chunks`)."""
    layout = layout or array_layout(path)[name]
    row_bytes = layout.nbytes // layout.shape[0] if layout.shape and layout.shape[0] else layout.nbytes
    row_shape = layout.shape[1:] if layout.shape else ()
    chunk_rows = max(1, chunk_bytes // max(row_bytes, 1))
    with open(path, "rb") as raw, contextlib.ExitStack() as stack:
        if layout.offset is not None:
            raw.seek(layout.offset)
            handle: BinaryIO = raw
        else:
            archive = stack.enter_context(zipfile.ZipFile(raw))
            handle = stack.enter_context(archive.open(f"{name}.npy"))
            _read_npy_header(handle, f"{os.fspath(path)}:{name}.npy")
        short = f"{os.fspath(path)}: member {name!r} ends early"
        for chunk in read_chunks(handle, layout.nbytes, chunk_rows * row_bytes, ring, short):
            values = chunk.view(layout.dtype)
            yield values.reshape((-1, *row_shape)) if layout.shape else values.reshape(())


def read_array(path: str | os.PathLike, name: str, layout: ArrayLayout | None = None) -> np.ndarray:
    """One whole member as a writable array (meant for the small ones: paths, labels, meta)."""
    layout = layout or array_layout(path)[name]
    chunks = list(iter_chunks(path, name, chunk_bytes=max(layout.nbytes, 1), layout=layout))
    if not layout.shape:
        return chunks[0].copy()
    if not chunks:
        return np.empty(layout.shape, dtype=layout.dtype)
    return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)


def read_rows(path: str | os.PathLike, name: str, rows: Sequence[int], layout: ArrayLayout | None = None) -> np.ndarray:
    """Selected rows of a member: seeks straight to them when stored, streams when compressed."""
    layout = layout or array_layout(path)[name]
    rows = list(rows)
    row_shape = layout.shape[1:]
    out = np.empty((len(rows), *row_shape), dtype=layout.dtype)
    row_bytes = layout.nbytes // layout.shape[0] if layout.shape[0] else 0
    if layout.offset is not None:
        with open(path, "rb") as raw:
            for slot, row in enumerate(rows):
                raw.seek(layout.offset + row * row_bytes)
                out[slot] = np.frombuffer(raw.read(row_bytes), dtype=layout.dtype).reshape(row_shape)
        return out
    wanted: dict[int, list[int]] = {}
    for slot, row in enumerate(rows):
        wanted.setdefault(row, []).append(slot)
    start = 0
    for chunk in iter_chunks(path, name, layout=layout):
        for row in range(start, start + len(chunk)):
            for slot in wanted.get(row, ()):
                out[slot] = chunk[row - start]
        start += len(chunk)
    return out


def read_span_rows(
    path: str | os.PathLike, name: str, rows: np.ndarray, layout: ArrayLayout | None = None
) -> np.ndarray:
    """Rows of a member by one read of the span from the smallest to the largest when stored
    (rows of a block are mostly consecutive); :func:`read_rows` when compressed."""
    layout = layout or array_layout(path)[name]
    rows = np.asarray(rows, np.int64)
    if layout.offset is None or not len(rows):
        return read_rows(path, name, rows.tolist(), layout)
    size = layout.nbytes // layout.shape[0]
    low, high = int(rows.min()), int(rows.max()) + 1
    with open(path, "rb") as handle:
        span = os.pread(handle.fileno(), (high - low) * size, layout.offset + low * size)
    return np.frombuffer(span, layout.dtype).reshape(high - low, *layout.shape[1:])[rows - low]


def strings_blob(items: Sequence[str]) -> np.ndarray:
    """A list of strings as one uint8 array, NUL-joined (UTF-8, surrogates escaped); see
    :func:`blob_strings`."""
    return np.frombuffer("\0".join(items).encode("utf-8", "surrogateescape"), np.uint8)


def blob_strings(blob: np.ndarray, count: int | None = None) -> list[str]:
    """The strings of :func:`strings_blob`. An empty blob is ``[]``, unless ``count`` says the list
    held one item (an empty string): pass ``count`` where empty strings may occur."""
    text = blob.tobytes().decode("utf-8", "surrogateescape")
    if count is not None:
        return text.split("\0") if count else []
    return text.split("\0") if text else []


def streamed_blob(items: Iterable[str], batch: int = 65536) -> tuple[np.ndarray, int]:
    """:func:`strings_blob` of strings streamed from an iterable, and their count: it holds the
    bytes, never a list of the strings."""
    blob, count, items = bytearray(), 0, iter(items)
    while part := list(itertools.islice(items, batch)):
        blob += (b"\0" if count else b"") + "\0".join(part).encode("utf-8", "surrogateescape")
        count += len(part)
    return np.frombuffer(blob, np.uint8), count


def iter_blob(blob: np.ndarray, count: int, chunk_bytes: int = 1 << 20) -> Iterator[str]:
    """The ``count`` strings of a :func:`strings_blob`, decoded a chunk at a time (never all at once,
    and without a copy of the whole blob)."""
    if not count:
        return
    view = memoryview(np.ascontiguousarray(blob, np.uint8)).cast("B")
    start, size = 0, len(view)
    while True:
        stop = min(start + chunk_bytes, size)
        data = view[start:stop].tobytes()
        while stop < size and b"\0" not in data:  # one string longer than a chunk
            stop = min(stop + chunk_bytes, size)
            data = view[start:stop].tobytes()
        if stop < size:
            data = data[: data.rfind(b"\0")]
        yield from data.decode("utf-8", "surrogateescape").split("\0")
        start += len(data) + 1
        if start > size:
            return
