"""cropcheck: a crop's pixels agree with its original's where the window says, another scene's not."""

import io

import numpy as np
import pytest
from PIL import Image
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


@pytest.mark.parametrize("target", [(96, 64), (48, 96)])  # the second: a portrait row of landscape photos
@pytest.mark.parametrize("mode", ["center-crop", "stretch", "pad"])
@pytest.mark.parametrize("keep_x, keep_y, at_x, at_y", [(0.9, 0.9, 0, 0), (0.92, 1.0, 1, 0), (0.9, 0.9, 0.5, 0.5)])
def test_a_crop_agrees_with_its_original_and_not_with_another_scene(mode, keep_x, keep_y, at_x, at_y, target):
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


def pair_of_rows(photo, keep, target, mode):
    """(rows, sizes, window) of a crop (pair 0 to 1) and its original, as the shard jobs make them."""
    made = [row_of(image, target, mode) for image in (crop(photo, keep, keep, 0, 0), photo)]
    window = 1 + int(distances(made[0][2][0][None], made[1][2][1:]).argmin())
    return np.stack([row for row, _, _ in made]), np.array([size for _, size, _ in made]), window


@pytest.mark.parametrize("dtype", ["float32", "float16", "normalized"])
def test_the_decision_is_the_same_whatever_the_rows_dtype(dtype):
    """A low-contrast photo (a few grey levels of detail) and its crop, stored as uint8 or as floats:
    the flatness floor is in grey levels, so floats of 0..1 do not read as flat."""
    photo = scene(np.random.default_rng(11), (480, 360))
    dim = Image.fromarray((128 + (np.asarray(photo, np.float32) - 128) * 0.06).astype(np.uint8))
    rows, sizes, window = pair_of_rows(dim, 0.9, (64, 64), "center-crop")
    normalize = {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]} if dtype == "normalized" else None
    stored = rows / np.float32(255)
    if normalize:
        stored = (stored - np.float32(normalize["mean"])) / np.float32(normalize["std"])
    stored = stored.astype("float16" if dtype == "float16" else "float32")

    def agree(pixels):
        return cropcheck.agree(np.array([0]), np.array([1]), np.array([window]), sizes, pixels, (64, 64), "center-crop")

    assert agree(cropcheck.displayed(lambda asked: rows[asked], None)).tolist() == [True]
    assert agree(cropcheck.displayed(lambda asked: stored[asked], normalize)).tolist() == [True]


def test_a_bright_nearly_flat_region_scores_no_more_than_one():
    """Correlations are of centred values: E[x^2] - E[x]^2 of values near 250 would be rounding."""
    rng = np.random.default_rng(12)
    shown = np.ones((75, cropcheck.GRID**2), bool)
    for _ in range(200):
        seen = np.float32(250) + rng.normal(0, 0.05, cropcheck.GRID**2).astype(np.float32)
        theirs = np.float32(250) + rng.normal(0, 0.05, (75, cropcheck.GRID**2)).astype(np.float32)
        assert cropcheck._best_score(seen, theirs, shown) <= 1.0


def test_pairs_that_cannot_be_checked_are_kept_as_found():
    """Noise rows disagree with anything; a pair is still kept where its pictures are too small in
    the rows (a narrow source padded) or the crop's picture is not in the other's row at all."""
    rng = np.random.default_rng(13)
    rows = rng.integers(0, 256, (2, 96, 40, 3), np.uint8)

    def agree(sizes, window, target, mode):
        pixels = lambda asked: rows[asked]  # noqa: E731
        return bool(cropcheck.agree(np.array([0]), np.array([1]), np.array([window]), sizes, pixels, target, mode)[0])

    middle = next(w for w in range(1, 36) if fieldhash.window_box(w)[0] > 0 and fieldhash.window_box(w)[2] < 1)
    edge = max(range(1, 36), key=lambda w: abs(sum(fieldhash.window_box(w)[0::2]) / 2 - 0.5))
    assert not agree(np.array([[300, 400], [320, 420]]), middle, (40, 96), "center-crop")  # checked: noise
    assert agree(np.array([[1800, 90], [2000, 90]]), middle, (40, 96), "pad")  # a 40 x 2 strip in each row
    wide = np.array([[1800, 90], [2000, 90]])  # each row shows 2% of its picture's width, from the middle
    assert agree(wide, edge, (40, 96), "center-crop")
