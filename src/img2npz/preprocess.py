"""preprocess-shard: decode the images of one shard manifest into ``{shard}.npz`` + failures.

A shard is written once and never rewritten (:mod:`img2npz.allocation`): row ``i`` of every
per-row member is manifest line ``i``, a zero row where the file failed (``ok`` says which), so the
index knows each image's row before the job runs. Pixels stream into the npz as each image is
decoded, so a job holds one image, never the shard. The per-row members besides the pixels are the
contract's :data:`~img2npz.contract.ROW_MEMBERS`, produced here as each row is written. This module
imports Pillow and numpy only (never torch), so a shard job starts fast.

A compaction's manifest names, per line, the row of an older shard to copy (``from``): the row and
its members are copied under the same key (path, size, mtime and :func:`decoder_key`) and nothing
is decoded (:mod:`img2npz.rowsource`); where that row cannot be had, the image is decoded. The
bytes are those of a build from scratch either way.
"""

from __future__ import annotations

import logging
import os
import zlib
from pathlib import Path

import numpy as np
import PIL
from PIL import Image

from img2npz import fieldhash, fingerprint
from img2npz.atomic import atomic_output
from img2npz.contract import FAILURE_HEADER, ROW_MEMBERS, SHARD_FORMAT, ShardMeta, ShardStats
from img2npz.decode import DECODER_VERSION, ImageFailure, load_image, one_line
from img2npz.dtypes import to_stored_dtype
from img2npz.filters import NO_FILTERS, Filters
from img2npz.manifests import read_manifest
from img2npz.npzformat import NpzWriter
from img2npz.rowsource import CopiedFailure, RowSources
from img2npz.treedigest import row_digest
from img2npz.tsv import write_tsv

log = logging.getLogger(__name__)


def decoder_key(pixel: dict, max_pixels: int | None, filters: Filters) -> dict:
    """Everything besides the file that shapes a row's bytes: a row is copied only under the same
    key (the decompression-bomb limit and the filters decide whether an image is a row at all)."""
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


class RowValues:
    """The per-row members of a shard being written (:data:`~img2npz.contract.ROW_MEMBERS`), filled
    row by row; the perceptual hashes a block of decoded rows at a time (numpy's cost per call
    would exceed the arithmetic per row), so the job holds one block of thumbnails, not a shard's."""

    def __init__(self, rows: int):
        self.arrays = {member.name: member.empty(rows) for member in ROW_MEMBERS}
        self.ok = np.zeros(rows, bool)
        self._pending: list[tuple[int, np.ndarray, np.ndarray]] = []  # row, thumbnail, counts

    def decoded(self, row: int, data: memoryview, counts: np.ndarray, thumbnail: np.ndarray, field: tuple) -> int:
        """Produce every member of a decoded row from its bytes, channel counts, thumbnail and its
        source's full field (its hashes, quality and size); its CRC."""
        crc = zlib.crc32(data)
        self.arrays["field_hashes"][row], self.arrays["field_quality"][row], self.arrays["source_size"][row] = field
        self.ok[row] = True
        self.arrays["crc32s"][row] = crc
        self.arrays["sha256s"][row] = np.frombuffer(row_digest(data), np.uint8)
        self.arrays["constant"][row] = bool(((counts > 0).sum(axis=1) == 1).all())
        self._pending.append((row, thumbnail, counts))
        if len(self._pending) >= fingerprint.BLOCK:
            self.flush()
        return crc

    def copied(self, row: int, values: dict[str, np.ndarray]) -> None:
        self.ok[row] = True
        for name, array in self.arrays.items():
            array[row] = values[name]

    def flush(self) -> None:
        if self._pending:
            rows = [row for row, _, _ in self._pending]
            found, quality = fingerprint.hashes_and_quality(np.stack([thumb for _, thumb, _ in self._pending]))
            self.arrays["phashes"][rows] = found
            self.arrays["hash_quality"][rows] = quality
            self.arrays["mean_rgb"][rows] = fingerprint.mean_rgb(np.stack([counts for _, _, counts in self._pending]))
            self._pending.clear()


