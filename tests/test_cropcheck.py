"""cropcheck: a crop's pixels agree with its original's where the window says, another scene's not."""

import io

import numpy as np
import pytest
from scenes import crop, scene

from img2npz import cropcheck, fieldhash
from img2npz.decode import load_image
from img2npz.neardup import distances


def row_of(image, target, mode):
    """The stored row, its source size and field hashes, as a shard job makes them (via JPEG q90)."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    buffer.seek(0)
    seen = []
    row = load_image(buffer, target, mode, (0, 0, 0), field=lambda full: seen.append(full.size))
    return np.asarray(row), seen[0], fieldhash.hashes(fieldhash.thumbnail(image))


def score(whole, other, target, mode):
    (row_a, size_a, hashes_a), (row_b, size_b, hashes_b) = row_of(whole, target, mode), row_of(other, target, mode)
    window = 1 + int(distances(hashes_a[0][None], hashes_b[1:]).argmin())
    place_a, place_b = (cropcheck.Placement(size, target, mode) for size in (size_a, size_b))
    return cropcheck.correlation(cropcheck.luminance(row_a), place_a, cropcheck.luminance(row_b), place_b, window)


@pytest.mark.parametrize("mode", ["center-crop", "stretch", "pad"])
@pytest.mark.parametrize("keep_x, keep_y, at_x, at_y", [(0.9, 0.9, 0, 0), (0.92, 1.0, 1, 0), (0.9, 0.9, 0.5, 0.5)])
def test_a_crop_agrees_with_its_original_and_not_with_another_scene(mode, keep_x, keep_y, at_x, at_y):
    target = (96, 64)
    photos = [scene(np.random.default_rng([8, n]), (480, 360)) for n in range(4)]
    for n, photo in enumerate(photos[:2]):
        cut = crop(photo, keep_x, keep_y, at_x, at_y)
        assert score(cut, photo, target, mode) >= cropcheck.MIN_CORRELATION
        assert score(cut, photos[n + 2], target, mode) < cropcheck.MIN_CORRELATION


def test_pairs_are_checked_only_where_the_rows_are_large_enough():
    photos = [scene(np.random.default_rng([9, n]), (400, 300)) for n in range(2)]
    images = [crop(photos[0], 0.9, 0.9, 0, 0), photos[0], photos[1]]
    made = [row_of(image, (64, 64), "center-crop") for image in images]
    rows = np.stack([row for row, _, _ in made])
    sizes = np.array([size for _, size, _ in made])
    window = 1 + int(distances(made[0][2][0][None], made[1][2][1:]).argmin())
    whole, other = np.array([0, 0]), np.array([1, 2])

    def pixels(asked):
        return rows[asked]

    kept = cropcheck.agree(whole, other, np.array([window, window]), sizes, pixels, (64, 64), "center-crop")
    assert kept.tolist() == [True, False]
    small = cropcheck.agree(whole, other, np.array([window, window]), sizes, pixels, (16, 16), "center-crop")
    assert small.tolist() == [True, True]
