"""The rows a rebuilt shard takes from the previous build instead of decoding them again.

Snakemake deletes a job's outputs before it runs it, so every shard job leaves a second name of its
finished npz in ``results/shards/.kept/``, ``{shard}.{time_ns}.npz`` (a hard link: no copy, no space;
a copy only where the file system has no hard links). When a shard's manifest changes, its job opens
the kept versions of the same shard and the kept shards whose path range overlaps its own (a new cut
moves rows between neighbours), and copies the bytes of every row whose key still holds: the path,
the file's size and mtime in ns, and the decoder key (the pixel config, the decompression-bomb limit,
Pillow's version and :data:`img2npz.decode.DECODER_VERSION`: all that shapes a row's bytes).
Everything else is decoded. A kept file that is missing, truncated, corrupt (its pixels fail their
CRC) or not a shard of this kind is passed over with a log line, never an error. A job never
replaces a kept file, it adds a version: its neighbours may still be reading the old one.

Once every shard job has run, the merge calls :func:`prune`: files of shards that no longer exist go
(from ``results/shards/`` and from ``.kept/``), only the newest kept version of each shard stays, and
``.kept/layout.tsv`` records their path ranges, which the next run's jobs read to find neighbours.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import time
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from img2npz.npzformat import ByteRange, array_layout, read_array
from img2npz.sharding import path_sort_key
from img2npz.tsv import read_tsv, write_tsv

log = logging.getLogger(__name__)

KEPT = ".kept"
LAYOUT = "layout.tsv"
LAYOUT_HEADER = ("file", "first_path", "last_path")
# The files a shard job writes, named by the shard id (16 hex digits); nothing else is ever pruned.
SHARD_FILE = re.compile(r"^([0-9a-f]{16})\.(npz|failures\.tsv|stats\.json)$")
KEPT_FILE = re.compile(r"^([0-9a-f]{16})\.([0-9]+)\.npz$")
STAGING = re.compile(r"^\.[0-9a-f]{16}\.npz\.[0-9]+\.tmp$")


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


def candidates(shards_dir: str | os.PathLike, shard: str, first_path: str, last_path: str) -> list[Path]:
    """Kept npz files that may hold rows of the shard ``shard`` spanning ``first_path..last_path``:
    its own versions, newest first, then the shards whose range in the last merged layout overlaps it."""
    folder = kept_dir(shards_dir)
    found = _versions(folder, shard)
    with contextlib.suppress(OSError, ValueError):
        low, high = path_sort_key(first_path), path_sort_key(last_path)
        for name, first, last in read_tsv(folder / LAYOUT, LAYOUT_HEADER):
            path = folder / name
            if path not in found and path_sort_key(first) <= high and path_sort_key(last) >= low and path.is_file():
                found.append(path)
    return found


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

    def byte_range(self, row: int, rows: int, crc: int) -> ByteRange:
        return ByteRange(self.path, self.offset + row * self.row_bytes, rows * self.row_bytes, crc)

    def read(self, rows: Sequence[int], chunk_bytes: int = 4 << 20) -> Iterator[tuple[int, memoryview, bool]]:
        """``(row, bytes, crc_ok)`` for each of ``rows`` (ascending), read in runs through one buffer
        (each view is valid until the next is yielded)."""
        per_read = max(1, chunk_bytes // max(self.row_bytes, 1))
        buffer = memoryview(bytearray(per_read * self.row_bytes))
        start = 0
        while start < len(rows):
            stop = start + 1
            while stop < len(rows) and stop - start < per_read and rows[stop] == rows[stop - 1] + 1:
                stop += 1
            want = (stop - start) * self.row_bytes
            got = os.preadv(self.fd, [buffer[:want]], self.offset + rows[start] * self.row_bytes)
            if got != want:
                raise ValueError(f"{self.path}: ends inside row {rows[start + got // max(self.row_bytes, 1)]}")
            for slot, row in enumerate(rows[start:stop]):
                data = buffer[slot * self.row_bytes : (slot + 1) * self.row_bytes]
                yield row, data, zlib.crc32(data) == int(self.crcs[row])
            start = stop


class PreviousRows:
    """The decoded rows of kept shards built with the same ``decoder`` key, found by path.

    ``format_tag`` and ``decoder`` must equal the kept shard's ``meta``; ``dtype`` and ``row_shape``
    its images'. A row's bytes are checked against its CRC when read (:meth:`KeptShard.read`).
    """

    def __init__(self, paths: Iterable[str | os.PathLike], format_tag: str, decoder: dict, dtype: np.dtype, row_shape):
        self._format, self._decoder = format_tag, decoder
        self._dtype, self._row_shape = np.dtype(dtype), tuple(row_shape)
        self.shards: list[KeptShard] = []
        self._rows: dict[str, tuple[int, int, int, int]] = {}  # path -> (shard, row, size, mtime_ns)
        for path in paths:
            try:
                self._open(os.fspath(path))
            except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, json.JSONDecodeError) as error:
                log.info("not reusing %s: %s", path, " ".join(str(error).split()))

    def _open(self, path: str) -> None:
        layouts = array_layout(path)
        meta = json.loads(str(read_array(path, "meta", layouts["meta"])))
        if meta.get("format") != self._format or meta.get("decoder") != self._decoder:
            raise ValueError(f"built as {meta.get('format')!r} with {meta.get('decoder')}, not {self._decoder}")
        images = layouts["images"]
        if images.offset is None or images.dtype != self._dtype or images.shape[1:] != self._row_shape:
            raise ValueError(f"images are {images.dtype} {images.shape}, stored={images.offset is not None}")
        count = int(meta["images"])
        columns = [read_array(path, name, layouts[name]) for name in ("paths", "sizes", "mtimes_ns", "crc32s")]
        histogram = read_array(path, "histogram", layouts["histogram"])
        if any(len(column) != count for column in columns) or count > images.shape[0] or histogram.shape != (3, 256):
            raise ValueError("member lengths disagree")
        number = len(self.shards)
        row_bytes = images.nbytes // images.shape[0] if images.shape[0] else 0
        fd = os.open(path, os.O_RDONLY)
        self.shards.append(KeptShard(path, fd, images.offset, row_bytes, count, columns[3], histogram))
        for row, (name, size, mtime) in enumerate(zip(*(column.tolist() for column in columns[:3]), strict=True)):
            self._rows.setdefault(name, (number, row, size, mtime))

    def __len__(self) -> int:
        return len(self._rows)

    def find(self, path: str, size: int, mtime_ns: int) -> tuple[int, int] | None:
        """(kept shard, row) of ``path`` when its size and mtime still match, else None."""
        found = self._rows.get(path)
        return found[:2] if found is not None and found[2:] == (size, mtime_ns) else None

    def close(self) -> None:
        for shard in self.shards:
            os.close(shard.fd)
        self.shards.clear()

    def __enter__(self) -> PreviousRows:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def prune(shards_dir: str | os.PathLike, ranges: Sequence[tuple[str, str, str]]) -> int:
    """Remove the files of shards not in ``ranges`` (id, first path, last path) from the shards
    folder, and from ``.kept/`` all but the newest version of each shard in ``ranges``; write the
    kept layout. Return the number of files removed. Call it only when no shard job runs."""
    folder = Path(shards_dir)
    kept = kept_dir(folder)
    wanted = {shard: (first, last) for shard, first, last in ranges}
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
    layout = [(name, *wanted[shard]) for shard, name in newest.items()]
    write_tsv(kept / LAYOUT, LAYOUT_HEADER, sorted(layout, key=lambda row: path_sort_key(row[1])))
    return removed
