"""The rows a rebuilt shard takes from the previous build instead of decoding them again.

Snakemake deletes a job's outputs before it runs it, so every shard job leaves a second name of its
finished npz in ``results/shards/.kept/``, ``{shard}.{time_ns}.npz`` (a hard link: no copy, no space;
a copy only where the file system has no hard links). When a shard's manifest changes, its job opens
the kept versions of the same shard and the kept shards whose path range overlaps its own (a new cut
moves rows between neighbours), and copies every row whose key still holds: the path, the file's
size and mtime in ns, and the decoder key (the pixel config, the decompression-bomb limit, Pillow's
version and :data:`img2npz.decode.DECODER_VERSION`: all that shapes a row's bytes). Everything else
is decoded. A kept file that is missing, truncated or not a shard of this kind is passed over with
a log line, never an error. A copied row keeps the CRC-32 it got when decoded (shards record one
per row), so a row damaged on disk since is found by validate-report, which checks every row of the
dataset against it. A job never replaces a kept file, it adds a version: a neighbour may still be
reading it.

The bytes of a kept row come from the previous ``dataset.npz`` when the kept shard went into it (the
merge notes each one's first row there, and the file's size and images CRC-32): it holds the same
bytes, it is the copy most likely in the page cache (the last one written and checked, and what
training reads), and the next merge deletes it anyway. Otherwise they come from the kept file. Rows
that are read here (to be counted) and fail their CRC in the dataset are read from the kept file.

Once every shard job has run, the merge calls :func:`prune`: files of shards that no longer exist go
(from ``results/shards/`` and from ``.kept/``), only the newest kept version of each shard stays, and
``.kept/layout.tsv`` records their path ranges and first rows in the dataset, which the next run's
jobs read to find their rows.
"""

from __future__ import annotations

import contextlib
import json
import logging
import mmap
import os
import re
import shutil
import time
import zipfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from img2npz import crc32
from img2npz.atomic import write_bytes_atomic
from img2npz.contract import LAYOUT_HEADER, ShardMeta, path_sort_key
from img2npz.filecopy import ByteRange, release_cache
from img2npz.npzformat import array_layout, read_array
from img2npz.tsv import read_tsv, write_tsv

log = logging.getLogger(__name__)

KEPT = ".kept"
LAYOUT = "layout.tsv"
DATASET_STAMP = "dataset.json"  # which dataset.npz the layout's rows refer to: path, size, images CRC-32
# The files a shard job writes, named by the shard id (16 hex digits); nothing else is ever pruned.
SHARD_FILE = re.compile(r"^([0-9a-f]{16})\.(npz|failures\.tsv|stats\.json)$")
KEPT_FILE = re.compile(r"^([0-9a-f]{16})\.([0-9]+)\.npz$")
STAGING = re.compile(r"^\.[0-9a-f]{16}\.npz\.[0-9]+\.tmp$")


class ShardAccount(Protocol):
    """What :func:`dataset_rows` needs of a shard job's account (:class:`img2npz.preprocess.ShardStats`)."""

    first_path: str
    last_path: str
    images: int


def kept_dir(shards_dir: str | os.PathLike) -> Path:
    return Path(shards_dir) / KEPT


def keep(npz: str | os.PathLike) -> str:
    """Add the finished shard ``npz`` to ``.kept/`` as a new version; return ``"link"`` or ``"copy"``."""
    npz = Path(npz)
    folder = kept_dir(npz.parent)
    folder.mkdir(exist_ok=True)
    target = folder / f"{npz.stem}.{time.time_ns()}.npz"
    try:
        os.link(npz, target)
        return "link"
    except OSError:
        staging = folder / f".{npz.name}.{os.getpid()}.tmp"
        shutil.copyfile(npz, staging)
        os.replace(staging, target)
        return "copy"


def _versions(folder: Path, shard: str) -> list[Path]:
    """Kept versions of ``shard``, newest first."""
    found = [(int(m.group(2)), p) for p in folder.glob(f"{shard}.*.npz") if (m := KEPT_FILE.match(p.name))]
    return [path for _, path in sorted(found, reverse=True)]


def candidates(shards_dir: str | os.PathLike, shard: str, first_path: str, last_path: str) -> list[tuple[Path, int]]:
    """Kept npz files that may hold rows of the shard ``shard`` spanning ``first_path..last_path``:
    its own versions, newest first, then the shards whose range in the last merged layout overlaps
    it; each with its first row in the merged dataset (-1 where the layout does not know it)."""
    folder = kept_dir(shards_dir)
    found = {path: -1 for path in _versions(folder, shard)}
    with contextlib.suppress(OSError, ValueError):
        low, high = path_sort_key(first_path), path_sort_key(last_path)
        for name, first, last, row in read_tsv(folder / LAYOUT, LAYOUT_HEADER):
            path = folder / name
            if path in found or (path_sort_key(first) <= high and path_sort_key(last) >= low and path.is_file()):
                found[path] = int(row)
    return list(found.items())


