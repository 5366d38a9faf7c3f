"""The merge's read-back of the pixels it copies, row by row: the validation's pixel pass, moved.

As the kernel copies the shards' rows into ``dataset.npz`` (:mod:`img2npz.filecopy`), threads read
each copied range back from the output and run on it what validate-report would run on every row
it has not seen before (:func:`img2npz.pixelpass.scan_chunk`): its sha256, CRC-32 and one-colour
test, and for float dtypes finiteness and range. Each row's values must equal those its shard
recorded when it was decoded (:class:`CopyMismatch` naming the image where one differs). The merge
then writes a proof that says so (:class:`img2npz.contract.CopyCheck`), and validate-report reads
no pixel of a dataset it proves: on a first build, the hashing overlaps the copy (which keeps a
core busy in the kernel) instead of following it in another job. A rerun hashes the rows of its
new shards only: the proof names the shards whose rows a merge hashed (with their files' mtimes),
and a row copied again from one of those, unchanged, is checked by its range's CRC-32.
"""

from __future__ import annotations

import os
import threading
import zlib
from collections.abc import Sequence

import numpy as np

from img2npz.filecopy import ByteRange, CopyMismatch
from img2npz.pixelpass import CHUNK_ROWS_BYTES, scan_chunk
from img2npz.treedigest import DIGEST_BYTES


class RowReadBack:
    """A :data:`img2npz.filecopy.ReadBack` for ranges of whole rows of ``row_shape`` and ``dtype``,
    in output order; it gathers every row's values, compared by :meth:`check` once all are read.
    A range ``trusted`` (from a shard whose rows an earlier merge hashed, unchanged since) is only
    checked against its CRC-32, as it is read back: its rows' values were compared then."""

    def __init__(
        self,
        ranges: Sequence[ByteRange],
        row_shape: tuple[int, ...],
        dtype: np.dtype,
        trusted: Sequence[bool] | None = None,
    ):
        self.ranges = list(ranges)
        self.trusted = list(trusted) if trusted is not None else [False] * len(self.ranges)
        self.row_shape, self.dtype = tuple(row_shape), np.dtype(dtype)
        self.row_bytes = int(np.prod(self.row_shape)) * self.dtype.itemsize
        starts = np.cumsum([0] + [r.nbytes for r in ranges])
        if self.row_bytes == 0 or (starts % self.row_bytes).any():
            raise ValueError("a range of no whole rows")
        self.first_row = (starts // self.row_bytes).tolist()  # each range's first row in the output
        self.nbytes = [r.nbytes for r in ranges]
        rows = self.first_row[-1]
        self.digests = np.zeros((rows, DIGEST_BYTES), np.uint8)
        self.crcs = np.zeros(rows, np.uint32)
        self.constant = np.zeros(rows, bool)
        self.read = np.zeros(rows, bool)
        self.hashed = np.zeros(rows, bool)
        self.finite, self.low, self.high = True, None, None
        self._lock = threading.Lock()  # readers run in parallel threads
        self.chunk_rows = max(1, CHUNK_ROWS_BYTES // self.row_bytes)

    def __call__(self, out_fd: int, number: int, position: int) -> None:
        first, count = self.first_row[number], self.nbytes[number] // self.row_bytes
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
            self.digests[spot] = scan.digests
            self.crcs[spot] = scan.crcs
            self.constant[spot] = False
            self.constant[first + at + scan.constant] = True
            self.read[spot] = True
            self.hashed[spot] = True
            with self._lock:
                self.finite = self.finite and scan.finite
                if scan.low is not None:  # float rows
                    self.low = scan.low if self.low is None else min(self.low, scan.low)
                    self.high = scan.high if self.high is None else max(self.high, scan.high)

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

    def check(self, sha256s: np.ndarray, crc32s: np.ndarray, constant: np.ndarray, paths: Sequence[str]) -> None:
        """Raise :class:`CopyMismatch` naming the first row hashed here whose copy differs from what
        its shard recorded (``sha256s``, ``crc32s``, ``constant``, per row in output order)."""
        if not self.read.all():
            raise CopyMismatch(f"{int((~self.read).sum())} rows were not read back")
        wrong = self.hashed & (
            (self.digests != np.asarray(sha256s, np.uint8)).any(axis=1)
            | (self.crcs != np.asarray(crc32s, np.uint32))
            | (self.constant != np.asarray(constant, bool))
        )
        if wrong.any():
            row = int(np.flatnonzero(wrong)[0])
            raise CopyMismatch(
                f"{paths[row]}: its row read back from the copy has another sha256, CRC-32 or one-colour "
                f"test than its shard recorded ({int(wrong.sum())} rows differ); rerun its shard"
            )


def _pread(fd: int, buffer: np.ndarray, position: int) -> np.ndarray:
    view, got = memoryview(buffer), 0
    while got < len(buffer):
        count = os.preadv(fd, [view[got:]], position + got)
        if not count:
            raise CopyMismatch(f"the output ends before byte {position + len(buffer)}")
        got += count
    return buffer
