"""Append byte ranges of other files to an npz member, file to file in the kernel where it can.

The merge appends every shard's pixels to ``dataset.npz``, and a rebuilt shard appends the rows it
reuses; neither needs the bytes in Python. Where the member is stored in a real file and the
kernel has ``copy_file_range``, the kernel copies them (on a 2-core machine near ``cp`` speed,
against read + write), in parallel streams if asked (:class:`_ParallelCopy`), and a second thread
reads the same bytes from the page cache for whatever must see them: ``observe`` and the CRC-32 of
any range whose CRC is not known beforehand. Ranges come with their CRC where it is known for free
(a stored member's CRC from the zip's directory, a reused row's from its shard): at about 2.2 GB/s
for CRC-32 here, recomputing a known CRC would cost as much as the copy. The zip's CRC of the
member is then the known ones combined (:mod:`img2npz.crc32`). Elsewhere (a compressed member, an
in-memory file, a file system without ``copy_file_range``) the bytes are read and written through
zipfile.

``release`` drops each source range from the page cache once both the copy and the digest thread
are past it (:func:`release_cache`), for sources that are read once.

``verify`` reads the copy back from the output, a range as soon as the kernel has copied it, on
threads of their own (the page cache serves it; the copy itself keeps one core busy in the kernel),
and compares each range's CRC-32 with the source's: the copy is then proven as it is made, instead
of by a later pass over the whole output (:class:`CopyMismatch` when a range differs). A
:data:`ReadBack` in its place reads each copied range itself: the merge hashes every row there, so
that the validation need not read the pixels again.
"""

from __future__ import annotations

import contextlib
import errno
import os
import queue
import threading
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from img2npz import crc32
from img2npz.npzformat import CHUNK_BYTES, read_chunks, ring_buffers

_NO_KERNEL_COPY = {errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL, errno.EBADF}

# ``read_back(out_fd, number, position)``: range ``number`` is copied, at ``position`` of the output
# file ``out_fd``; read it (positioned reads only) and raise where it is not what it should be.
ReadBack = Callable[[int, int, int], None]


@dataclass(frozen=True)
class ByteRange:
    """``nbytes`` bytes of file ``path`` from ``offset`` (e.g. a stored member's array data), and
    their CRC-32 when known (:attr:`img2npz.npzformat.ArrayLayout.crc32`), which spares computing it."""

    path: str
    offset: int
    nbytes: int
    crc32: int | None = None

    def chunks(self, buffers: list):
        """The range's bytes in chunks, through ``buffers`` (:func:`img2npz.npzformat.read_chunks`)."""
        short = f"{self.path}: ends before byte {self.offset + self.nbytes}"
        with open(self.path, "rb", buffering=0) as handle:
            handle.seek(self.offset)
            yield from read_chunks(handle, self.nbytes, CHUNK_BYTES, buffers, short)


class CopyMismatch(ValueError):
    """Bytes read back from the output differ from the source range they were copied from."""


