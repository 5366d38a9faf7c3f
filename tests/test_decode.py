"""decode: every Pillow mode upright in RGB, or a failure with its stage and reason."""

import io

import numpy as np
import pytest
from conftest import asymmetric, save, solid, with_orientation
from PIL import Image

from img2npz import decode
from img2npz.decode import ImageFailure, load_rgb

WHITE = (255, 255, 255)


def centre(pixels):
    return tuple(int(v) for v in pixels[pixels.shape[0] // 2, pixels.shape[1] // 2])


def test_solid_jpeg_keeps_its_colour(tmp_path):
    path = save(solid((200, 30, 60), (300, 200)), tmp_path / "a.jpg", quality=95)
    pixels = load_rgb(path, (32, 32))
    assert pixels.shape == (32, 32, 3) and pixels.dtype == np.uint8
    assert np.abs(pixels.astype(int) - (200, 30, 60)).max() <= 3


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_comes_out_upright(tmp_path, orientation):
    upright = asymmetric((60, 40))
    stored, exif = with_orientation(upright, orientation)
    path = save(stored, tmp_path / f"o{orientation}.png", exif=exif)
    pixels = load_rgb(path)
    assert pixels.shape == (40, 60, 3)
    assert np.array_equal(pixels, np.asarray(upright))


def test_exif_rotated_jpeg_is_upright_after_resize(tmp_path):
    upright = asymmetric((120, 80))
    stored, exif = with_orientation(upright, 6)
    path = save(stored, tmp_path / "r.jpg", exif=exif, quality=95)
    pixels = load_rgb(path, (60, 40), "stretch").astype(int)
    assert pixels[5, 5, 0] > 200 and pixels[5, 5, 2] < 60  # red top-left
    assert pixels[5, -5, 2] > 200  # blue top-right
    assert pixels[-2, 30, 1] > 200  # green bottom band


@pytest.mark.parametrize(
    "make",
    [
        lambda: Image.new("RGBA", (20, 20), (0, 0, 255, 0)),
        lambda: Image.new("LA", (20, 20), (0, 0)),
        lambda: Image.new("PA", (20, 20), (0, 0)),
    ],
)
def test_transparent_pixels_take_the_background(make):
    pixels = decode.to_rgb(make(), (10, 20, 30))
    assert centre(np.asarray(pixels)) == (10, 20, 30)


def test_palette_with_transparency_index(tmp_path):
    image = Image.new("P", (20, 20), 1)
    image.putpalette([0, 0, 0, 250, 0, 0] + [0] * 762)
    image.paste(0, (0, 0, 10, 20))
    path = save(image, tmp_path / "p.png", transparency=0)
    pixels = load_rgb(path, background=(0, 255, 0))
    assert centre(pixels[:, :10]) == (0, 255, 0)
    assert centre(pixels[:, 10:]) == (250, 0, 0)


def test_sixteen_bit_gradient_is_scaled_not_clipped(tmp_path):
    gradient = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (16, 1))
    path = save(Image.fromarray(gradient), tmp_path / "g16.png")
    assert Image.open(path).mode.startswith("I")
    pixels = load_rgb(path)[..., 0].astype(int)
    assert pixels[0, 0] == 0 and pixels[0, -1] == 255
    assert np.all(np.diff(pixels[0]) >= 0) and len(np.unique(pixels)) > 50


def test_float_and_int32_images_use_their_own_range():
    values = np.array([[-5.0, 0.0, 5.0, np.nan]], dtype=np.float32)
    pixels = np.asarray(decode.to_rgb(Image.fromarray(values, "F"), WHITE))[0, :, 0]
    assert pixels.tolist() == [0, 128, 255, 0]
    ints = np.array([[1000, 2000]], dtype=np.int32)
    assert np.asarray(decode.to_rgb(Image.fromarray(ints, "I"), WHITE))[0, :, 0].tolist() == [0, 255]


@pytest.mark.parametrize("mode", ["1", "L", "CMYK", "YCbCr"])
def test_other_modes_convert(mode):
    image = Image.new("RGB", (8, 8), (255, 255, 255)).convert(mode)
    assert centre(np.asarray(decode.to_rgb(image, (0, 0, 0)))) == (255, 255, 255)


def test_cmyk_jpeg(tmp_path):
    path = save(Image.new("RGB", (40, 40), (0, 0, 255)).convert("CMYK"), tmp_path / "c.jpg", quality=95)
    assert Image.open(path).mode == "CMYK"
    r, g, b = centre(load_rgb(path))
    assert b > 200 and r < 50 and g < 50


def test_first_frame_of_an_animation(tmp_path):
    frames = [solid((255, 0, 0), (20, 20)), solid((0, 0, 255), (20, 20))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    r, _g, b = centre(load_rgb(path))
    assert r > 200 and b < 50


def jpeg_bytes():
    buffer = io.BytesIO()
    solid((10, 200, 10), (200, 200)).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "empty file (0 bytes)"),
        (b"<html>not an image</html>", "cannot identify"),
        (jpeg_bytes()[:400], ""),
    ],
)
def test_unreadable_files_fail_at_decode(tmp_path, data, fragment):
    path = tmp_path / "bad.jpg"
    path.write_bytes(data)
    with pytest.raises(ImageFailure) as caught:
        load_rgb(path, (16, 16))
    assert caught.value.stage == "decode"
    assert fragment in caught.value.reason and "\n" not in caught.value.reason


