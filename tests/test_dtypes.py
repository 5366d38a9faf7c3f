"""dtypes: stored pixels back to their uint8 values, exactly or not at all."""

import numpy as np
import pytest

from img2npz.dtypes import to_stored_dtype, uint8_of


@pytest.mark.parametrize(
    ("dtype", "normalize"),
    [
        ("uint8", None),
        ("float32", None),
        ("float16", None),
        ("float32", {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}),
        ("float16", {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}),
        ("float16", {"mean": [0.0, 0.5, 1.0], "std": [0.01, 2.0, 0.5]}),
    ],
)
def test_stored_rows_give_back_their_uint8_pixels_exactly(dtype, normalize):
    pixels = np.arange(256 * 3, dtype=np.int64).reshape(16, 16, 3) % 256
    pixels = pixels.astype(np.uint8)
    stored = to_stored_dtype(pixels, dtype, normalize)
    assert np.array_equal(uint8_of(stored, dtype, normalize), pixels)


def test_a_row_whose_pixels_cannot_be_recovered_is_not_reused():
    stored = to_stored_dtype(np.full((2, 2, 3), 7, np.uint8), "float32", None)
    stored[0, 0, 0] = np.float32(0.5)  # no uint8 value gives this
    assert uint8_of(stored, "float32", None) is None