def _merged_images(folder: Path, dtype: np.dtype, row_shape: tuple) -> tuple[str, int] | None:
    """(path, offset of row 0) of the dataset the layout's rows refer to, if it is still that file:
    the same size and the same CRC-32 of its images (from the zip's directory; Snakemake touches
    outputs after their job, so an mtime would not do)."""
    try:
        stamp = json.loads((folder / DATASET_STAMP).read_text())
        if os.stat(stamp["path"]).st_size != stamp["size"]:
            return None
        images = array_layout(stamp["path"])["images"]
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile):
        return None
    if images.offset is None or images.dtype != dtype or images.shape[1:] != row_shape:
        return None  # compressed (merge.compress) or another pixel config
    return (stamp["path"], images.offset) if images.crc32 == stamp["images_crc32"] else None


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
    merged: tuple[str, int, int] | None = None  # (dataset path, fd, offset of this shard's row 0) to read instead

    def byte_ranges(self, row: int, crcs: Sequence[int], chunk_bytes: int = 8 << 20) -> list[ByteRange]:
        """Rows from ``row`` on, one per CRC in ``crcs``, where :meth:`read` would read them, in ranges
        of about ``chunk_bytes`` (each released once copied, so the next one's pages are those)."""
        path, _, offset = self.merged or (self.path, self.fd, self.offset)
        per_range = max(1, chunk_bytes // max(self.row_bytes, 1))
        ranges = []
        for start in range(0, len(crcs), per_range):
            part = crcs[start : start + per_range]
            crc = part[0]
            for more in part[1:]:
                crc = crc32.combine(crc, more, self.row_bytes)
            at = offset + (row + start) * self.row_bytes
            ranges.append(ByteRange(path, at, len(part) * self.row_bytes, crc))
        return ranges

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
        merged = _merged_images(kept_dir(shards_dir), self._dtype, self._row_shape) if found else None
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
        if any(len(column) != count for column in columns) or count > images.shape[0] or histogram.shape != (3, 256):
            raise ValueError("member lengths disagree")
        number = len(self.shards)
        row_bytes = images.nbytes // images.shape[0] if images.shape[0] else 0
        fd = os.open(path, os.O_RDONLY)
        self._fds.append(fd)
        in_dataset = None
        if merged:
            dataset, offset, first_row = merged
            in_dataset = (dataset, self._dataset_fd, offset + first_row * row_bytes)
        self.shards.append(KeptShard(path, fd, images.offset, row_bytes, count, columns[3], histogram, in_dataset))
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


def prune(
    shards_dir: str | os.PathLike, shards: Sequence[tuple[str, str, str, int]], dataset: str | os.PathLike | None
) -> int:
    """Remove the files of shards not in ``shards`` (id, first path, last path, first row in
    ``dataset``) from the shards folder, and from ``.kept/`` all but the newest version of each shard
    in ``shards``; write the kept layout and the dataset's stamp. Return the number of files removed.
    Call it only when no shard job runs, right after the merge that wrote ``dataset``."""
    folder = Path(shards_dir)
    kept = kept_dir(folder)
    wanted = {shard: (first, last, row) for shard, first, last, row in shards}
    removed = 0
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(folder):
            match = SHARD_FILE.match(entry.name)
            if match and match.group(1) not in wanted:
                os.unlink(entry.path)
                removed += 1
    kept.mkdir(exist_ok=True)
    versions: dict[str, list[tuple[int, str]]] = {}
    for entry in os.scandir(kept):
        if match := KEPT_FILE.match(entry.name):
            versions.setdefault(match.group(1), []).append((int(match.group(2)), entry.name))
        elif STAGING.match(entry.name):  # a copy cut short by a killed job
            os.unlink(entry.path)
            removed += 1
    newest = {shard: max(found)[1] for shard, found in versions.items() if shard in wanted}
    for shard, found in versions.items():
        for _, name in found:
            if newest.get(shard) != name:
                os.unlink(kept / name)
                removed += 1
    layout = sorted(((name, *wanted[shard]) for shard, name in newest.items()), key=lambda row: path_sort_key(row[1]))
    write_tsv(kept / LAYOUT, LAYOUT_HEADER, layout)
    stamp = {}
    if dataset is not None:
        crc = array_layout(dataset)["images"].crc32
        stamp = {"path": os.fspath(dataset), "size": os.stat(dataset).st_size, "images_crc32": crc}
    write_bytes_atomic(kept / DATASET_STAMP, json.dumps(stamp).encode(), durable=False)
    return removed


def dataset_rows(stats: Mapping[str, ShardAccount]) -> list[tuple[str, str, str, int]]:
    """(id, first path, last path, first row in the merged dataset) of every shard: shards are
    contiguous runs of the index's order, so a shard starts where the ones before it end."""
    ordered = sorted(stats.items(), key=lambda item: path_sort_key(item[1].first_path))
    rows, start = [], 0
    for shard, account in ordered:
        rows.append((shard, account.first_path, account.last_path, start))
        start += account.images
    return rows
