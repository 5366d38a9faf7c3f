"""The rows a rebuilt shard takes from the previous build instead of decoding them again.

When a shard's manifest changes, its job opens the kept versions of the same shard and the kept
shards whose path range overlaps its own (:func:`img2npz.kept.candidates`: a new cut moves rows
between neighbours), and copies every row whose key still holds: the path, the file's size and
mtime in ns, and the decoder key (the pixel config, the decompression-bomb limit, Pillow's version
and :data:`img2npz.decode.DECODER_VERSION`: all that shapes a row's bytes). Everything else is
decoded. A kept file that is missing, truncated or not a shard of this kind is passed over with a
log line, never an error. A copied row keeps the CRC-32 and the sha256 it got when decoded (shards
record both per row), so a row damaged on disk since is found by validate-report, which checks
every row of the dataset against them.

The bytes of a kept row come from the previous ``dataset.npz`` when the kept shard went into it (the
merge notes each one's first row there, and the file's size and images CRC-32): it holds the same
bytes, it is the copy most likely in the page cache (the last one written and checked, and what
training reads), and the next merge deletes it anyway. Otherwise they come from the kept file. Rows
that are read here (to be counted) and fail their CRC in the dataset are read from the kept file.
"""

from __future__ import annotations

import json
import logging
import mmap
import os
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from img2npz import fingerprint
from img2npz.contract import ShardMeta
from img2npz.dtypes import uint8_of
from img2npz.filecopy import ByteRange, copy_ranges, release_cache, row_ranges
from img2npz.kept import candidates, kept_dir, merged_images
from img2npz.npzformat import array_layout, read_array
from img2npz.treedigest import DIGEST_BYTES

log = logging.getLogger(__name__)