def row_ranges(
    path: str, offset: int, row_bytes: int, crcs: Sequence[int], chunk_bytes: int | None = None
) -> list[ByteRange]:
    """Consecutive rows of ``row_bytes`` from ``offset``, one per CRC-32 in ``crcs``, as ranges of
    about ``chunk_bytes`` (one range when None), each with its rows' CRCs combined."""
    per_range = max(1, chunk_bytes // max(row_bytes, 1)) if chunk_bytes else max(1, len(crcs))
    ranges = []
    for start in range(0, len(crcs), per_range):
        part = crcs[start : start + per_range]
        crc = crc32.combine_blocks(part, row_bytes)
        ranges.append(ByteRange(path, offset + start * row_bytes, len(part) * row_bytes, crc))
    return ranges


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


def copy_ranges(
    member,
    ranges: Sequence[ByteRange],
    observe: Callable[[object], None] | None = None,
    release: bool = False,
    streams: int = 1,
    verify: bool | ReadBack = False,
    readers: int = 1,
) -> bool:
    """Append the ranges' bytes, in order, to ``member`` (an :meth:`img2npz.npzformat.NpzWriter.stream`
    member); ``observe`` sees every byte once, in order. ``streams`` > 1 (without ``observe``):
    that many threads copy contiguous parts of the whole at once (:class:`_ParallelCopy`).
    ``verify``: read the copy back and compare, or a :data:`ReadBack` that does, in ``readers``
    threads (see the module docstring). Return whether it was verified: False in parallel streams,
    or where the kernel could not copy (the bytes went through ``member.write_bytes``)."""
    if sum(r.nbytes for r in ranges) > member.remaining:
        raise ValueError("more data than the member's declared shape")
    target = member.direct_target() if hasattr(os, "copy_file_range") else None
    if target is not None and streams > 1 and observe is None:
        if _ParallelCopy(ranges, streams, release).run(member, *target):
            return False  # not read back: one thread after the streams would cost a whole read
    elif target is not None and _KernelCopy(ranges, observe, release, verify, readers).run(member, *target):
        return bool(verify)
    buffers = ring_buffers(2, min(CHUNK_BYTES, max((r.nbytes for r in ranges), default=0)))
    for byte_range in ranges:
        for chunk in byte_range.chunks(buffers):
            if observe is not None:
                observe(chunk)
            member.write_bytes(chunk)
        if release:
            release_cache(byte_range)
    return False


def _kernel_copy(source_fd: int, out_fd: int, offset: int, end: int, position: int, path: str) -> None:
    """``copy_file_range`` from ``offset`` to ``end`` of ``source_fd`` into ``out_fd`` at ``position``."""
    while offset < end:
        count = os.copy_file_range(source_fd, out_fd, end - offset, offset, position)
        if not count:
            raise ValueError(f"{path}: ends before byte {end}")
        offset += count
        position += count


class _ParallelCopy:
    """The ranges cut into ``streams`` parts of equal bytes, each part copied by its own thread with
    ``copy_file_range`` to its place in the output, each thread writing its part front to back.

    The kernel copies are independent (explicit offsets in both files, no shared file position), so
    the parts proceed at once wherever the storage can serve several streams (a parallel file system
    stripes a file over servers; a local disk serves them from one queue). A range with no known
    CRC-32 is read back from its source once the copies are done. The first bytes are copied
    before any thread starts, as the probe of whether the kernel can copy between these files.
    """

    PROBE_BYTES = 1 << 16

    def __init__(self, ranges: Sequence[ByteRange], streams: int, release: bool):
        self.ranges, self.streams, self.release = list(ranges), streams, release
        self.crcs = [r.crc32 for r in self.ranges]

    def _parts(self, skip: int) -> list[list[tuple[int, int, int]]]:
        """Per stream, (range number, start, end) pieces in output order, the first ``skip`` bytes left out."""
        total = sum(r.nbytes for r in self.ranges)
        share = -(-(total - skip) // self.streams) if total > skip else 0
        parts: list[list[tuple[int, int, int]]] = [[] for _ in range(self.streams)]
        at = 0  # output bytes before the current range
        for number, byte_range in enumerate(self.ranges):
            start = max(0, skip - at)
            while start < byte_range.nbytes:
                stream = min((at + start - skip) // share, self.streams - 1)
                end = min(byte_range.nbytes, skip + (stream + 1) * share - at)
                parts[stream].append((number, start, end))
                start = end
            at += byte_range.nbytes
        return parts

    def run(self, member, out_fd: int, position: int) -> bool:
        if not self.ranges or not any(r.nbytes for r in self.ranges):
            return _KernelCopy(self.ranges, None, self.release).run(member, out_fd, position)
        first = next(r for r in self.ranges if r.nbytes)  # the ranges before it are empty
        probe = min(first.nbytes, self.PROBE_BYTES)
        with open(first.path, "rb") as source:
            try:
                _kernel_copy(source.fileno(), out_fd, first.offset, first.offset + probe, position, first.path)
            except OSError as error:
                if error.errno in _NO_KERNEL_COPY:
                    return False
                raise
        starts = [0]
        for byte_range in self.ranges:
            starts.append(starts[-1] + byte_range.nbytes)
        parts = self._parts(probe)
        errors: list[BaseException] = []
        threads = [
            threading.Thread(target=self._copy_part, args=(part, starts, out_fd, position, errors), name=f"copy{n}")
            for n, part in enumerate(parts)
            if part
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        total = starts[-1]
        crc = 0
        for number, byte_range in enumerate(self.ranges):
            if byte_range.nbytes:
                range_crc = self.crcs[number]
                if range_crc is None:
                    range_crc = _range_crc(byte_range)
                crc = crc32.combine(crc, range_crc, byte_range.nbytes)
            if self.release:
                release_cache(byte_range)
        member.appended(total, crc)
        return True

    def _copy_part(self, part, starts: list[int], out_fd: int, position: int, errors: list) -> None:
        try:
            for number, start, end in part:
                byte_range = self.ranges[number]
                with open(byte_range.path, "rb") as source:
                    _kernel_copy(
                        source.fileno(),
                        out_fd,
                        byte_range.offset + start,
                        byte_range.offset + end,
                        position + starts[number] + start,
                        byte_range.path,
                    )
                if self.release:
                    release_cache(ByteRange(byte_range.path, byte_range.offset + start, end - start))
        except BaseException as error:  # re-raised by run
            errors.append(error)


def _range_crc(byte_range: ByteRange) -> int:
    crc = 0
    for chunk in byte_range.chunks(ring_buffers(1, min(CHUNK_BYTES, byte_range.nbytes))):
        crc = zlib.crc32(chunk, crc)
    return crc


def _output_crc(out_fd: int, position: int, nbytes: int, buffer: bytearray | None = None) -> int:
    """The CRC-32 of ``nbytes`` of the output from ``position``, read with positioned reads (the
    copying thread's file position is left alone)."""
    buffer = buffer if buffer is not None else bytearray(min(CHUNK_BYTES, max(nbytes, 1)))
    view, crc, end = memoryview(buffer), 0, position + nbytes
    while position < end:
        got = os.preadv(out_fd, [view[: min(len(buffer), end - position)]], position)
        if not got:
            raise CopyMismatch(f"the output ends before byte {end}")
        crc = zlib.crc32(view[:got], crc)
        position += got
    return crc


def _check_copy(byte_range: ByteRange, expected: int, copied: int) -> None:
    if copied != expected:
        raise CopyMismatch(
            f"{byte_range.path}: the {byte_range.nbytes} bytes from byte {byte_range.offset} read back "
            f"from the copy have CRC-32 {copied:08x}, the source {expected:08x}"
        )


class _KernelCopy:
    """One ``copy_file_range`` pass over the ranges, with the digest thread behind it, and with
    ``verify`` the read-back threads, which take each range from a queue once it is copied."""

    def __init__(
        self, ranges: Sequence[ByteRange], observe, release: bool, verify: bool | ReadBack = False, readers: int = 1
    ):
        self.ranges, self.observe, self.release = ranges, observe, release
        self.verify = bool(verify)
        self.read_back: ReadBack = verify if callable(verify) else self._read_crc
        self.readers = max(1, readers) if verify else 0
        self.crcs = [r.crc32 for r in ranges]
        self.copied_crcs: list[int | None] = [None] * len(ranges)
        self.checked = [False] * len(ranges)
        self.copied: queue.SimpleQueue = queue.SimpleQueue()  # (range number, output position), None at the end
        self.error: BaseException | None = None
        self.stop = False
        self.digested = 0  # ranges the digest thread is done with
        self.released = 0
        self._buffers = threading.local()

    def run(self, member, out_fd: int, position: int) -> bool:
        """Copy to ``out_fd`` from ``position`` and account the bytes to ``member``; False, having
        written nothing, when the kernel or file system cannot copy this way."""
        start = position
        thread = None
        readers = [
            threading.Thread(target=self._read_back, args=(out_fd,), name=f"read-back{n}", daemon=True)
            for n in range(self.readers)
        ]
        try:
            for copied, byte_range in enumerate(self.ranges):
                if self.error is not None:  # a reader found a range wrong: copy no more
                    break
                self._release_behind(copied)
                if readers and copied:
                    self.copied.put((copied - 1, position - self.ranges[copied - 1].nbytes))
                with open(byte_range.path, "rb") as source:
                    offset, end = byte_range.offset, byte_range.offset + byte_range.nbytes
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
                            thread = threading.Thread(target=self._digest, name="digest", daemon=True)
                            thread.start()
                            for reader in readers:
                                reader.start()
                        offset += count
                        position += count
            if readers and self.ranges and readers[0].is_alive() and self.error is None:
                self.copied.put((len(self.ranges) - 1, position - self.ranges[-1].nbytes))
        except BaseException:
            self.stop = True
            raise
        finally:
            started = [reader for reader in readers if reader.is_alive()]
            for _ in started:
                self.copied.put(None)
            for reader in started:
                reader.join()
            if thread is not None:
                thread.join()
        if self.error is not None:
            raise self.error
        self._release_behind(len(self.ranges))
        crc, at = 0, start
        for number, (byte_range, range_crc) in enumerate(zip(self.ranges, self.crcs, strict=True)):
            if self.verify and byte_range.nbytes:
                if not self.checked[number]:  # copied before the kernel's first answer: read back here
                    self.read_back(out_fd, number, at)
                if self.copied_crcs[number] is not None:
                    _check_copy(byte_range, range_crc, self.copied_crcs[number])
            crc = crc32.combine(crc, range_crc, byte_range.nbytes) if byte_range.nbytes else crc
            at += byte_range.nbytes
        member.appended(position - start, crc)
        return True

    def _digest(self) -> None:
        """Read every range that ``observe`` must see or whose CRC is unknown (the digest thread)."""
        try:
            buffers = ring_buffers(2, min(CHUNK_BYTES, max((r.nbytes for r in self.ranges), default=0)))
            for number, byte_range in enumerate(self.ranges):
                if self.observe is not None or self.crcs[number] is None:
                    crc = 0
                    for chunk in byte_range.chunks(buffers):
                        if self.stop:
                            return
                        if self.crcs[number] is None:
                            crc = zlib.crc32(chunk, crc)
                        if self.observe is not None:
                            self.observe(chunk)
                    if self.crcs[number] is None:
                        self.crcs[number] = crc
                self.digested = number + 1
        except BaseException as error:  # re-raised in the copying thread
            self.error = error

    def _read_back(self, out_fd: int) -> None:
        """Each copied range, as the output holds it, to :attr:`read_back` (a read-back thread)."""
        try:
            while (item := self.copied.get()) is not None:
                number, position = item
                if not self.stop and self.ranges[number].nbytes and self.error is None:
                    self.read_back(out_fd, number, position)
                    self.checked[number] = True
        except BaseException as error:  # re-raised in the copying thread
            self.error = error

    def _read_crc(self, out_fd: int, number: int, position: int) -> None:
        """The plain read-back: the range's CRC-32 as the output holds it, compared after the copy."""
        buffer = getattr(self._buffers, "buffer", None)
        if buffer is None:
            largest = max((r.nbytes for r in self.ranges), default=1) or 1
            buffer = self._buffers.buffer = bytearray(min(CHUNK_BYTES, largest))
        self.copied_crcs[number] = _output_crc(out_fd, position, self.ranges[number].nbytes, buffer)

    def _release_behind(self, copied: int) -> None:
        """Release the ranges that both the copy and the digest thread are done with."""
        if not self.release:
            return
        done = min(copied, self.digested)  # nothing is copied before the digest thread starts
        for byte_range in self.ranges[self.released : done]:
            release_cache(byte_range)
        self.released = max(self.released, done)
