"""Stored pixels in the configured ``image.dtype``: uint8 as decoded, or floats on the 0..1 scale,
then normalised with ``image.normalize``; and back to the uint8 they came from, exactly, where that
is possible (a reused row is counted into the histogram by the uint8 values its decoding gave)."""

from __future__ import annotations

import numpy as np


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