def process_shard(
    manifest: str | os.PathLike,
    source: str | os.PathLike,
    pixel: dict,
    out_npz: str | os.PathLike,
    out_failures: str | os.PathLike,
    timeout_s: float | None = None,
    max_pixels: int | None = None,
    filters: Filters = NO_FILTERS,
) -> ShardStats:
    """Build one shard; never fails on one image.

    ``timeout_s`` bounds each image's decoding; ``max_pixels`` is Pillow's decompression-bomb limit.
    ``filters``: what to leave out (:mod:`img2npz.filters`; their drops are failures of stage ``filter``).
    Rows a manifest line names ``from`` are copied from that shard, beside ``out_npz``.
    """
    if max_pixels is not None:
        Image.MAX_IMAGE_PIXELS = max_pixels
    lines = read_manifest(manifest)
    height, width = pixel["size"]
    dtype = np.dtype(pixel["dtype"])
    shape = (height, width, 3)
    decoder = decoder_key(pixel, Image.MAX_IMAGE_PIXELS, filters)
    source = Path(source)
    out_npz = Path(out_npz)
    prefix = f"{os.fspath(source)}/"  # Pillow names the file; keep messages free of local paths
    values = RowValues(len(lines))
    histogram = np.zeros((3, 256), np.int64)
    failures: list[tuple[str, str, str]] = []
    copied = decoded = 0
    zero = np.zeros(shape, dtype).reshape(-1).view(np.uint8)
    with RowSources(out_npz.parent, decoder, pixel) as sources:
        with atomic_output(out_npz) as handle, NpzWriter(handle) as writer:
            with writer.stream("images", dtype, (len(lines), *shape)) as images:
                for row, line in enumerate(lines):
                    found = sources.find(line) if line.source else None
                    if isinstance(found, CopiedFailure):
                        copied += 1
                        failures.append((line.path, found.stage, found.error))
                        images.write_bytes(zero)
                        continue
                    if found is not None:
                        copied += 1
                        images.write_bytes(found.data, int(found.values["crc32s"]))
                        values.copied(row, found.values)
                        histogram += found.counts
                        continue
                    decoded += 1
                    try:
                        check_unchanged(os.fspath(source / line.path), line.size, line.mtime)
                        pixels, counts, thumb, field = _decode(os.fspath(source / line.path), pixel, timeout_s, filters)
                    except ImageFailure as failure:
                        failures.append((line.path, failure.stage, failure.reason.replace(prefix, "")))
                        images.write_bytes(zero)
                        continue
                    data = pixels.reshape(-1).view(np.uint8)
                    images.write_bytes(data, values.decoded(row, data, counts, thumb, field))
                    histogram += counts
            values.flush()
            meta = ShardMeta(SHARD_FORMAT, pixel, decoder, len(lines), int(values.ok.sum()), len(failures))
            writer.add("paths", _strings([line.path for line in lines]))
            writer.add("sizes", np.array([line.size for line in lines], np.int64))
            writer.add("mtimes_ns", np.array([line.mtime for line in lines], np.int64))
            writer.add("ok", values.ok)
            for member in ROW_MEMBERS:
                writer.add(member.name, values.arrays[member.name])
            writer.add("histogram", histogram)
            writer.add("meta", np.array(meta.to_json()))
        write_tsv(out_failures, FAILURE_HEADER, failures)
    stats = ShardStats(meta.images, meta.failures, copied, decoded)
    log.info(
        "%s: %d images (%d copied, %d decoded), %d failures",
        Path(manifest).name,
        stats.images,
        stats.copied,
        stats.decoded,
        stats.failures,
    )
    return stats


def _decode(
    path: str, pixel: dict, timeout_s: float | None, filters: Filters
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[np.ndarray, int, tuple[int, int]]]:
    """A row in the stored dtype, its uint8 channel counts, its fingerprint thumbnail and the
    window hashes, quality and size of its full field (taken before the resize, which may crop
    it away)."""
    counts = np.zeros((3, 256), np.int64)
    height, width = pixel["size"]
    admit = filters.admit_size if filters.checks_size else None
    fields = []

    def field(image: Image.Image) -> None:
        fields.append((fieldhash.thumbnail(image), image.size))

    image = load_image(
        path, (width, height), pixel["resize"], tuple(pixel["background"]), timeout_s, counts, admit, field
    )
    filters.admit_pixels(counts)
    pixels = np.asarray(image)
    stored = to_stored_dtype(pixels, pixel["dtype"], pixel["normalize"])
    thumb, size = fields[0]
    return stored, counts, fingerprint.thumbnail(image, pixels), (*fieldhash.hashes_and_quality(thumb), size)


def _strings(values: list[str]) -> np.ndarray:
    return np.array(values, dtype=str) if values else np.empty(0, dtype="<U1")
