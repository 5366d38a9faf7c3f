"""fieldhash: a crop's whole field is near a window of its original, distinct scenes are not."""

import numpy as np
import pytest
from PIL import Image
from scenes import crop, jpeg, scene

from img2npz import fieldhash
from img2npz.decode import load_image
from img2npz.neardup import distances


def hashes_of(image):
    return fieldhash.hashes(fieldhash.thumbnail(image))


def closest_window(original, copy) -> int:
    return int(distances(hashes_of(original)[1:], hashes_of(copy)[0]).min())


@pytest.fixture(scope="module")
def photos():
    return [scene(np.random.default_rng([5, n]), (480, 360)) for n in range(12)]


def test_shape_and_the_windows_boxes(photos):
    found = hashes_of(photos[0])
    assert found.shape == (fieldhash.WINDOWS, fieldhash.BYTES) == (36, 32) and found.dtype == np.uint8
    assert fieldhash.window_box(0) == (0.0, 0.0, 1.0, 1.0)
    assert fieldhash.window_box(len(fieldhash.INTERVALS) * 5 + 3) == (0.0, 0.1, 0.9, 1.0)
    assert np.array_equal(found, hashes_of(photos[0].copy()))  # deterministic
    # about half the bits of each channel are set (compared with their median)
    assert 0.35 < np.unpackbits(found).mean() < 0.65


@pytest.mark.parametrize(
    "keep_x, keep_y, at_x, at_y",
    [(0.9, 0.9, 0.0, 0.0), (0.9, 0.9, 1.0, 1.0), (0.9, 1.0, 1.0, 0.0), (0.95, 0.95, 0.5, 0.5), (0.92, 0.92, 1.0, 0.0)],
)
def test_a_crop_is_near_a_window_of_its_original_and_far_from_other_scenes(photos, keep_x, keep_y, at_x, at_y):
    for number, photo in enumerate(photos[:4]):
        cropped = jpeg(crop(photo, keep_x, keep_y, at_x, at_y), 90)
        assert closest_window(photo, cropped) <= 36
        others = [other for index, other in enumerate(photos) if index != number]
        assert min(closest_window(other, cropped) for other in others) > 44


def test_greyscale_photos_hash_as_well(photos):
    grey = [photo.convert("L").convert("RGB") for photo in photos[:4]]
    for number, photo in enumerate(grey):
        cropped = crop(photo, 0.9, 0.9, 1.0, 0.0)
        assert closest_window(photo, cropped) <= 36
        assert min(closest_window(other, cropped) for index, other in enumerate(grey) if index != number) > 44


def test_the_decoder_hands_over_the_full_field_before_the_row_crops_it(tmp_path, photos):
    wide = photos[0].resize((720, 240))
    wide.save(tmp_path / "wide.png")
    fields = []
    row = load_image(tmp_path / "wide.png", (64, 64), "center-crop", field=fields.append)
    assert row.size == (64, 64) and fields[0].size == (720, 240)


def test_a_field_that_runs_along_one_axis_has_low_quality_and_a_scene_does_not(photos):
    from img2npz.demo import render

    def quality(image):
        return fieldhash.hashes_and_quality(fieldhash.thumbnail(image))[1]

    rng = np.random.default_rng(3)
    sunsets = [render("sunsets", (400, 300), rng) for _ in range(12)]
    assert max(map(quality, sunsets)) < 40 <= min(map(quality, photos))  # validate.min_field_quality's default
    ramp = Image.fromarray(np.broadcast_to(np.linspace(0, 255, 300)[:, None, None], (300, 400, 3)).astype(np.uint8))
    assert quality(ramp) == 0 and quality(Image.new("RGB", (50, 40), "grey")) == 0  # no 2-D energy, or none at all
    found, _ = fieldhash.hashes_and_quality(fieldhash.thumbnail(photos[1]))
    assert np.array_equal(found, hashes_of(photos[1]))
