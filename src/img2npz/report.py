"""Pictures of a dataset that a person can look at: for now, a labelled grid of sample images."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from img2npz.atomic import atomic_output

TILE = 128
CAPTION = 14
GAP = 4


def sample_rows(count: int, samples: int) -> list[int]:
    """Evenly spread row numbers: deterministic, and they cover every part of the path order."""
    if count == 0 or samples == 0:
        return []
    return sorted(set(np.linspace(0, count - 1, min(samples, count)).round().astype(int).tolist()))


def to_display(pixels: np.ndarray, normalize: dict | None) -> np.ndarray:
    """Stored pixels (any dtype) back to uint8 for drawing."""
    if pixels.dtype == np.uint8:
        return pixels
    values = pixels.astype(np.float32)
    if normalize is not None:
        values = values * np.asarray(normalize["std"], np.float32) + np.asarray(normalize["mean"], np.float32)
    return np.clip(np.rint(values * 255), 0, 255).astype(np.uint8)


def sample_grid(images: np.ndarray, captions: Sequence[str]) -> Image.Image:
    """Tiles of at most TILE pixels a side, each with its caption underneath."""
    count = len(images)
    columns = max(1, math.ceil(math.sqrt(count)))
    rows = max(1, math.ceil(count / columns))
    cell_w, cell_h = TILE + GAP, TILE + CAPTION + GAP
    grid = Image.new("RGB", (columns * cell_w + GAP, rows * cell_h + GAP), (32, 32, 32))
    draw = ImageDraw.Draw(grid)
    for slot, (pixels, caption) in enumerate(zip(images, captions, strict=True)):
        tile = Image.fromarray(pixels, "RGB")
        tile.thumbnail((TILE, TILE), Image.Resampling.BICUBIC)
        x = GAP + (slot % columns) * cell_w
        y = GAP + (slot // columns) * cell_h
        grid.paste(tile, (x + (TILE - tile.width) // 2, y + (TILE - tile.height) // 2))
        draw.text((x + 2, y + TILE + 1), caption[:20], fill=(235, 235, 235))
    return grid


def save_png(image: Image.Image, path: str | os.PathLike) -> None:
    with atomic_output(path) as handle:
        image.save(handle, format="PNG")
