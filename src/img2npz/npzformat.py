"""The NPZ layout that img2npz writes and reads.

An img2npz ``.npz`` is an ordinary zip archive that ``numpy.load`` opens, with three promises more:

1. **Stored, aligned members.** Unless compression was asked for, every member ``KEY.npy`` is stored
   (``ZIP_STORED``) and its data -- the NPY header, then the array bytes -- starts at a file offset that
   is a multiple of :data:`ALIGNMENT` (64). NPY headers are themselves padded to 64 bytes, so every
   array's first element is 64-byte aligned and can be memory-mapped in place. The padding sits in the
   local header's extra field (id ``0xD935``, as Android's ``zipalign`` does).
2. **Reproducible bytes.** Every member carries the timestamp 1980-01-01 00:00:00, mode 0644 and the
   Unix "made by" system, and members appear in the order they were added, so the same arrays always
   give the same file.
3. **Streamable.** A member's size is known before it is written (dtype and shape), so a large array
   can be written in chunks (:meth:`NpzWriter.stream`) with memory bounded by the chunk.

Readers: :func:`array_layout` finds where each stored array's bytes start; :func:`read_array` and
:func:`iter_chunks` read through plain file reads (no ``np.load`` copy of the whole archive, and no
memory map whose pages would count against the reader's resident memory).
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import struct
import threading
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
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


@dataclass(frozen=True)
class ByteRange:
    """``nbytes`` bytes of file ``path`` from ``offset`` (e.g. a stored member's array data), and
    their CRC-32 when known (:attr:`ArrayLayout.crc32`), which spares recomputing it."""

    path: str
    offset: int
    nbytes: int
    crc32: int | None = None


def _read_ranges(ranges: Sequence[ByteRange], chunk_bytes: int = CHUNK_BYTES, ring: int = 2) -> Iterator[memoryview]:
    """The ranges' bytes in chunks, through ``ring`` reused buffers (a chunk is valid until
    ``ring`` more have been yielded)."""
    buffers = [bytearray(chunk_bytes) for _ in range(ring)]
    turn = 0
    for byte_range in ranges:
        with open(byte_range.path, "rb", buffering=0) as handle:
            handle.seek(byte_range.offset)
            left = byte_range.nbytes
            while left:
                view = memoryview(buffers[turn % ring])[: min(left, chunk_bytes)]
                got = 0
                while got < len(view):
                    count = handle.readinto(view[got:])
                    if not count:
                        raise ValueError(f"{byte_range.path}: ends before byte {byte_range.offset + byte_range.nbytes}")
                    got += count
                yield view
                left -= len(view)
                turn += 1


def release_cache(byte_range: ByteRange) -> None:
    """Ask the kernel to drop a copied range from the page cache (clean pages go at once).

    The copy's new pages are then taken from these instead of fresh memory, which is what costs
    most where memory is short or a VM hands free pages back to its host (on the bench VM, merging
    3.9 GB of just-built shards took 11-12 s without this and 4-7 s with it).
    """
    if not hasattr(os, "posix_fadvise") or not byte_range.nbytes:
        return
    with contextlib.suppress(OSError):
        fd = os.open(byte_range.path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, byte_range.offset, byte_range.nbytes, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


# zipfile's member writer keeps its running CRC and sizes in these fields; where a future Python
# renames them, copy_from falls back to reading and writing through the member.
_KERNEL_COPY_FIELDS = {"_crc", "_file_size", "_compress_size"}


def _kernel_copy(
    ranges: Sequence[ByteRange],
    member: BinaryIO,
    fileobj: BinaryIO,
    observe: Callable[[memoryview], None] | None,
    release: bool,
) -> bool:
    """copy_file_range the ranges to ``fileobj``'s position while a thread reads them for ``observe``
    and for the CRCs not known beforehand; return False, having written nothing, when the kernel or
    file system cannot copy that way. ``release``: see :meth:`_StreamedMember.copy_from`."""
    try:
        out_fd = fileobj.fileno()
    except (OSError, ValueError):  # an in-memory file
        return False
    fileobj.flush()
    start = position = fileobj.tell()
    range_crcs = [byte_range.crc32 for byte_range in ranges]
    state = {"error": None, "stop": False, "digested": 0, "released": 0}

    def release_copied(copied: int) -> None:
        """Release the ranges that both the copy and the digest thread are done with."""
        if not release:
            return
        done = min(copied, state["digested"])  # nothing is copied before the digest thread starts
        for byte_range in ranges[state["released"] : done]:
            release_cache(byte_range)
        state["released"] = max(state["released"], done)

    def digest() -> None:
        try:
            for number, byte_range in enumerate(ranges):
                if range_crcs[number] is not None and observe is None:
                    state["digested"] = number + 1
                    continue
                crc = 0
                for chunk in _read_ranges([byte_range]):
                    if state["stop"]:
                        return
                    if range_crcs[number] is None:
                        crc = zlib.crc32(chunk, crc)
                    if observe is not None:
                        observe(chunk)
                if range_crcs[number] is None:
                    range_crcs[number] = crc
                state["digested"] = number + 1
        except BaseException as error:  # re-raised in the caller's thread
            state["error"] = error

    thread = None
    try:
        for copied, byte_range in enumerate(ranges):
            release_copied(copied)
            with open(byte_range.path, "rb") as source:
                end = byte_range.offset + byte_range.nbytes
                offset = byte_range.offset
                while offset < end:
                    try:
                        count = os.copy_file_range(source.fileno(), out_fd, end - offset, offset, position)
                    except OSError as error:
                        if thread is None and error.errno in _NO_KERNEL_COPY:
                            return False
                        raise
                    if not count:
                        raise ValueError(f"{byte_range.path}: ends before byte {end}")
                    if thread is None:  # the kernel can copy: from here on every byte goes this way
                        thread = threading.Thread(target=digest, name="crc32", daemon=True)
                        thread.start()
                    offset += count
                    position += count
    except BaseException:
        state["stop"] = True
        raise
    finally:
        if thread is not None:
            thread.join()
    if state["error"] is not None:
        raise state["error"]
    release_copied(len(ranges))
    fileobj.seek(position)
    for byte_range, range_crc in zip(ranges, range_crcs, strict=True):
        if byte_range.nbytes:
            member._crc = crc32.combine(member._crc, range_crc, byte_range.nbytes)
    member._file_size += position - start
    member._compress_size += position - start
    return True


_NO_KERNEL_COPY = {errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL, errno.EBADF}


class _StreamedMember:
    """Accepts an array's rows in order; checks that exactly the declared bytes arrive."""

    def __init__(self, handle: BinaryIO, dtype: np.dtype, expected: int, fileobj: BinaryIO, stored: bool):
        self._handle = handle
        self._dtype = dtype
        self._fileobj = fileobj
        self._stored = stored
        self.remaining = expected

    def copy_from(
        self,
        ranges: Sequence[ByteRange],
        observe: Callable[[memoryview], None] | None = None,
        release: bool = False,
    ) -> None:
        """Append raw array bytes of other files, in order; ``observe`` sees every byte once.

        Where it can (a stored member, a kernel with ``copy_file_range``), the kernel copies the bytes
        file to file, and a second thread reads the same bytes from the page cache for the zip CRC and
        ``observe``: on a 2-core machine that runs near ``cp`` speed instead of read + write.
        ``release`` drops each range from the page cache once copied (:func:`release_cache`), for
        sources that are read once, like shards being merged.
        """
        nbytes = sum(r.nbytes for r in ranges)
        if nbytes > self.remaining:
            raise ValueError("more data than the member's declared shape")
        kernel = self._stored and hasattr(os, "copy_file_range") and vars(self._handle).keys() >= _KERNEL_COPY_FIELDS
        if not (kernel and _kernel_copy(ranges, self._handle, self._fileobj, observe, release)):
            for byte_range in ranges:
                for chunk in _read_ranges([byte_range]):
                    if observe is not None:
                        observe(chunk)
                    self._handle.write(chunk)
                if release:
                    release_cache(byte_range)
        self.remaining -= nbytes

    def write_checked(self, data: memoryview | bytes, crc: int) -> None:
        """Append raw array bytes whose CRC-32 the caller already knows (zip's own is not recomputed)."""
        nbytes = memoryview(data).nbytes
        if nbytes > self.remaining:
            raise ValueError("more data than the member's declared shape")
        if self._stored and vars(self._handle).keys() >= _KERNEL_COPY_FIELDS:
            self._fileobj.write(data)
            self._handle._crc = crc32.combine(self._handle._crc, crc, nbytes)
            self._handle._file_size += nbytes
            self._handle._compress_size += nbytes
        else:
            self._handle.write(data)
        self.remaining -= nbytes

    def write(self, rows: np.ndarray) -> None:
        if rows.dtype != self._dtype:
            raise TypeError(f"expected dtype {self._dtype}, got {rows.dtype}")
        data = _as_bytes(rows)
        if data.nbytes > self.remaining:
            raise ValueError("more data than the member's declared shape")
        self._handle.write(data)
        self.remaining -= data.nbytes


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