def test_decompression_bombs_are_failures(tmp_path, monkeypatch):
    path = save(solid((1, 2, 3), (100, 100)), tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)
    with pytest.raises(ImageFailure) as caught:
        load_rgb(path)
    assert caught.value.stage == "decode" and "Decompression" in caught.value.reason


def test_broken_exif_fails_only_at_the_exif_stage(tmp_path, monkeypatch):
    path = save(solid((1, 2, 3), (10, 10)), tmp_path / "e.png")

    def broken(self):
        raise SyntaxError("corrupt EXIF")

    monkeypatch.setattr(Image.Image, "getexif", broken)
    with pytest.raises(ImageFailure) as caught:
        load_rgb(path)
    assert caught.value.stage == "exif"


def photo(size):
    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    pixels = np.stack([128 + 100 * np.sin(x / 17.0), 128 + 100 * np.cos(y / 23.0), (x + y) % 256], axis=-1)
    return Image.fromarray(pixels.astype(np.uint8), "RGB")


@pytest.mark.parametrize("mode", ["center-crop", "stretch", "pad"])
def test_jpeg_draft_stays_within_the_resize_error(tmp_path, mode, monkeypatch):
    path = save(photo((1600, 1200)), tmp_path / "big.jpg", quality=92)
    drafted = load_rgb(path, (128, 96), mode).astype(int)
    monkeypatch.setattr(decode, "_draft", lambda *args: None)
    full = load_rgb(path, (128, 96), mode).astype(int)
    assert np.abs(drafted - full).mean() < 1.5
    assert np.abs(drafted - full).max() < 40


def test_a_hanging_decode_is_cut_off_and_reported(tmp_path, monkeypatch):
    path = save(solid((1, 2, 3), (10, 10)), tmp_path / "slow.png")

    def never_finishes(*args):
        while True:
            pass

    monkeypatch.setattr(decode, "_open_and_load", never_finishes)
    with pytest.raises(ImageFailure) as caught:
        load_rgb(path, (8, 8), timeout_s=0.2)
    assert caught.value.stage == "decode" and "image_timeout_s" in caught.value.reason


def test_a_normal_image_is_not_disturbed_by_the_time_limit(tmp_path):
    path = save(solid((1, 2, 3), (10, 10)), tmp_path / "ok.png")
    assert load_rgb(path, (8, 8), timeout_s=5).shape == (8, 8, 3)
    assert load_rgb(path, (8, 8), timeout_s=5)[0, 0].tolist() == [1, 2, 3]
