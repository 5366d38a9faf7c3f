"""fingerprint: near-duplicate edits stay within the default threshold, distinct scenes far from it."""

import numpy as np
from PIL import Image
from scenes import CAUGHT, VARIANTS, scene

from img2npz import fingerprint, neardup

NEAR = 24  # edits land within this many bits (the default threshold, 16, takes most of them)


def _hash(image: Image.Image, size=(128, 128)) -> np.ndarray:
    row = image.resize(size, Image.Resampling.BICUBIC)
    return fingerprint.hashes(fingerprint.thumbnail(row)[None])[0]


def test_edits_stay_near_and_distinct_scenes_far():
    originals = [scene(np.random.default_rng([1, n])) for n in range(12)]
    hashes = np.stack([_hash(image) for image in originals])
    for name in CAUGHT:
        edited = np.stack([_hash(VARIANTS[name](image)) for image in originals])
        assert neardup.distances(hashes, edited).max() <= NEAR, name
    first, second = np.triu_indices(len(originals), 1)
    assert neardup.distances(hashes[first], hashes[second]).min() > 2 * NEAR


def test_thumbnail_reduces_by_whole_factors_and_keeps_small_rows():
    assert fingerprint.thumbnail(Image.new("RGB", (256, 200))).shape == (67, 64)  # factors 4 and 3, rounded up
    small = scene(np.random.default_rng(2), (32, 40))
    assert fingerprint.thumbnail(small).shape == (40, 32)
    assert np.array_equal(fingerprint.thumbnail(small, np.asarray(small)), fingerprint.thumbnail(small))


def test_hash_bits_are_half_set_and_packed():
    hashes = fingerprint.hashes(np.stack([fingerprint.thumbnail(scene(np.random.default_rng(n))) for n in range(4)]))
    assert hashes.shape == (4, fingerprint.BYTES) and hashes.dtype == np.uint8
    assert (np.unpackbits(hashes, axis=1).sum(axis=1) == 128).all()  # above the median of 256 coefficients


def test_distances_count_differing_bits():
    a = np.zeros((2, fingerprint.BYTES), np.uint8)
    b = a.copy()
    b[1, 0], b[1, 31] = 0b1011, 0xFF
    assert neardup.distances(a, b).tolist() == [0, 11]


def test_a_hash_does_not_depend_on_its_batch(monkeypatch):
    rng = np.random.default_rng(5)
    thumbnails = rng.integers(0, 256, size=(23, 64, 64), dtype=np.uint8)
    whole = fingerprint.hashes(thumbnails)
    monkeypatch.setattr(fingerprint, "BLOCK", 4)  # blocks of 4, the last of 3
    assert np.array_equal(fingerprint.hashes(thumbnails), whole)
    assert np.array_equal(np.concatenate([fingerprint.hashes(thumbnails[n : n + 1]) for n in range(23)]), whole)


def test_quality_is_low_for_flat_and_smooth_rows_and_high_for_photos():
    def quality(pixels: np.ndarray) -> int:
        row = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        return int(fingerprint.hashes_and_quality(fingerprint.thumbnail(row)[None])[1][0])

    rng = np.random.default_rng(4)
    photos = [quality(np.asarray(scene(np.random.default_rng([2, n])).resize((128, 128)))) for n in range(8)]
    assert min(photos) >= 40
    assert quality(np.full((128, 128, 3), 90)) == 0
    assert quality(np.tile(np.linspace(0, 255, 128)[None, :, None], (128, 1, 3))) == 0  # a smooth gradient
    assert quality(128 + rng.normal(0, 6, (128, 128, 3))) < 10  # flat with sensor noise
