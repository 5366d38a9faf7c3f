"""Open any image Pillow can read and turn it into an upright RGB picture, or say why not.

The pixel policy (README, "What counts as a failure") lives here. Each step raises :class:`ImageFailure` with its stage
(``decode``, ``exif``, ``convert``, ``resize``) and a one-line reason; the first exception decides, and
a failed ``load()`` is never retried. Truncated files stay failures (``LOAD_TRUNCATED_IMAGES`` is never
set) and so do images over Pillow's decompression-bomb limit.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import TypeVar

import numpy as np
from PIL import Image, UnidentifiedImageError

from img2npz.resize import ResizeMode, needed_source_size, resize

T = TypeVar("T")

ORIENTATION_TAG = 0x0112
TRANSPOSE_FOR_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}
DRAFT_MARGIN = 2
# Raise whenever a change here or in img2npz.resize changes the pixels of any image: shards built
# before it are then decoded again instead of reused (img2npz.reuse).
DECODER_VERSION = 1


class ImageTimeout(TimeoutError):
    """Decoding one image took longer than its time limit."""


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Interrupt the block after ``seconds`` with :class:`ImageTimeout` (SIGALRM, main thread only).

    Pillow decodes in blocks driven from Python, so a decoder that never finishes is interrupted
    between blocks; a single C call that never returns would not be.
    """
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum, frame):
        raise ImageTimeout(f"took longer than the {seconds:g} s limit (preprocess.image_timeout_s)")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class ImageFailure(Exception):
    """An image that cannot go into the dataset: ``stage`` and a one-line ``reason``."""

    def __init__(self, stage: str, reason: str):
        super().__init__(f"{stage}: {reason}")
        self.stage = stage
        self.reason = reason

    def __reduce__(self):
        return type(self), (self.stage, self.reason)


def one_line(error: BaseException) -> str:
    text = str(error) or "no message"
    return " ".join(f"{type(error).__name__}: {text}".split())


def _stage(stage: str, step: Callable[[], T]) -> T:
    try:
        return step()
    except ImageFailure:
        raise
    except Exception as error:  # DecompressionBombWarning, raised as an error, is one too
        raise ImageFailure(stage, one_line(error)) from error


def _orientation(image: Image.Image) -> int:
    value = image.getexif().get(ORIENTATION_TAG, 1)
    return value if value in TRANSPOSE_FOR_ORIENTATION else 1


def _safe_orientation(image: Image.Image) -> int:
    try:
        return _orientation(image)
    except Exception:
        return 1  # the exif stage will report it after decoding


def _draft(image: Image.Image, target: tuple[int, int], mode: ResizeMode) -> None:
    """Let libjpeg decode at 1/2, 1/4 or 1/8 scale when that still leaves twice the needed pixels."""
    if image.format != "JPEG":
        return
    orientation = _safe_orientation(image)
    upright = image.size[::-1] if orientation >= 5 else image.size
    need_w, need_h = needed_source_size(upright, target, mode)
    if orientation >= 5:
        need_w, need_h = need_h, need_w
    image.draft(None, (need_w * DRAFT_MARGIN, need_h * DRAFT_MARGIN))


def _open_and_load(
    path: str | os.PathLike,
    target: tuple[int, int] | None,
    mode: ResizeMode,
    admit: Callable[[tuple[int, int]], None] | None = None,
) -> Image.Image:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(path)
        except UnidentifiedImageError:
            if os.path.getsize(path) == 0:  # Pillow's "cannot identify" does not say why
                raise ImageFailure("decode", "empty file (0 bytes)") from None
            raise
        try:
            if admit is not None:  # on the header's size, upright, before any pixel is decoded
                width, height = image.size
                admit((height, width) if _safe_orientation(image) >= 5 else (width, height))
            if target is not None:
                _draft(image, target, mode)
            image.load()
        except BaseException:
            image.close()
            raise
    return image


def _upright(image: Image.Image) -> Image.Image:
    method = TRANSPOSE_FOR_ORIENTATION.get(_orientation(image))
    return image.transpose(method) if method is not None else image


def _scale_to_uint8(values: np.ndarray) -> np.ndarray:
    """32-bit integer and float images: scale their own finite min..max to 0..255."""
    values = values.astype(np.float64)
    finite = np.isfinite(values)
    out = np.zeros(values.shape, dtype=np.float64)
    if finite.any():
        low, high = values[finite].min(), values[finite].max()
        if high > low:
            out[finite] = (values[finite] - low) * (255.0 / (high - low))
    out[values == np.inf] = 255.0
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def to_rgb(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Any mode to RGB; transparency is composited onto ``background``."""
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        return image
    if mode in SIXTEEN_BIT_MODES:
        values = np.asarray(image).astype(np.uint32)
        gray = ((values * 255 + 32767) // 65535).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    if mode in ("I", "F"):
        return Image.fromarray(_scale_to_uint8(np.asarray(image)), "L").convert("RGB")
    if mode in ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", image.size, (*background, 255))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    return image.convert("RGB")


def load_image(
    path: str | os.PathLike,
    target: tuple[int, int] | None = None,
    mode: ResizeMode | str = ResizeMode.CENTER_CROP,
    background: tuple[int, int, int] = (255, 255, 255),
    timeout_s: float | None = None,
    histogram: np.ndarray | None = None,
    admit: Callable[[tuple[int, int]], None] | None = None,
    field: Callable[[Image.Image], None] | None = None,
) -> Image.Image:
    """Decode ``path`` to an upright, loaded RGB image, resized to ``target`` (W, H) if given.

    ``timeout_s`` bounds the whole image; the stage that runs out of time is the one reported.
    ``histogram``, a (3, 256) int64 array, gets this image's channel counts added (Pillow counts in
    C, far faster than numpy on the array). ``admit`` is called with the image's upright (width,
    height) before it is decoded, and may raise an :class:`ImageFailure` (the filters do).
    ``field`` is called with the upright RGB image before the resize: the full field that
    :mod:`img2npz.fieldhash` hashes (a draft-decoded JPEG's, already reduced to at least twice
    what the row needs).
    """
    mode = ResizeMode(mode)
    with time_limit(timeout_s):
        source = _stage("decode", lambda: _open_and_load(path, target, mode, admit))
        try:
            image = _stage("exif", lambda: _upright(source))
            image = _stage("convert", lambda: to_rgb(image, background))
            if field is not None:
                field(image)
            if target is not None:
                image = _stage("resize", lambda: resize(image, target, mode, background))
            if image is source:
                image = image.copy()  # the source is closed below
            if histogram is not None:
                histogram += np.asarray(image.histogram(), np.int64).reshape(3, 256)
            return image
        finally:
            source.close()


def load_rgb(path: str | os.PathLike, *args, **kwargs) -> np.ndarray:
    """:func:`load_image` as an (H, W, 3) uint8 array (the same arguments)."""
    return np.asarray(load_image(path, *args, **kwargs))
