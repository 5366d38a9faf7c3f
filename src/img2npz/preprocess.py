"""preprocess-shard: decode the images of one shard manifest into ``{shard}.npz`` + failures.

Pixels stream into the npz as each image is decoded, so a job holds one image, never the shard: no
shard-sized array to fault in, and no second pass to write it. The npz's shape is declared before
decoding, so ``images`` has one row per manifest line: the decoded images first, in manifest order,
then a zero row for each failure (``meta["images"]`` says how many rows are real; the merge copies
only those). This module imports Pillow and numpy only (never torch), so a shard job starts fast.

A rebuilt shard copies the rows it already had from the previous build (:mod:`img2npz.reuse`)
and decodes only new and changed images; the bytes are those of a build from scratch.

Shard ``.npz`` members (see :mod:`img2npz.npzformat`): ``images`` (rows, H, W, 3) in the configured
dtype, ``paths`` and ``class_names`` (unicode), ``sizes`` and ``mtimes_ns`` (int64: the file each row
was decoded from, the reuse key) and ``crc32s`` (uint32: each row's CRC-32 when decoded), all one per
decoded image; ``histogram`` (int64, 3 x 256 counts of
the uint8 pixels, exact, so the merge can add shards up into a mean and std that never depend on the
shard layout) and ``meta`` (JSON: the pixel config, the decoder key, the first and last manifest
paths, counts). Beside it, ``{shard}.stats.json`` says how the job got its rows (:class:`ShardStats`).
"""

from __future__ import annotations

import logging
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import PIL
from PIL import Image

from img2npz import reuse
from img2npz.atomic import atomic_output
from img2npz.contract import FAILURE_HEADER, SHARD_FORMAT, ShardMeta, ShardStats
from img2npz.decode import DECODER_VERSION, ImageFailure, load_rgb, one_line
from img2npz.filecopy import copy_ranges
from img2npz.index import read_manifest
from img2npz.npzformat import NpzWriter
from img2npz.tsv import write_tsv

log = logging.getLogger(__name__)


def to_stored_dtype(pixels: np.ndarray, dtype: str, normalize: dict | None) -> np.ndarray:
    """uint8 pixels to the configured dtype: floats are scaled to 0..1, then normalised if asked."""
    if dtype == "uint8":
        return pixels
    values = pixels.astype(np.float32) / np.float32(255)
    if normalize is not None:
        values = (values - np.asarray(normalize["mean"], np.float32)) / np.asarray(normalize["std"], np.float32)
    return values.astype(dtype)


def uint8_of(stored: np.ndarray, dtype: str, normalize: dict | None) -> np.ndarray | None:
    """The uint8 pixels that :func:`to_stored_dtype` turned into ``stored``, or None where they
    cannot be recovered exactly (checked by converting them back), so a reused row's histogram is
    the one its decoding gave."""
    if dtype == "uint8":
        return stored
    values = stored.astype(np.float32)
    if normalize is not None:
        values = values * np.asarray(normalize["std"], np.float32) + np.asarray(normalize["mean"], np.float32)
    pixels = np.clip(np.rint(values * np.float32(255)), 0, 255).astype(np.uint8)
    again = to_stored_dtype(pixels, dtype, normalize)
    return pixels if np.array_equal(again.view(np.uint8), stored.view(np.uint8)) else None


def decoder_key(pixel: dict, max_pixels: int | None) -> dict:
    """Everything besides the file that shapes a row's bytes: a kept row is reused only under the
    same key (the decompression-bomb limit decides whether a large image is a row at all)."""
    return {
        "pixel": pixel,
        "max_image_pixels": max_pixels,
        "pillow": PIL.__version__,
        "decoder": DECODER_VERSION,
    }


def check_unchanged(path: str, size: int, mtime_ns: int) -> None:
    """A file deleted or replaced since the index ran is a failure now; the next run indexes it anew."""
    try:
        info = os.stat(path)
    except OSError as error:
        raise ImageFailure("decode", one_line(error)) from error
    if (info.st_size, info.st_mtime_ns) != (size, mtime_ns):
        raise ImageFailure("decode", "changed since it was indexed (size or mtime differ); the next run takes it anew")


