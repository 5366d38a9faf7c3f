"""preprocess-shard: decode the images of one shard manifest into ``{shard}.npz`` + failures.

Pixels stream into the npz as each image is decoded, so a job holds one image, never the shard: no
shard-sized array to fault in, and no second pass to write it. The npz's shape is declared before
decoding, so ``images`` has one row per manifest line: the decoded images first, in manifest order,
then a zero row for each failure (``meta["images"]`` says how many rows are real; the merge copies
only those). This module imports Pillow and numpy only (never torch), so a shard job starts fast.

Shard ``.npz`` members (see :mod:`img2npz.npzformat`): ``images`` (rows, H, W, 3) in the configured
dtype, ``paths`` and ``class_names`` (unicode, one per decoded image), ``histogram`` (int64, 3 x 256
counts of the uint8 pixels, exact, so the merge can add shards up into a mean and std that never
depend on the shard layout) and ``meta`` (JSON: the pixel config and counts).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
from PIL import Image

from img2npz.atomic import atomic_output
from img2npz.decode import ImageFailure, load_rgb, one_line
from img2npz.index import read_manifest
from img2npz.npzformat import NpzWriter
from img2npz.tsv import write_tsv

log = logging.getLogger(__name__)

FAILURE_HEADER = ("path", "stage", "error")
SHARD_FORMAT = "img2npz-shard/2"


def to_stored_dtype(pixels: np.ndarray, dtype: str, normalize: dict | None) -> np.ndarray:
    """uint8 pixels to the configured dtype: floats are scaled to 0..1, then normalised if asked."""
    if dtype == "uint8":
        return pixels
    values = pixels.astype(np.float32) / np.float32(255)
    if normalize is not None:
        values = (values - np.asarray(normalize["mean"], np.float32)) / np.asarray(normalize["std"], np.float32)
    return values.astype(dtype)


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
) -> tuple[int, int]:
    """Decode every image of ``manifest``; return (images stored, failures). Never fails on one image.

    ``timeout_s`` bounds each image's decoding; ``max_pixels`` is Pillow's decompression-bomb limit.
    """
    if max_pixels is not None:
        Image.MAX_IMAGE_PIXELS = max_pixels
    rows = read_manifest(manifest)
    height, width = pixel["size"]
    dtype = np.dtype(pixel["dtype"])
    background = tuple(pixel["background"])
    histogram = np.zeros((3, 256), dtype=np.int64)
    paths, class_names, failures = [], [], []
    source = Path(source)
    source_prefix = f"{os.fspath(source)}/"  # Pillow names the file; keep messages free of local paths
    with atomic_output(out_npz) as handle:
        writer = NpzWriter(handle)
        with writer.stream("images", dtype, (len(rows), height, width, 3)) as images:
            for rel_path, size, mtime, class_name in rows:
                full_path = os.fspath(source / rel_path)
                try:
                    check_unchanged(full_path, size, mtime)
                    counts = np.zeros((3, 256), np.int64)
                    pixels = load_rgb(full_path, (width, height), pixel["resize"], background, timeout_s, counts)
                except ImageFailure as failure:
                    failures.append((rel_path, failure.stage, failure.reason.replace(source_prefix, "")))
                    continue
                histogram += counts
                images.write(to_stored_dtype(pixels, pixel["dtype"], pixel["normalize"])[np.newaxis])
                paths.append(rel_path)
                class_names.append(class_name)
            padding = np.zeros((1, height, width, 3), dtype)
            for _ in failures:
                images.write(padding)
        meta = {
            "format": SHARD_FORMAT,
            "pixel": pixel,
            "first_path": rows[0][0] if rows else "",
            "images": len(paths),
            "failures": len(failures),
        }
        writer.add("paths", np.array(paths, dtype=str) if paths else np.empty(0, dtype="<U1"))
        writer.add("class_names", np.array(class_names, dtype=str) if class_names else np.empty(0, dtype="<U1"))
        writer.add("histogram", histogram)
        writer.add("meta", np.array(json.dumps(meta, sort_keys=True)))
        writer.close()
        write_tsv(out_failures, FAILURE_HEADER, failures)
    log.info("%s: %d images, %d failures", Path(manifest).name, len(paths), len(failures))
    return len(paths), len(failures)
