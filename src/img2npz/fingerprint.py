"""Perceptual hashes: 256 bits per image that barely move when a photo is re-encoded, resized or
brightened, so that copies of one picture can be found among millions without comparing pixels.

The hash is PDQ's construction (Meta's photo-matching hash) on a cheaper thumbnail: the decoded
row is box-reduced to a greyscale thumbnail of 64 to 127 pixels a side, its 16 x 16 lowest-frequency DCT-II
coefficients are taken, and bit ``16 * u + v`` is set when coefficient ``(u, v)`` lies above the
median of the 256. The low frequencies carry the picture's layout and survive what re-encoding,
rescaling and tone changes do to it; comparing each coefficient with the median makes the bits
independent of overall brightness and contrast. Two hashes are compared by their Hamming distance
(:func:`distances`); distinct photos sit near 128 of 256 bits apart.

The thumbnail is made from the row the shard job has just decoded (the resized image, before its
dtype conversion), so hashing costs one pass over the row's pixels in Pillow, not over the source's:
under 3% of a shard job at 256 x 256. The hash is of the row as stored: with ``center-crop`` it
does not see what the crop removed, and two crops of one photo that are shifted by more than about
2% of its side are no longer near in this hash (README, "Near-duplicates", has the figures).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image

SIDE = 64  # smallest thumbnail side, pixels
FREQUENCIES = 16  # DCT coefficients kept per axis: FREQUENCIES ** 2 bits
BYTES = FREQUENCIES**2 // 8


def thumbnail(image: Image.Image) -> np.ndarray:
    """The uint8 greyscale thumbnail of an RGB row: box-averaged by whole factors to between SIDE
    and 2 * SIDE - 1 pixels a side (a row smaller than SIDE stays as it is).

    ``reduce`` reads each pixel once, the cost that matters; no resampling step follows it, so all
    the rows of a dataset (one size) give thumbnails of one size.
    """
    factor = (max(1, image.width // SIDE), max(1, image.height // SIDE))
    if factor != (1, 1):
        image = image.reduce(factor)
    return np.asarray(image.convert("L"))


@lru_cache(maxsize=4)
def _dct_basis(samples: int) -> np.ndarray:
    """(FREQUENCIES, samples) rows of the orthonormal DCT-II basis, lowest frequency first."""
    at = np.arange(samples)
    basis = np.cos(np.pi * (2 * at[None, :] + 1) * np.arange(FREQUENCIES)[:, None] / (2 * samples))
    basis *= np.sqrt(2 / samples)
    basis[0] /= np.sqrt(2)
    return basis.astype(np.float32)


def hashes(thumbnails: np.ndarray) -> np.ndarray:
    """(n, BYTES) uint8 hashes of (n, h, w) uint8 thumbnails, bits packed big-endian.

    Rows under FREQUENCIES pixels a side have fewer distinct frequencies than bits: their hashes
    are still deterministic, but tell fewer pictures apart.
    """
    thumbnails = np.asarray(thumbnails, np.float32)
    count, height, width = thumbnails.shape
    coefficients = (_dct_basis(height) @ thumbnails @ _dct_basis(width).T).reshape(count, -1)
    # the median of the 256: the mean of the middle two (ties, as in flat images, fall below it)
    middle = coefficients.shape[1] // 2
    pair = np.partition(coefficients, (middle - 1, middle), axis=1)[:, middle - 1 : middle + 1]
    median = pair.mean(axis=1, keepdims=True)
    return np.packbits(coefficients > median, axis=1)


def distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamming distances, in bits, between the rows of two broadcastable (..., BYTES) uint8 arrays."""
    a = np.ascontiguousarray(a, np.uint8)
    b = np.ascontiguousarray(b, np.uint8)
    words = np.bitwise_xor(a.view(">u8"), b.view(">u8"))
    return np.bitwise_count(words).sum(axis=-1, dtype=np.int64)
