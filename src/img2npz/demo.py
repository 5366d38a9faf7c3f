"""A small, deterministic demo tree, so a fresh clone runs end to end with no data of the user's.

Five visually distinct classes of photo-like pictures (smooth shading, colour jitter, sensor-like noise,
JPEG at quality 90), a mix of JPEG, PNG (some with transparent areas) and BMP, some JPEGs stored
rotated with an EXIF orientation tag that makes them upright again, and three broken files that the
workflow must report instead of crashing on. Same seed, same files.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("bubbles", "checkers", "rings", "stripes", "sunsets")
ORIENTATION_INVERSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}
SIZES = ((320, 240), (240, 320), (400, 300), (288, 288), (200, 150))


def _grid(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    return np.meshgrid(np.linspace(0, 1, width), np.linspace(0, 1, height))


def _colour(rng: np.random.Generator, low: int = 30, high: int = 230) -> np.ndarray:
    return rng.uniform(low, high, size=3)


def _two_tone(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    a, b = _colour(rng), _colour(rng)
    return a * mask[..., None] + b * (1 - mask[..., None])


def _stripes(x, y, rng):
    angle = rng.uniform(0, np.pi)
    wave = np.sin(2 * np.pi * rng.uniform(4, 10) * (x * np.cos(angle) + y * np.sin(angle)))
    return _two_tone(0.5 + 0.5 * np.tanh(3 * wave), rng)


def _checkers(x, y, rng):
    f = rng.uniform(3, 7)
    angle = rng.uniform(0, np.pi / 2)
    u, v = x * np.cos(angle) - y * np.sin(angle), x * np.sin(angle) + y * np.cos(angle)
    wave = np.sin(2 * np.pi * f * u) * np.sin(2 * np.pi * f * v)
    return _two_tone(0.5 + 0.5 * np.tanh(4 * wave), rng)


def _rings(x, y, rng):
    cx, cy = rng.uniform(0.3, 0.7, size=2)
    radius = np.hypot(x - cx, y - cy)
    return _two_tone(0.5 + 0.5 * np.tanh(3 * np.sin(2 * np.pi * rng.uniform(5, 10) * radius)), rng)


def _bubbles(x, y, rng):
    canvas = np.zeros((*x.shape, 3)) + _colour(rng, 0, 60)
    for _ in range(rng.integers(4, 9)):
        cx, cy, size = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.18)
        blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * size**2))[..., None]
        canvas = canvas * (1 - blob) + _colour(rng, 120, 255) * blob
    return canvas


def _sunsets(x, y, rng):
    top, bottom = rng.uniform([20, 10, 60], [90, 60, 140]), rng.uniform([200, 80, 20], [255, 160, 80])
    sky = top + (bottom - top) * y[..., None]
    cx, horizon = rng.uniform(0.2, 0.8), rng.uniform(0.55, 0.75)
    sun = np.exp(-((x - cx) ** 2 + (y - horizon + 0.08) ** 2) / 0.004)[..., None]
    sky = sky * (1 - sun) + np.array([255, 240, 180]) * sun
    ground = (y > horizon)[..., None]
    return np.where(ground, sky * 0.25, sky)


PAINTERS: dict[str, Callable] = {
    "bubbles": _bubbles,
    "checkers": _checkers,
    "rings": _rings,
    "stripes": _stripes,
    "sunsets": _sunsets,
}


def render(class_name: str, size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """One photo-like RGB picture of ``class_name``: shading, vignette and noise over the pattern."""
    x, y = _grid(*size)
    pixels = PAINTERS[class_name](x, y, rng)
    light = 0.75 + 0.35 * (1 - np.hypot(x - rng.uniform(0.3, 0.7), y - rng.uniform(0.3, 0.7)))
    pixels = pixels * light[..., None] + rng.normal(0, 6, size=pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def _with_transparency(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Transparent margins (as a cut-out photo has): they must come out in the background colour."""
    alpha = np.full((image.height, image.width), 255, np.uint8)
    margin = int(rng.integers(8, 24))
    alpha[:margin, :] = 0
    alpha[-margin:, :] = 0
    rgba = image.convert("RGBA")
    rgba.putalpha(Image.fromarray(alpha, "L"))
    return rgba


def _write_image(image: Image.Image, folder: Path, stem: str, number: int, rng: np.random.Generator) -> None:
    if number % 11 == 5:
        image.save(folder / f"{stem}.bmp")
    elif number % 7 == 3:
        (_with_transparency(image, rng) if number % 2 else image).save(folder / f"{stem}.png")
    elif number % 5 == 1:
        orientation = 2 + number % 7
        exif = Image.Exif()
        exif[0x0112] = orientation
        stored = image.transpose(ORIENTATION_INVERSE[orientation])
        stored.save(folder / f"{stem}.jpg", quality=90, exif=exif.tobytes())
    else:
        image.save(folder / f"{stem}.jpg", quality=90)


def _write_broken(root: Path) -> None:
    good = root / "stripes" / "stripes_000.jpg"
    (root / "stripes" / "broken_truncated.jpg").write_bytes(good.read_bytes()[:1500])
    (root / "rings" / "broken_empty.png").write_bytes(b"")
    (root / "bubbles" / "broken_not_an_image.jpg").write_text("<html><body>404 not found</body></html>\n")


# Every demo file's mtime: a tree written again (the demo rule reruns when img2npz's code changes)
# is the same files to the index, whose listing of the source was taken before the rewrite in
# that run; with fresh mtimes every shard job found its images "changed since indexed".
DEMO_MTIME_NS = 1_767_225_600 * 10**9  # 2026-01-01


def make_demo_tree(root: str | os.PathLike, per_class: int = 60, seed: int = 0) -> int:
    """Write the demo tree to ``root`` (replaced whole, atomically), every file with the same
    bytes and mtime each time; return the number of files."""
    root = Path(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        for class_number, class_name in enumerate(CLASSES):
            folder = staging / class_name
            folder.mkdir()
            for number in range(per_class):
                rng = np.random.default_rng([seed, class_number, number])
                size = SIZES[number % len(SIZES)]
                _write_image(render(class_name, size, rng), folder, f"{class_name}_{number:03d}", number, rng)
        _write_broken(staging)
        for path in staging.rglob("*"):
            if path.is_file():
                os.utime(path, ns=(DEMO_MTIME_NS, DEMO_MTIME_NS))
        if root.exists():
            shutil.rmtree(root)
        os.replace(staging, root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return sum(1 for path in root.rglob("*") if path.is_file())