@dataclass
class KeptShard:
    """One opened kept shard: where its rows are, and their CRCs and summed channel counts."""

    path: str
    fd: int
    offset: int  # of row 0 in the file
    row_bytes: int
    images: int  # decoded rows (padding rows for failures follow them)
    crcs: np.ndarray  # uint32 CRC-32 of each decoded row's bytes
    histogram: np.ndarray  # (3, 256) counts of all its decoded rows' uint8 pixels
    phashes: np.ndarray  # (images, fingerprint.BYTES) uint8 perceptual hash of each decoded row
    mean_rgb: np.ndarray  # (images, 3) uint8 mean colour of each decoded row
    sha256s: np.ndarray  # (images, 32) uint8 sha256 of each decoded row's bytes (img2npz.treedigest)
    merged: tuple[str, int, int] | None = None  # (dataset path, fd, offset of this shard's row 0) to read instead

    def byte_ranges(self, row: int, crcs: Sequence[int], chunk_bytes: int = 8 << 20) -> list[ByteRange]:
        """Rows from ``row`` on, one per CRC in ``crcs``, where :meth:`read` would read them, in ranges
        of about ``chunk_bytes`` (each released once copied, so the next one's pages are those)."""
        path, _, offset = self.merged or (self.path, self.fd, self.offset)
        return row_ranges(path, offset + row * self.row_bytes, self.row_bytes, crcs, chunk_bytes)

    def read(
        self, rows: Sequence[int], release: bool = False, chunk_bytes: int = 4 << 20
    ) -> Iterator[tuple[int, memoryview, bool]]:
        """``(row, bytes, crc_ok)`` for each of ``rows`` (ascending), in runs mapped from the file
        (no copy; each view is valid until the next is yielded), from the merged dataset when there
        is one (a row failing its CRC there is read again from the kept file). ``release`` drops each
        run from the page cache once its rows are through (:func:`img2npz.filecopy.release_cache`):
        rows copied once are not read again, and their pages serve the new file's."""
        path, fd, offset = self.merged or (self.path, self.fd, self.offset)
        per_read = max(1, chunk_bytes // max(self.row_bytes, 1))
        start = 0
        while start < len(rows):
            stop = start + 1
            while stop < len(rows) and stop - start < per_read and rows[stop] == rows[stop - 1] + 1:
                stop += 1
            at = offset + rows[start] * self.row_bytes
            want = (stop - start) * self.row_bytes
            run = _mapped(fd, at, want, path)
            for slot, row in enumerate(rows[start:stop]):
                data = run[slot * self.row_bytes : (slot + 1) * self.row_bytes]
                good = zlib.crc32(data) == int(self.crcs[row])
                if not good and self.merged is not None:
                    data = memoryview(os.pread(self.fd, self.row_bytes, self.offset + row * self.row_bytes))
                    good = zlib.crc32(data) == int(self.crcs[row])
                yield row, data, good
            del run, data
            if release:
                release_cache(ByteRange(path, at, want))
            start = stop


def _mapped(fd: int, offset: int, nbytes: int, path: str) -> memoryview:
    """``nbytes`` of file ``fd`` from ``offset``, mapped read-only (reading them copies nothing;
    unmapped when the last view of it goes)."""
    if not nbytes:
        return memoryview(b"")
    if os.fstat(fd).st_size < offset + nbytes:
        raise ValueError(f"{path}: ends before byte {offset + nbytes}")
    start = offset - offset % mmap.ALLOCATIONGRANULARITY
    mapped = mmap.mmap(fd, offset + nbytes - start, access=mmap.ACCESS_READ, offset=start)
    return memoryview(mapped)[offset - start :]


class PreviousRows:
    """The decoded rows of kept shards built with the same ``decoder`` key, found by path.

    Opens :func:`candidates` for the shard ``shard`` of ``shards_dir`` (None: nothing to reuse)
    spanning ``first_path`` to ``last_path``; a kept shard is used when it is of this shard format,
    its ``meta`` has this ``decoder`` key and its images this ``dtype`` and ``row_shape``.
    """

    def __init__(
        self,
        shards_dir: str | os.PathLike | None,
        shard: str,
        first_path: str,
        last_path: str,
        decoder: dict,
        dtype: np.dtype,
        row_shape: tuple,
    ):
        self._decoder = decoder
        self._dtype, self._row_shape = np.dtype(dtype), tuple(row_shape)
        self.shards: list[KeptShard] = []
        self._rows: dict[str, tuple[int, int, int, int]] = {}  # path -> (shard, row, size, mtime_ns)
        self._fds: list[int] = []
        found = candidates(shards_dir, shard, first_path, last_path) if shards_dir is not None else []
        merged = merged_images(kept_dir(shards_dir), self._dtype, self._row_shape) if found else None
        self._dataset_fd = -1
        if merged is not None:
            self._dataset_fd = os.open(merged[0], os.O_RDONLY)
            self._fds.append(self._dataset_fd)
        for path, dataset_row in found:
            try:
                self._open(os.fspath(path), (*merged, dataset_row) if merged and dataset_row >= 0 else None)
            except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, json.JSONDecodeError) as error:
                log.info("not reusing %s: %s", path, " ".join(str(error).split()))
        if self.shards:
            in_dataset = sum(shard.merged is not None for shard in self.shards)
            log.info(
                "%d kept rows in %d kept shards (%d read from %s)",
                len(self._rows),
                len(self.shards),
                in_dataset,
                merged[0] if merged else "their own files",
            )

    def _open(self, path: str, merged: tuple[str, int, int] | None) -> None:
        layouts = array_layout(path)
        meta = ShardMeta.from_json(str(read_array(path, "meta", layouts["meta"])))
        if meta.decoder != self._decoder:
            raise ValueError(f"built with {meta.decoder}, not {self._decoder}")
        images = layouts["images"]
        if images.offset is None or images.dtype != self._dtype or images.shape[1:] != self._row_shape:
            raise ValueError(f"images are {images.dtype} {images.shape}, stored={images.offset is not None}")
        count = int(meta.images)
        columns = [read_array(path, name, layouts[name]) for name in ("paths", "sizes", "mtimes_ns", "crc32s")]
        histogram = read_array(path, "histogram", layouts["histogram"])
        phashes = read_array(path, "phashes", layouts["phashes"])
        mean_rgb = read_array(path, "mean_rgb", layouts["mean_rgb"])
        sha256s = read_array(path, "sha256s", layouts["sha256s"])
        if (
            any(len(column) != count for column in columns)
            or count > images.shape[0]
            or histogram.shape != (3, 256)
            or phashes.shape != (count, fingerprint.BYTES)
            or mean_rgb.shape != (count, 3)
            or sha256s.shape != (count, DIGEST_BYTES)
        ):
            raise ValueError("member lengths disagree")
        number = len(self.shards)
        row_bytes = images.nbytes // images.shape[0] if images.shape[0] else 0
        fd = os.open(path, os.O_RDONLY)
        self._fds.append(fd)
        in_dataset = None
        if merged:
            dataset, offset, first_row = merged
            in_dataset = (dataset, self._dataset_fd, offset + first_row * row_bytes)
        self.shards.append(
            KeptShard(
                path, fd, images.offset, row_bytes, count, columns[3], histogram, phashes, mean_rgb, sha256s, in_dataset
            )
        )
        for row, (name, size, mtime) in enumerate(zip(*(column.tolist() for column in columns[:3]), strict=True)):
            self._rows.setdefault(name, (number, row, size, mtime))

    def find(self, path: str, size: int, mtime_ns: int) -> tuple[int, int] | None:
        """(kept shard, row) of ``path`` when its size and mtime still match, else None."""
        found = self._rows.get(path)
        return found[:2] if found is not None and found[2:] == (size, mtime_ns) else None

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()
        self.shards.clear()

    def __enter__(self) -> PreviousRows:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class RowCopier:
    """Copies the planned kept rows in manifest order, and keeps the run's channel counts in
    :attr:`histogram` (the caller adds decoded rows to it).

    A kept shard most of whose rows are taken counts as its own histogram less the rows not taken
    (read and checked against their CRCs first, few), and its taken rows are copied file to file
    in runs, never read here (their CRCs travel with them; validate-report checks every row of the
    dataset against them). A kept shard only a few of whose rows are taken has them read, checked
    against their CRCs (one that fails is decoded instead) and counted one by one.
    """

    def __init__(self, previous: PreviousRows, plan: list, pixel: dict):
        self.histogram = np.zeros((3, 256), np.int64)
        self._previous, self._pixel = previous, pixel
        taken: dict[int, list[int]] = {}
        for entry in plan:
            if isinstance(entry, tuple):
                taken.setdefault(entry[0], []).append(entry[1])
        self._reads = {}
        for number, rows in taken.items():
            rows.sort()
            counts = self._all_but(previous.shards[number], rows)
            if counts is None:
                self._reads[number] = previous.shards[number].read(rows, release=True)
            else:
                self.histogram += counts
        self._run: tuple[int, int, list[int]] | None = None  # (kept shard, first row, CRCs) copied in one go

    def _all_but(self, shard: KeptShard, taken: list[int]) -> np.ndarray | None:
        untaken = sorted(set(range(shard.images)).difference(taken))
        if len(untaken) >= len(taken):
            return None
        counts = shard.histogram.copy()
        for _, data, good in shard.read(untaken):
            own = _row_counts(data, self._pixel) if good else None
            if own is None:
                return None
            counts -= own
        return counts

    def copy(self, entry: tuple[int, int], images) -> int | None:
        """Write the kept row ``entry`` (kept shard, row) and return its CRC; None: decode it instead."""
        number, row = entry
        shard = self._previous.shards[number]
        crc = int(shard.crcs[row])
        if number not in self._reads:
            run = self._run
            if run is not None and run[0] == number and run[1] + len(run[2]) == row:
                run[2].append(crc)
            else:
                self.flush(images)
                self._run = (number, row, [crc])
            return crc
        self.flush(images)
        got, data, good = next(self._reads[number])
        assert got == row, (got, row)
        counts = _row_counts(data, self._pixel) if good else None
        if counts is None:
            return None
        self.histogram += counts
        images.write_bytes(data, crc)
        return crc

    def fingerprint(self, entry: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """The kept row ``entry``'s perceptual hash and mean colour (its pixels are the same)."""
        number, row = entry
        shard = self._previous.shards[number]
        return shard.phashes[row], shard.mean_rgb[row]

    def digest(self, entry: tuple[int, int]) -> bytes:
        """The kept row ``entry``'s sha256 (it travels with the row, as its CRC-32 does)."""
        number, row = entry
        return self._previous.shards[number].sha256s[row].tobytes()

    def flush(self, images) -> None:
        """Copy the pending run of kept rows (each is read once: its pages are released after)."""
        if self._run is not None:
            number, row, crcs = self._run
            self._run = None
            copy_ranges(images, self._previous.shards[number].byte_ranges(row, crcs), release=True)


def _row_counts(data: memoryview, pixel: dict) -> np.ndarray | None:
    """A stored row's uint8 channel counts, as its decoding counted them; None if not recoverable."""
    height, width = pixel["size"]
    stored = np.frombuffer(data, pixel["dtype"]).reshape(height, width, 3)
    pixels = uint8_of(stored, pixel["dtype"], pixel["normalize"])
    if pixels is None:
        return None
    counts = Image.frombuffer("RGB", (width, height), pixels, "raw", "RGB", 0, 1).histogram()
    return np.asarray(counts, np.int64).reshape(3, 256)