def iter_chunks(
    path: str | os.PathLike,
    name: str,
    chunk_bytes: int = CHUNK_BYTES,
    layout: ArrayLayout | None = None,
    ring: int = 0,
) -> Iterator[np.ndarray]:
    """Yield member ``name`` in whole-row chunks of about ``chunk_bytes``, with bounded memory.

    ``ring > 0`` reuses that many buffers in turn (no allocation or page faults per chunk): the
    caller must be done with a chunk before ``ring`` more have been yielded.
    """
    layout = layout or array_layout(path)[name]
    row_bytes = layout.nbytes // layout.shape[0] if layout.shape and layout.shape[0] else layout.nbytes
    rows_per_chunk = max(1, chunk_bytes // max(row_bytes, 1))
    total_rows = layout.shape[0] if layout.shape else 1
    row_shape = layout.shape[1:] if layout.shape else ()
    with open(path, "rb") as raw, contextlib.ExitStack() as stack:
        if layout.offset is not None:
            raw.seek(layout.offset)
            handle: BinaryIO = raw
        else:
            archive = stack.enter_context(zipfile.ZipFile(raw))
            handle = stack.enter_context(archive.open(f"{name}.npy"))
            _read_npy_header(handle, f"{os.fspath(path)}:{name}.npy")
        done = 0
        buffers = [np.empty(rows_per_chunk * row_bytes, np.uint8) for _ in range(ring)]
        while done < total_rows:
            rows = min(rows_per_chunk, total_rows - done)
            want = rows * row_bytes
            buffer = buffers[(done // rows_per_chunk) % ring][:want] if ring else np.empty(want, np.uint8)
            view = memoryview(buffer)
            got = 0
            while got < want:
                count = handle.readinto(view[got:])
                if not count:
                    raise ValueError(f"{os.fspath(path)}: member {name!r} ends early")
                got += count
            chunk = buffer.view(layout.dtype)
            yield chunk.reshape((rows, *row_shape)) if layout.shape else chunk.reshape(())
            done += rows


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