def process_shard(
    manifest: str | os.PathLike,
    source: str | os.PathLike,
    pixel: dict,
    out_npz: str | os.PathLike,
    out_failures: str | os.PathLike,
    timeout_s: float | None = None,
    max_pixels: int | None = None,
    reuse_previous: bool = True,
) -> ShardStats:
    """Build one shard; never fails on one image.

    ``timeout_s`` bounds each image's decoding; ``max_pixels`` is Pillow's decompression-bomb limit.
    ``reuse_previous``: copy the rows the kept shards (:mod:`img2npz.reuse`) hold under the same key.
    """
    if max_pixels is not None:
        Image.MAX_IMAGE_PIXELS = max_pixels
    rows = read_manifest(manifest)
    height, width = pixel["size"]
    dtype = np.dtype(pixel["dtype"])
    decoder = decoder_key(pixel, Image.MAX_IMAGE_PIXELS)
    source = Path(source)
    out_npz = Path(out_npz)
    first, last = (rows[0][0], rows[-1][0]) if rows else ("", "")
    shape = (height, width, 3)
    kept = out_npz.parent if reuse_previous and rows else None
    with reuse.PreviousRows(kept, out_npz.stem, first, last, decoder, dtype, shape) as previous:
        plan = _plan(rows, source, previous)
        copier = _Reuse(previous, plan, pixel)
        with atomic_output(out_npz) as handle, NpzWriter(handle) as writer:
            with writer.stream("images", dtype, (len(rows), *shape)) as images:
                done = _write_rows(rows, plan, copier, images, source, pixel, timeout_s)
                padding = np.zeros((1, *shape), dtype)
                for _ in done.failures:
                    images.write(padding)
            meta = ShardMeta(SHARD_FORMAT, pixel, decoder, first, last, len(done.paths), len(done.failures))
            writer.add("paths", _strings(done.paths))
            writer.add("class_names", _strings(done.class_names))
            writer.add("sizes", np.array(done.sizes, np.int64))
            writer.add("mtimes_ns", np.array(done.mtimes, np.int64))
            writer.add("crc32s", np.array(done.crcs, np.uint32))
            writer.add("histogram", copier.histogram)
            writer.add("meta", np.array(meta.to_json()))
        write_tsv(out_failures, FAILURE_HEADER, done.failures)
    how = reuse.keep(out_npz)
    stats = ShardStats(len(done.paths), len(done.failures), done.reused, done.decoded, first, last)
    log.info(
        "%s: %d images (%d reused, %d decoded), %d failures; kept by %s",
        Path(manifest).name,
        stats.images,
        stats.reused,
        stats.decoded,
        stats.failures,
        how,
    )
    return stats


@dataclass
class _Rows:
    """The decoded rows' keys, in the images member's order, and the failures."""

    paths: list[str] = field(default_factory=list)
    class_names: list[str] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    mtimes: list[int] = field(default_factory=list)
    crcs: list[int] = field(default_factory=list)
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    reused: int = 0
    decoded: int = 0


def _write_rows(rows, plan: list, copier: _Reuse, images, source: Path, pixel: dict, timeout_s) -> _Rows:
    """Every manifest row into ``images``: copied where the plan says so, else decoded."""
    done = _Rows()
    prefix = f"{os.fspath(source)}/"  # Pillow names the file; keep messages free of local paths
    for (rel_path, size, mtime, class_name), entry in zip(rows, plan, strict=True):
        crc = copier.copy(entry, images) if isinstance(entry, tuple) else None
        if crc is not None:
            done.reused += 1
        else:
            try:
                if isinstance(entry, ImageFailure):
                    raise entry
                done.decoded += 1
                row, counts = _decode(os.fspath(source / rel_path), pixel, timeout_s)
            except ImageFailure as failure:
                done.failures.append((rel_path, failure.stage, failure.reason.replace(prefix, "")))
                continue
            crc = zlib.crc32(row)
            copier.flush(images)
            images.write_bytes(row.reshape(-1).view(np.uint8), crc)
            copier.histogram += counts
        done.paths.append(rel_path)
        done.class_names.append(class_name)
        done.sizes.append(size)
        done.mtimes.append(mtime)
        done.crcs.append(crc)
    copier.flush(images)
    return done


def _decode(path: str, pixel: dict, timeout_s: float | None) -> tuple[np.ndarray, np.ndarray]:
    """A row in the stored dtype, and its uint8 channel counts."""
    counts = np.zeros((3, 256), np.int64)
    height, width = pixel["size"]
    pixels = load_rgb(path, (width, height), pixel["resize"], tuple(pixel["background"]), timeout_s, counts)
    return to_stored_dtype(pixels, pixel["dtype"], pixel["normalize"]), counts


def _strings(values: list[str]) -> np.ndarray:
    return np.array(values, dtype=str) if values else np.empty(0, dtype="<U1")


def _plan(
    rows: list[tuple[str, int, int, str]], source: Path, previous: reuse.PreviousRows
) -> list[tuple[int, int] | ImageFailure | None]:
    """Per manifest row: (kept shard, row) to copy, the failure it already is, or None: decode it."""
    plan: list[tuple[int, int] | ImageFailure | None] = []
    for rel_path, size, mtime, _ in rows:
        try:
            check_unchanged(os.fspath(source / rel_path), size, mtime)
        except ImageFailure as failure:
            plan.append(failure)
            continue
        plan.append(previous.find(rel_path, size, mtime))
    return plan


class _Reuse:
    """Copies the planned kept rows in manifest order, and keeps the run's channel counts in
    :attr:`histogram` (the caller adds decoded rows to it).

    A kept shard most of whose rows are taken counts as its own histogram less the rows not taken
    (read and checked against their CRCs first, few), and its taken rows are copied file to file
    in runs, never read here (their CRCs travel with them; validate-report checks every row of the
    dataset against them). A kept shard only a few of whose rows are taken has them read, checked
    against their CRCs (one that fails is decoded instead) and counted one by one.
    """

    def __init__(self, previous: reuse.PreviousRows, plan: list, pixel: dict):
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

    def _all_but(self, shard: reuse.KeptShard, taken: list[int]) -> np.ndarray | None:
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
