"""Window hashes of the source's full field: what finds a crop of a photo among millions.

The row hash (:mod:`img2npz.fingerprint`) is of the row as stored. A crop of a photo by more than
about 2% moves every frequency it sees, and with ``center-crop`` the row does not even hold what
the crop kept. So each image also gets hashes of its **full field** (the whole upright picture,
before the row's resize or crop, squashed to a square thumbnail of :data:`SIDE` pixels), one for
the whole field and one for each of :data:`WINDOWS` - 1 large windows of it. A crop's whole field
is close to the window of its original that covers what the crop kept: the search
(:mod:`img2npz.cropsearch`) looks each image's whole-field hash up among the others' windows.

A window is a product of two intervals of :data:`INTERVALS` (the y interval, then the x one):
the whole axis, 95% at either end, 90% at the start, centre and end. Every crop that keeps at
least 90% of each axis is within 2.5% of a window on every edge, and the hash tolerates that.

The hash of a window is 256 bits: for each of four channels of the thumbnail (luminance
``(R + 2G + B) / 4``, its horizontal and vertical gradient magnitudes, and its Laplacian
magnitude), the 8 x 8 lowest DCT-II frequencies of the window resampled to 32 x 32, each bit set
when its coefficient lies above the median of its channel's 64. Eight frequencies a side (where
the row hash has 16) is what tolerates the 2.5%; the gradient channels give back the
discrimination the fewer frequencies lose, and need no colour (greyscale photos hash as well).
All of it is float64 matrix products, so other CPUs give the same bits (as the row hash argues).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image

SIDE = 32  # the full field's thumbnail, pixels a side
SAMPLES = 32  # a window is resampled to this many samples a side before its transform
FREQUENCIES = 8  # DCT frequencies kept per axis and channel
CHANNELS = 4  # luminance, |d/dx|, |d/dy|, |Laplacian|
BITS = CHANNELS * FREQUENCIES**2  # 256 a window
BYTES = BITS // 8
# (start, stop) of each axis interval, as fractions of the axis; the first is the whole axis
INTERVALS = ((0.0, 1.0), (0.0, 0.95), (0.05, 1.0), (0.0, 0.9), (0.05, 0.95), (0.1, 1.0))
# window k is (y interval k // len(INTERVALS), x interval k % len(INTERVALS)); window 0 the whole field
WINDOWS = len(INTERVALS) ** 2


def window_box(window: int) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) of a window, as fractions of the full field."""
    (top, bottom), (left, right) = INTERVALS[window // len(INTERVALS)], INTERVALS[window % len(INTERVALS)]
    return left, top, right, bottom


def thumbnail(image: Image.Image) -> np.ndarray:
    """The (SIDE, SIDE, 3) uint8 thumbnail of an upright RGB image's full field (aspect not kept:
    a crop and its original are compared in their own fields' coordinates): box-reduced by whole
    factors to at least twice SIDE (Pillow's fastest pass over the source), then box-resized."""
    factor = (max(1, image.width // (2 * SIDE)), max(1, image.height // (2 * SIDE)))
    reduced = image.reduce(factor) if factor != (1, 1) else image
    return np.asarray(reduced.resize((SIDE, SIDE), Image.Resampling.BOX))


@lru_cache(maxsize=1)
def _transform() -> np.ndarray:
    """(len(INTERVALS) * FREQUENCIES, SIDE): each interval's resampling to SAMPLES points (linear)
    followed by the DCT-II's lowest FREQUENCIES rows, stacked, so that one product per side gives
    every window's coefficients (``A @ channel @ A.T``)."""
    at = np.arange(SAMPLES)
    dct = np.cos(np.pi * (2 * at[None, :] + 1) * np.arange(FREQUENCIES)[:, None] / (2 * SAMPLES))
    dct *= np.sqrt(2 / SAMPLES)
    dct[0] /= np.sqrt(2)
    parts = []
    for start, stop in INTERVALS:
        where = np.clip((start + (at + 0.5) * (stop - start) / SAMPLES) * SIDE - 0.5, 0, SIDE - 1)
        low = np.floor(where).astype(int)
        high = np.minimum(low + 1, SIDE - 1)
        weight = where - low
        resample = np.zeros((SAMPLES, SIDE))
        np.add.at(resample, (at, low), 1 - weight)
        np.add.at(resample, (at, high), weight)
        parts.append(dct @ resample)
    return np.concatenate(parts)


_LUMINANCE = np.array([0.25, 0.5, 0.25])


def channels(thumb: np.ndarray) -> np.ndarray:
    """(CHANNELS, SIDE, SIDE) float64 of an RGB thumbnail: luminance, then the magnitudes of its
    horizontal and vertical differences and of its Laplacian (edges replicated: zero there)."""
    out = np.empty((CHANNELS, SIDE, SIDE))
    y = out[0]
    np.matmul(np.asarray(thumb, np.float64), _LUMINANCE, out=y)
    across, down = np.zeros((SIDE, SIDE)), np.zeros((SIDE, SIDE))
    np.subtract(y[:, 1:], y[:, :-1], out=across[:, :-1])
    np.subtract(y[1:], y[:-1], out=down[:-1])
    laplacian = out[3]
    np.subtract(0, across, out=laplacian)
    laplacian[:, 1:] += across[:, :-1]
    laplacian -= down
    laplacian[1:] += down[:-1]
    np.abs(across, out=out[1])
    np.abs(down, out=out[2])
    np.abs(laplacian, out=laplacian)
    return out


def hashes(thumb: np.ndarray) -> np.ndarray:
    """(WINDOWS, BYTES) uint8: window k's 256 bits, channel-major, then frequency ``8 * u + v``
    (u vertical), packed most significant bit first."""
    return hashes_and_quality(thumb)[0]


def hashes_and_quality(thumb: np.ndarray) -> tuple[np.ndarray, int]:
    """:func:`hashes`, and the field's quality (0..100): the share of the whole field's energy
    (but its mean) in frequencies that vary along both axes, averaged over the channels, x 100.

    A field whose structure runs along one axis (a horizon, a sky's gradient, stripes) is told
    from another of its kind by a few numbers (where the horizon is), so two such photos' hashes
    are as close as a crop and its original: the demo's distinct sunsets were 2 to 36 bits
    apart, closer than its crops. Photo-like scenes score 39 or more (1st percentile), the
    demo's sunsets 37 at most (200 of them, bench/neardup.py): crops are searched among fields of
    ``validate.min_field_quality`` or more."""
    transform = _transform()
    rows = len(transform)
    # every channel's A @ C @ A.T as two plain matrix products (a batched product costs more here)
    right = (channels(thumb).reshape(CHANNELS * SIDE, SIDE) @ transform.T).reshape(CHANNELS, SIDE, rows)
    both = transform @ right.transpose(1, 0, 2).reshape(SIDE, CHANNELS * rows)  # (y coefficient, channel, x)
    count = len(INTERVALS)
    blocks = both.reshape(count, FREQUENCIES, CHANNELS, count, FREQUENCIES).transpose(0, 3, 2, 1, 4)
    energy = np.square(blocks[0, 0])  # the whole field's (channel, u, v)
    energy[:, 0, 0] = 0
    total = energy.sum(axis=(1, 2))
    # a channel varying by less than a grey level (RMS) has no structure to share: rounding's, at most
    mixed = np.divide(energy[:, 1:, 1:].sum(axis=(1, 2)), total, out=np.zeros(CHANNELS), where=total > SIDE**2)
    blocks = blocks.reshape(WINDOWS, CHANNELS, FREQUENCIES**2)
    middle = FREQUENCIES**2 // 2
    pair = np.sort(blocks, axis=2)[:, :, middle - 1 : middle + 1]  # a full sort of 64 is faster than partition
    bits = blocks > pair.mean(axis=2, keepdims=True)
    return np.packbits(bits.reshape(WINDOWS, BITS), axis=1), round(100 * float(mixed.mean()))
