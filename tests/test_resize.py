"""resize: the geometry of each mode, and draft decoding within the resize's own error."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from img2npz.resize import ResizeMode, geometry, needed_source_size, resize


def test_center_crop_takes_the_middle_at_the_target_aspect():
    geo = geometry((400, 200), (100, 100), ResizeMode.CENTER_CROP)
    assert geo.box == (100.0, 0.0, 300.0, 200.0)
    assert geo.size == (100, 100) and geo.offset == (0, 0)


def test_stretch_uses_the_whole_image():
    geo = geometry((400, 200), (100, 100), "stretch")
    assert geo.box == (0.0, 0.0, 400.0, 200.0) and geo.size == (100, 100)


def test_pad_letterboxes():
    geo = geometry((400, 200), (100, 100), "pad")
    assert geo.size == (100, 50) and geo.offset == (0, 25)
    tall = geometry((10, 1000), (100, 100), "pad")
    assert tall.size == (1, 100) and tall.offset == (49, 0)


def test_pad_fills_with_background():
    image = Image.new("RGB", (400, 200), (255, 0, 0))
    pixels = np.asarray(resize(image, (100, 100), "pad", (0, 0, 255)))
    assert pixels.shape == (100, 100, 3)
    assert tuple(pixels[5, 50]) == (0, 0, 255) and tuple(pixels[50, 50]) == (255, 0, 0)


@pytest.mark.parametrize("mode", list(ResizeMode))
def test_every_mode_gives_the_target_size(mode):
    for size in [(1, 1), (20000, 10), (7, 3000), (256, 256)]:
        out = resize(Image.new("RGB", size, (9, 9, 9)), (64, 48), mode, (0, 0, 0))
        assert out.size == (64, 48)


def test_needed_source_size():
    assert needed_source_size((1600, 1200), (128, 128), "center-crop") == (171, 128)
    assert needed_source_size((1600, 1200), (128, 128), "pad") == (128, 96)
    assert needed_source_size((1600, 1200), (128, 64), "stretch") == (128, 64)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 3000),
    st.integers(1, 3000),
    st.integers(1, 300),
    st.integers(1, 300),
    st.sampled_from(list(ResizeMode)),
)
def test_geometry_stays_inside_the_source_for_any_sizes(sw, sh, tw, th, mode):
    geo = geometry((sw, sh), (tw, th), mode)
    left, top, right, bottom = geo.box
    assert 0 <= left < right <= sw and 0 <= top < bottom <= sh
    assert 1 <= geo.size[0] <= tw and 1 <= geo.size[1] <= th
    assert geo.offset[0] >= 0 and geo.offset[0] + geo.size[0] <= tw and geo.offset[1] + geo.size[1] <= th


def test_sizes_that_broke_the_crop_box_once():
    for size in [(541, 406), (499, 374), (333, 500), (2000, 1500), (559, 331)]:
        assert resize(Image.new("RGB", size, (1, 2, 3)), (256, 256), "center-crop", (0, 0, 0)).size == (256, 256)
