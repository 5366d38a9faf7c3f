"""Generated photos and the near-duplicates users make of them, for the tests and benchmarks only.

A *scene* is a few blurred shapes over a two-colour gradient, with sensor noise: distinct scenes
are alike in kind (as photos of one subject are) and differ in layout. :data:`VARIANTS` are the
edits that make near-duplicates in real collections: re-encoding at a lower JPEG quality, resizing,
brightness and contrast changes, and crops. Everything is deterministic from its random generator.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter


def scene(rng: np.random.Generator, size: tuple[int, int] = (480, 360)) -> Image.Image:
    """One photo-like RGB picture of ``size`` (width, height)."""
    width, height = size
    top, bottom = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    ramp = np.linspace(0, 1, height)[:, None, None]
    image = Image.fromarray(((top + (bottom - top) * ramp) * np.ones((1, width, 1))).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 9))):
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        radius = rng.uniform(0.05, 0.3) * min(size)
        box = [x - radius, y - radius * rng.uniform(0.3, 1.5), x + radius, y + radius]
        colour = tuple(int(c) for c in rng.uniform(0, 255, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    pixels = np.asarray(image.filter(ImageFilter.GaussianBlur(1.5)), np.int16)
    pixels = pixels + rng.integers(-6, 7, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def crop(image: Image.Image, keep_x: float, keep_y: float, at_x: float, at_y: float) -> Image.Image:
    """Keep ``keep_x`` of the width and ``keep_y`` of the height; ``at_*`` 0..1 place the window
    (0: left or top edge, 1: right or bottom)."""
    width, height = round(image.width * keep_x), round(image.height * keep_y)
    left, top = round((image.width - width) * at_x), round((image.height - height) * at_y)
    return image.crop((left, top, left + width, top + height))


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    """``image`` after a round trip through JPEG at ``quality``."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def _scaled(factor: float) -> Callable[[Image.Image], Image.Image]:
    return lambda image: image.resize((round(image.width * factor), round(image.height * factor)), Image.BICUBIC)


def _enhanced(kind: type, factor: float) -> Callable[[Image.Image], Image.Image]:
    return lambda image: kind(image).enhance(factor)


VARIANTS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "jpeg60": lambda image: jpeg(image, 60),
    "half": _scaled(0.5),
    "double": _scaled(2.0),
    "brighter15": _enhanced(ImageEnhance.Brightness, 1.15),
    "darker15": _enhanced(ImageEnhance.Brightness, 0.85),
    "contrast+15": _enhanced(ImageEnhance.Contrast, 1.15),
    "contrast-15": _enhanced(ImageEnhance.Contrast, 0.85),
    "crop2_centre": lambda image: crop(image, 0.98, 0.98, 0.5, 0.5),
    "crop5_centre": lambda image: crop(image, 0.95, 0.95, 0.5, 0.5),
    "crop10_centre": lambda image: crop(image, 0.9, 0.9, 0.5, 0.5),
    "crop10_corner": lambda image: crop(image, 0.9, 0.9, 0.0, 0.0),
    "crop10_side": lambda image: crop(image, 0.9, 1.0, 1.0, 0.0),
}
# What the default threshold is meant to catch (README, "Near-duplicates"): the others are there
# to be measured, and to show what it does not.
CAUGHT = ("jpeg60", "half", "double", "brighter15", "darker15", "contrast+15", "contrast-15")
