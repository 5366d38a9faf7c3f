"""Perceptual hashes: 256 bits per image that barely move when a photo is re-encoded, resized or
brightened, so that copies of one picture can be found among millions without comparing pixels.

The hash is PDQ's construction (Meta's photo-matching hash) on a cheaper thumbnail: the decoded
row's green channel is box-reduced to a thumbnail of 64 to 128 pixels a side, its 16 x 16 lowest-frequency DCT-II
coefficients are taken, and bit ``16 * u + v`` is set when coefficient ``(u, v)`` lies above the
median of the 256. The low frequencies carry the picture's layout and survive what re-encoding,
rescaling and tone changes do to it; comparing each coefficient with the median makes the bits
independent of overall brightness and contrast. Two hashes are compared by their Hamming distance
(:func:`img2npz.neardup.distances`); distinct photos sit near 128 of 256 bits apart.

The hash is blind to colour (it is of one channel's levels), so each row's mean colour is kept beside
it (:func:`mean_rgb`, from the counts the shard job takes anyway): two rows are near-duplicates
only if their chromaticities also agree (:func:`img2npz.neardup.colour_apart`).
Re-encoding, resizing and brightness edits barely move it and a 15% contrast change moves it by
up to about 0.07; two pictures of one layout in other colours (the demo's sunsets) are 0.11 or more
apart.

The thumbnail is made from the row the shard job has just decoded (the resized image, before its
dtype conversion), so hashing costs one pass over one channel of the row, not over the source:
about 2.5% of a shard job at 256 x 256 and 1.7% at 32 x 32 (``bench/neardup.py``). The hash is of
the row as stored: with ``center-crop`` it does not see what the crop removed, and a crop of the
photo by more than about 2% is as far from it in this hash as a distinct photo (README,
"Near-duplicates", has the figures).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image

from img2npz import neardup

SIDE = 64  # smallest thumbnail side, pixels
FREQUENCIES = 16  # DCT coefficients kept per axis: FREQUENCIES ** 2 bits
BYTES = FREQUENCIES**2 // 8
assert BYTES == neardup.BYTES, "neardup compares hashes of this size"


def thumbnail(image: Image.Image, pixels: np.ndarray | None = None) -> np.ndarray:
    """The uint8 thumbnail of an RGB row's green channel: box-averaged by whole factors to between
    SIDE and 2 * SIDE pixels a side (a row smaller than SIDE stays as it is). ``pixels``, the row
    as an array if the caller has it, saves a small row the round trip through Pillow.

    Green carries most of the luminance (0.59 of it in BT.601) and is one channel to read, where
    a true grey conversion reads all three: the hash's cost is this one pass over a third of the
    row. No resampling step follows, so all the rows of a dataset (one size) give one thumbnail size.
    """
    factor = (max(1, image.width // SIDE), max(1, image.height // SIDE))
    if factor == (1, 1) and pixels is not None:
        return pixels[:, :, 1].copy()
    green = image.getchannel("G")
    return np.asarray(green.reduce(factor) if factor != (1, 1) else green)


@lru_cache(maxsize=4)
def _dct_basis(samples: int) -> np.ndarray:
    """(FREQUENCIES, samples) rows of the orthonormal DCT-II basis, lowest frequency first."""
    at = np.arange(samples)
    basis = np.cos(np.pi * (2 * at[None, :] + 1) * np.arange(FREQUENCIES)[:, None] / (2 * samples))
    basis *= np.sqrt(2 / samples)
    basis[0] /= np.sqrt(2)
    return basis


BLOCK = 256  # thumbnails per block of float64 work: about 8 MB, reused, where a shard's 2,000 took 65 MB


QUALITY_PER_LEVEL = 200  # quality points per grey level of median margin (0.5 levels: 100)


def hashes(thumbnails: np.ndarray) -> np.ndarray:
    """(n, BYTES) uint8 hashes of (n, h, w) uint8 thumbnails (:func:`hashes_and_quality`'s first)."""
    return hashes_and_quality(thumbnails)[0]


def hashes_and_quality(thumbnails: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, BYTES) uint8 hashes of (n, h, w) uint8 thumbnails, bits packed big-endian, and each
    hash's quality (uint8, 0..100).

    The quality says how far the hash stands from its own noise, as PDQ's does (PDQ's counts
    gradients; noise has many): the median distance of the 256 coefficients from their median,
    in grey levels (a coefficient over the square root of the thumbnail's pixels), times
    :data:`QUALITY_PER_LEVEL`, at most 100. A flat picture, a smooth gradient (most coefficients
    tie at zero) or a faint pattern sits near 0: a re-encoding flips many of its bits. At 256 x 256,
    generated photos score 48 and more, the demo's fine stripes and checkers 4 to 20 (their JPEG
    q60 copies are up to 66 bits away). Strong noise scores as structure (20 to 40): it is.

    Rows under FREQUENCIES pixels a side have fewer distinct frequencies than bits: their hashes
    are still deterministic, but tell fewer pictures apart. Each thumbnail's transform is its own
    matrix product, so a hash does not depend on the batch it is computed in; blocks of BLOCK keep
    the float64 temporaries small (fresh memory for a whole shard's cost more than the arithmetic).
    """
    thumbnails = np.asarray(thumbnails)
    if len(thumbnails) <= BLOCK:
        return _hash_block(thumbnails)
    parts = [_hash_block(thumbnails[start : start + BLOCK]) for start in range(0, len(thumbnails), BLOCK)]
    return np.concatenate([bits for bits, _ in parts]), np.concatenate([quality for _, quality in parts])


def _hash_block(thumbnails: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # float64, so that other CPUs' BLAS kernels give the same bits: in 0.1% of hashes the two
    # middle coefficients are under 8e-8 (of the largest) apart, float32's own error is 1e-7
    # there; float64's, 1e-16, leaves perhaps one hash in 10^11 at risk
    thumbnails = np.asarray(thumbnails, np.float64)
    count, height, width = thumbnails.shape
    coefficients = (_dct_basis(height) @ thumbnails @ _dct_basis(width).T).reshape(count, -1)
    # the median of the 256: the mean of the middle two (ties, as in flat images, fall below it)
    middle = coefficients.shape[1] // 2
    pair = np.partition(coefficients, (middle - 1, middle), axis=1)[:, middle - 1 : middle + 1]
    median = pair.mean(axis=1, keepdims=True)
    margin = np.median(np.abs(coefficients - median), axis=1) / np.sqrt(height * width)
    quality = np.minimum(100, np.round(margin * QUALITY_PER_LEVEL)).astype(np.uint8)
    return np.packbits(coefficients > median, axis=1), quality


def mean_rgb(counts: np.ndarray) -> np.ndarray:
    """Rows' mean R, G and B (uint8, rounded half up) from their (..., 3, 256) value counts, in
    integers (a float dot product would call BLAS, whose start-up costs more than the arithmetic)."""
    counts = np.asarray(counts, np.int64)
    total = np.maximum(counts.sum(axis=-1), 1)
    return ((2 * (counts @ _LEVELS) + total) // (2 * total)).astype(np.uint8)


_LEVELS = np.arange(256, dtype=np.int64)
