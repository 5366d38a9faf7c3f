"""preprocess-shard: decode the images of one shard manifest into ``{shard}.npz`` + failures.

Pixels stream into the npz as each image is decoded, so a job holds one image, never the shard: no
shard-sized array to fault in, and no second pass to write it. The npz's shape is declared before
decoding, so ``images`` has one row per manifest line: the decoded images first, in manifest order,
then a zero row for each failure (the shard format is :mod:`img2npz.contract`'s; the merge copies
only the real rows). This module imports Pillow and numpy only (never torch), so a shard job starts
fast.

A rebuilt shard copies the rows it already had from the previous build (:mod:`img2npz.reuse`)
and decodes only new and changed images; the bytes are those of a build from scratch. Beside the
npz, ``{shard}.stats.json`` says how the job got its rows (:class:`~img2npz.contract.ShardStats`),
and the finished npz gets its second name in ``.kept/`` (:mod:`img2npz.kept`).
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

from img2npz import fingerprint, reuse
from img2npz.atomic import atomic_output
from img2npz.contract import FAILURE_HEADER, SHARD_FORMAT, ShardMeta, ShardStats
from img2npz.decode import DECODER_VERSION, ImageFailure, load_image, one_line
from img2npz.dtypes import to_stored_dtype
from img2npz.filters import NO_FILTERS, Filters
from img2npz.index import read_manifest
from img2npz.kept import keep
from img2npz.npzformat import NpzWriter
from img2npz.treedigest import DIGEST_BYTES, row_digest
from img2npz.tsv import write_tsv

log = logging.getLogger(__name__)


def decoder_key(pixel: dict, max_pixels: int | None, filters: Filters) -> dict:
    """Everything besides the file that shapes a row's bytes: a kept row is reused only under the
    same key (the decompression-bomb limit and the filters decide whether an image is a row at all)."""
    return {
        "pixel": pixel,
        "max_image_pixels": max_pixels,
        "filters": filters.shard_key(),
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
    filters: Filters = NO_FILTERS,
) -> ShardStats:
    """Build one shard; never fails on one image.

    ``timeout_s`` bounds each image's decoding; ``max_pixels`` is Pillow's decompression-bomb limit.
    ``reuse_previous``: copy the rows the kept shards (:mod:`img2npz.reuse`) hold under the same key.
    ``filters``: what to leave out (:mod:`img2npz.filters`; their drops are failures of stage ``filter``).
    """
    if max_pixels is not None:
        Image.MAX_IMAGE_PIXELS = max_pixels
    rows = read_manifest(manifest)
    height, width = pixel["size"]
    dtype = np.dtype(pixel["dtype"])
    decoder = decoder_key(pixel, Image.MAX_IMAGE_PIXELS, filters)
    source = Path(source)
    out_npz = Path(out_npz)
    first, last = (rows[0][0], rows[-1][0]) if rows else ("", "")
    shape = (height, width, 3)
    shards_dir = out_npz.parent if reuse_previous and rows else None
    with reuse.PreviousRows(shards_dir, out_npz.stem, first, last, decoder, dtype, shape) as previous:
        plan = _plan(rows, source, previous)
        copier = reuse.RowCopier(previous, plan, pixel)
        with atomic_output(out_npz) as handle, NpzWriter(handle) as writer:
            with writer.stream("images", dtype, (len(rows), *shape)) as images:
                done = _write_rows(rows, plan, copier, images, source, pixel, timeout_s, filters)
                padding = np.zeros((1, *shape), dtype)
                for _ in done.failures:
                    images.write(padding)
            meta = ShardMeta(
                format=SHARD_FORMAT,
                pixel=pixel,
                decoder=decoder,
                first_path=first,
                last_path=last,
                images=len(done.paths),
                failures=len(done.failures),
            )
            writer.add("paths", _strings(done.paths))
            writer.add("class_names", _strings(done.class_names))
            writer.add("sizes", np.array(done.sizes, np.int64))
            writer.add("mtimes_ns", np.array(done.mtimes, np.int64))
            writer.add("crc32s", np.array(done.crcs, np.uint32))
            writer.add("sha256s", _digests(done.digests))
            phashes, mean_rgb = done.fingerprints()
            writer.add("phashes", phashes)
            writer.add("mean_rgb", mean_rgb)
            writer.add("histogram", copier.histogram)
            writer.add("meta", np.array(meta.to_json()))
        write_tsv(out_failures, FAILURE_HEADER, done.failures)
    how = keep(out_npz)
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
    digests: list[bytes] = field(default_factory=list)  # sha256 of each row's bytes (img2npz.treedigest)
    kept: list[tuple[np.ndarray, np.ndarray] | None] = field(default_factory=list)  # hash, colour; None: decoded
    thumbnails: list[np.ndarray] = field(default_factory=list)  # decoded rows' not yet hashed, in order
    counts: list[np.ndarray] = field(default_factory=list)  # their value counts, in order
    hashed: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # blocks of decoded rows' hashes, colours
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    reused: int = 0
    decoded: int = 0

    def add_decoded(self, thumbnail: np.ndarray, counts: np.ndarray) -> None:
        """A decoded row's fingerprint inputs; hashed a block at a time (numpy's cost per call would
        exceed the arithmetic per row), so the job holds one block of them, not a shard's (a
        thumbnail and counts are 10 KB a row: 80 MB for a shard of 8,000 rows)."""
        self.kept.append(None)
        self.thumbnails.append(thumbnail)
        self.counts.append(counts)
        if len(self.thumbnails) >= fingerprint.BLOCK:
            self._hash_block()

    def _hash_block(self) -> None:
        if self.thumbnails:
            self.hashed.append(
                (fingerprint.hashes(np.stack(self.thumbnails)), fingerprint.mean_rgb(np.stack(self.counts)))
            )
            self.thumbnails.clear()
            self.counts.clear()

    def fingerprints(self) -> tuple[np.ndarray, np.ndarray]:
        """(n, BYTES) hashes and (n, 3) mean colours, uint8: kept rows' as they were, decoded rows'
        as their blocks computed them."""
        self._hash_block()
        hashes = np.zeros((len(self.kept), fingerprint.BYTES), np.uint8)
        colours = np.zeros((len(self.kept), 3), np.uint8)
        fresh = [number for number, kept in enumerate(self.kept) if kept is None]
        if fresh:
            hashes[fresh] = np.concatenate([block for block, _ in self.hashed])
            colours[fresh] = np.concatenate([block for _, block in self.hashed])
        for number, kept in enumerate(self.kept):
            if kept is not None:
                hashes[number], colours[number] = kept
        return hashes, colours


def _write_rows(
    rows, plan: list, copier: reuse.RowCopier, images, source: Path, pixel: dict, timeout_s, filters: Filters
) -> _Rows:
    """Every manifest row into ``images``: copied where the plan says so, else decoded."""
    done = _Rows()
    prefix = f"{os.fspath(source)}/"  # Pillow names the file; keep messages free of local paths
    for (rel_path, size, mtime, class_name), entry in zip(rows, plan, strict=True):
        crc = copier.copy(entry, images) if isinstance(entry, tuple) else None
        if crc is not None:
            done.reused += 1
            done.kept.append(copier.fingerprint(entry))
            done.digests.append(copier.digest(entry))
        else:
            try:
                if isinstance(entry, ImageFailure):
                    raise entry
                done.decoded += 1
                row, counts, thumb = _decode(os.fspath(source / rel_path), pixel, timeout_s, filters)
            except ImageFailure as failure:
                done.failures.append((rel_path, failure.stage, failure.reason.replace(prefix, "")))
                continue
            data = row.reshape(-1).view(np.uint8)
            crc = zlib.crc32(data)
            done.digests.append(row_digest(data))
            copier.flush(images)
            images.write_bytes(data, crc)
            copier.histogram += counts
            done.add_decoded(thumb, counts)
        done.paths.append(rel_path)
        done.class_names.append(class_name)
        done.sizes.append(size)
        done.mtimes.append(mtime)
        done.crcs.append(crc)
    copier.flush(images)
    return done


def _decode(
    path: str, pixel: dict, timeout_s: float | None, filters: Filters
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A row in the stored dtype, its uint8 channel counts and its fingerprint thumbnail."""
    counts = np.zeros((3, 256), np.int64)
    height, width = pixel["size"]
    admit = filters.admit_size if filters.checks_size else None
    image = load_image(path, (width, height), pixel["resize"], tuple(pixel["background"]), timeout_s, counts, admit)
    filters.admit_pixels(counts)
    pixels = np.asarray(image)
    return to_stored_dtype(pixels, pixel["dtype"], pixel["normalize"]), counts, fingerprint.thumbnail(image, pixels)


def _digests(digests: list[bytes]) -> np.ndarray:
    return np.frombuffer(b"".join(digests), np.uint8).reshape(len(digests), DIGEST_BYTES)


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
