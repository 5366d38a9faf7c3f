"""The merge's read-back of the pixels it copies, row by row: the validation's pixel pass, moved.

As the kernel copies the shards' rows into ``dataset.npz`` (:mod:`img2npz.filecopy`), threads read
each copied range back from the output and run on it what validate-report would run on every row
it has not seen before (:func:`img2npz.pixelpass.scan_chunk`): its sha256, CRC-32 and one-colour
test, and for float dtypes finiteness and range. Each row's values must equal those its shard
recorded when it was decoded: the first that differs stops the merge (:class:`CopyMismatch`
naming the image) before ``dataset.npz`` is in place. The merge then writes a proof that says so
(:class:`img2npz.contract.CopyCheck`), and validate-report reads no pixel of a dataset it proves:
on a first build, the hashing overlaps the copy (which keeps a core busy in the kernel) instead of
following it in another job. A rerun hashes the rows of its new shards only: the proof names the
shards whose rows a merge hashed (each with its file's identity and the rows taken from it), and a
range copied again from one of those, unchanged, is checked by its CRC-32.
"""

from __future__ import annotations

import os
import threading
import zlib
from collections.abc import Sequence

import numpy as np

from img2npz.filecopy import ByteRange, CopyMismatch
from img2npz.pixelpass import CHUNK_ROWS_BYTES, scan_chunk

# A reader holds at least one row: readers are as many as fit this much buffer (for huge rows).
READERS_BYTES = 256 << 20


class RowReadBack:
    """A :data:`img2npz.filecopy.ReadBack` for ranges of whole rows of ``row_shape`` and ``dtype``,
    in output order, compared with what the shards ``recorded`` for each output row (``sha256s``,
    ``crc32s``, ``constant``; ``paths`` name them). A range ``trusted`` (from a shard whose rows
    an earlier merge hashed, unchanged since) is checked against its CRC-32 only."""

    def __init__(
        self,
        ranges: Sequence[ByteRange],
        row_shape: tuple[int, ...],
        dtype: np.dtype,
        recorded: dict[str, np.ndarray],
        paths: Sequence[str],
        trusted: Sequence[bool] | None = None,
    ):
        self.ranges = list(ranges)
        self.trusted = list(trusted) if trusted is not None else [False] * len(self.ranges)
        self.row_shape, self.dtype = tuple(row_shape), np.dtype(dtype)
        self.row_bytes = int(np.prod(self.row_shape)) * self.dtype.itemsize
        starts = np.cumsum([0] + [r.nbytes for r in self.ranges])
        if self.row_bytes == 0 or (starts % self.row_bytes).any():
            raise ValueError("a range of no whole rows")
        self.first_row = (starts // self.row_bytes).tolist()  # each range's first row in the output
        self.recorded = recorded
        self.paths = paths
        rows = self.first_row[-1]
        self.read = np.zeros(rows, bool)
        self.hashed = np.zeros(rows, bool)
        self.finite, self.low, self.high = True, None, None
        self._lock = threading.Lock()  # readers run in parallel threads
        self.chunk_rows = max(1, CHUNK_ROWS_BYTES // self.row_bytes)

    def readers(self, wanted: int) -> int:
        """At most ``wanted`` readers, as many as :data:`READERS_BYTES` of buffers allow."""
        return max(1, min(wanted, READERS_BYTES // (self.chunk_rows * self.row_bytes)))

    def __call__(self, out_fd: int, number: int, position: int) -> None:
        first, count = self.first_row[number], self.ranges[number].nbytes // self.row_bytes
        buffer = np.empty(min(count, self.chunk_rows) * self.row_bytes, np.uint8)
        if self.trusted[number]:
            self._check_crc(out_fd, number, position, buffer)
            self.read[first : first + count] = True
            return
        for at in range(0, count, self.chunk_rows):
            rows = min(self.chunk_rows, count - at)
            data = _pread(out_fd, buffer[: rows * self.row_bytes], position + at * self.row_bytes)
            scan = scan_chunk(data.view(self.dtype).reshape(rows, *self.row_shape))
            spot = slice(first + at, first + at + rows)
            constant = np.zeros(rows, bool)
            constant[scan.constant] = True
            self._compare(spot, scan.digests, np.asarray(scan.crcs, np.uint32), constant)
            self.read[spot] = True
            self.hashed[spot] = True
            with self._lock:
                self.finite = self.finite and scan.finite
                if scan.low is not None:  # float rows
                    self.low = scan.low if self.low is None else min(self.low, scan.low)
                    self.high = scan.high if self.high is None else max(self.high, scan.high)

    def _compare(self, spot: slice, digests: np.ndarray, crcs: np.ndarray, constant: np.ndarray) -> None:
        wrong = (
            (digests != np.asarray(self.recorded["sha256s"][spot], np.uint8)).any(axis=1)
            | (crcs != np.asarray(self.recorded["crc32s"][spot], np.uint32))
            | (constant != np.asarray(self.recorded["constant"][spot], bool))
        )
        if wrong.any():
            row = spot.start + int(np.flatnonzero(wrong)[0])
            raise CopyMismatch(
                f"{self.paths[row]}: its row read back from the copy has another sha256, CRC-32 or "
                "one-colour test than its shard recorded; rerun its shard"
            )

    def _check_crc(self, out_fd: int, number: int, position: int, buffer: np.ndarray) -> None:
        byte_range, crc = self.ranges[number], 0
        for at in range(0, byte_range.nbytes, len(buffer)):
            part = min(len(buffer), byte_range.nbytes - at)
            crc = zlib.crc32(_pread(out_fd, buffer[:part], position + at), crc)
        if crc != byte_range.crc32:
            raise CopyMismatch(
                f"{byte_range.path}: the {byte_range.nbytes} bytes from byte {byte_range.offset} read back "
                f"from the copy have CRC-32 {crc:08x}, the source {byte_range.crc32:08x}; rerun its shard"
            )

    def finish(self) -> None:
        """Raise :class:`CopyMismatch` unless every row was read back."""
        if not self.read.all():
            raise CopyMismatch(f"{int((~self.read).sum())} rows were not read back")


def _pread(fd: int, buffer: np.ndarray, position: int) -> np.ndarray:
    view, got = memoryview(buffer), 0
    while got < len(buffer):
        count = os.preadv(fd, [view[got:]], position + got)
        if not count:
            raise CopyMismatch(f"the output ends before byte {position + len(buffer)}")
        got += count
    return buffer
