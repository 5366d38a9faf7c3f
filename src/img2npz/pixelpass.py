"""The validation's one streaming pass over an array of image rows (``dataset.npz``'s pixels), and
what needs the rows again.

The pass reads ``images`` once, in chunks through reused buffers: sha256 in a second thread, a
CRC-32, a 16-byte fingerprint and a one-colour test per row, and for float dtypes finiteness and
range (uint8 is 0..255 by type). Memory holds 24 bytes per image, never the pixels. Rows with
equal fingerprints are then read again, few of them, to confirm duplicates byte for byte.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass

import numpy as np

from img2npz.hashing import BackgroundSha256
from img2npz.npzformat import ArrayLayout, iter_chunks, read_rows


@dataclass
class PixelScan:
    sha256: str
    low: float | None
    high: float | None
    finite: bool
    fingerprints: np.ndarray  # (N, 2) uint64 per row: wrapping sum and xor of its 8-byte words
    constant: list[int]  # rows whose pixels are all one colour
    crcs: np.ndarray  # uint32 CRC-32 of each row's bytes


def row_fingerprints(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: (sum, xor) of its 8-byte words, and whether it is one colour throughout.

    The fingerprint only proposes duplicates (they are confirmed byte for byte); a row of one colour
    repeats every 24 bytes (8 pixels' worth of any dtype), which the fingerprint tests for free.
    Rows whose size is not a multiple of 24 bytes take an exact, slower path.
    """
    count = len(rows)
    flat = rows.reshape(count, -1).view(np.uint8)
    if flat.shape[1] % 24 or not flat.shape[1]:
        pixels = rows.reshape(count, -1, rows.shape[-1]) if rows.ndim > 1 else rows.reshape(count, -1, 1)
        constant = (pixels == pixels[:, :1]).all(axis=(1, 2))
        digests = [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in flat]
        prints = (
            np.frombuffer(b"".join(digests), dtype=np.uint64).reshape(count, 2)
            if count
            else np.empty((0, 2), np.uint64)
        )
        return prints, constant
    words = flat.view(np.uint64)
    prints = np.stack([words.sum(axis=1, dtype=np.uint64), np.bitwise_xor.reduce(words, axis=1)], axis=1)
    repeats = np.uint64(words.shape[1] // 3)
    period = words[:, :3]
    with np.errstate(over="ignore"):
        candidate_sum = period.sum(axis=1, dtype=np.uint64) * repeats
    candidate_xor = np.bitwise_xor.reduce(period, axis=1) if int(repeats) % 2 else np.zeros(count, np.uint64)
    candidates = np.flatnonzero((prints[:, 0] == candidate_sum) & (prints[:, 1] == candidate_xor))
    constant = np.zeros(count, bool)
    for row in candidates:
        constant[row] = bool((words[row].reshape(-1, 3) == period[row]).all())
    return prints, constant


def scan_images(npz: str, layout: ArrayLayout) -> PixelScan:
    """The pass (see the module docstring) over the member ``layout`` describes."""
    digest = BackgroundSha256()
    low, high, finite = None, None, True
    count = layout.shape[0] if layout.shape else 0
    fingerprints = np.zeros((count, 2), np.uint64)
    crcs = np.zeros(count, np.uint32)
    constant: list[int] = []
    start = 0
    for chunk in iter_chunks(npz, layout.name, layout=layout, ring=BackgroundSha256.DEPTH + 2):
        digest.update(chunk)
        if not chunk.size:
            continue
        crcs[start : start + len(chunk)] = [zlib.crc32(row) for row in chunk.reshape(len(chunk), -1)]
        prints, one_colour = row_fingerprints(chunk)
        fingerprints[start : start + len(chunk)] = prints
        constant.extend((np.flatnonzero(one_colour) + start).tolist())
        start += len(chunk)
        if chunk.dtype.kind == "f":
            finite = finite and bool(np.isfinite(chunk).all())
            values = np.nan_to_num(chunk)
            c_low, c_high = float(values.min()), float(values.max())
            low = c_low if low is None else min(low, c_low)
            high = c_high if high is None else max(high, c_high)
    if layout.dtype == np.uint8:
        low, high = 0.0, 255.0
    return PixelScan(digest.hexdigest(), low, high, finite, fingerprints, constant, crcs)


def duplicate_groups(npz: str, layout: ArrayLayout, fingerprints: np.ndarray) -> list[list[int]]:
    """Groups of rows with the same pixels: equal fingerprints, confirmed byte for byte."""
    if not len(fingerprints):
        return []
    _, inverse, counts = np.unique(fingerprints, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)])
    groups = []
    for key in np.flatnonzero(counts > 1):
        rows = sorted(order[starts[key] : starts[key + 1]].tolist())
        pixels = read_rows(npz, layout.name, rows, layout)
        by_bytes: dict[bytes, list[int]] = {}
        for row, image in zip(rows, pixels, strict=True):
            by_bytes.setdefault(image.tobytes(), []).append(row)
        groups.extend(group for group in by_bytes.values() if len(group) > 1)
    return sorted(groups)
