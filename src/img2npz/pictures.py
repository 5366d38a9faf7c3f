"""Pictures of a dataset that a person can look at: samples per class, class counts, channel histograms.

Drawn with Pillow alone (no plotting library in the job's environment); every size follows from the
data by the constants below, so tests can predict them.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from img2npz.atomic import atomic_output

PAGE_WIDTH = 1200  # the report page's width: every picture fits it, so it shows at full size
TILE = 128
CAPTION = 14
GAP = 4
LABEL_WIDTH = 150
COLUMNS = (PAGE_WIDTH - LABEL_WIDTH - GAP) // (TILE + GAP)  # tiles a line of the samples grid
BACKGROUND = (32, 32, 32)
TEXT = (235, 235, 235)
BAR_HEIGHT = 16
BAR_WIDTH = 600
MAX_BARS = 100
PANEL = (256, 120)  # a histogram's plot: a pixel column per value
AXIS = 44  # room left of a plot for its share labels
TICK = 4
VALUE_TICKS = (0, 64, 128, 192, 255)
AXIS_COLOUR = (90, 90, 90)
CHANNEL_COLOURS = ((220, 60, 60), (60, 180, 60), (70, 110, 230))
FONT_SIZE = 12


@functools.cache
def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's bundled font at a readable size (its tiny bitmap font where FreeType is missing)."""
    return ImageFont.load_default(size=FONT_SIZE)


def sample_rows(count: int, samples: int) -> list[int]:
    """Evenly spread row numbers: deterministic, and they cover every part of the path order."""
    if count == 0 or samples == 0:
        return []
    return sorted(set(np.linspace(0, count - 1, min(samples, count)).round().astype(int).tolist()))


def rows_per_class(labels: np.ndarray, classes: int, samples: int) -> dict[int, list[int]]:
    """Up to ``samples`` images in all, spread over evenly chosen classes, evenly within each class.

    Labelled data gets a row per shown class (at most ``samples`` classes, at least one image each);
    unlabelled data (no classes) one row of evenly spread images, keyed -1.
    """
    if not classes or samples == 0:
        return {-1: sample_rows(len(labels), samples)} if len(labels) and samples else {}
    shown = sample_rows(classes, samples)
    per_class = max(1, samples // len(shown))
    order = np.argsort(labels, kind="stable")
    starts = np.searchsorted(labels[order], np.arange(classes + 1))
    picked = {}
    for label in shown:
        members = order[starts[label] : starts[label + 1]]
        picked[label] = [int(members[i]) for i in sample_rows(len(members), per_class)]
    return picked


def to_display(pixels: np.ndarray, normalize: dict | None) -> np.ndarray:
    """Stored pixels (any dtype) back to uint8 for drawing."""
    if pixels.dtype == np.uint8:
        return pixels
    values = pixels.astype(np.float32)
    if normalize is not None:
        values = values * np.asarray(normalize["std"], np.float32) + np.asarray(normalize["mean"], np.float32)
    return np.clip(np.rint(values * 255), 0, 255).astype(np.uint8)


def _tile(pixels: np.ndarray) -> Image.Image:
    """At most TILE a side; small images (32 x 32 datasets) are enlarged by whole pixels, not blurred."""
    tile = Image.fromarray(pixels, "RGB")
    factor = TILE // max(tile.size)
    if factor > 1:
        return tile.resize((tile.width * factor, tile.height * factor), Image.Resampling.NEAREST)
    tile.thumbnail((TILE, TILE), Image.Resampling.BICUBIC)
    return tile


def grid_lines(images: int) -> int:
    """Lines of the samples grid a class takes: COLUMNS tiles each, at least one (for its name)."""
    return max(1, -(-images // COLUMNS))


def class_grid(rows: Sequence[tuple[str, Sequence[np.ndarray], int]]) -> Image.Image:
    """A row per class: its name and image count on the left, then its sample tiles, wrapped every
    COLUMNS tiles so that the picture fits the page at full size (unlabelled data, a few classes of
    many samples each) instead of being shrunk to tiles of a few pixels."""
    columns = min(COLUMNS, max((len(images) for _, images, _ in rows), default=1) or 1)
    lines = [grid_lines(len(images)) for _, images, _ in rows]
    cell = TILE + GAP
    grid = Image.new("RGB", (LABEL_WIDTH + columns * cell + GAP, max(1, sum(lines)) * cell + GAP), BACKGROUND)
    draw = ImageDraw.Draw(grid)
    top = GAP
    for (name, images, count), taken in zip(rows, lines, strict=True):
        draw.text((GAP + 2, top + TILE // 2 - 14), name[:20], fill=TEXT, font=_font())
        draw.text((GAP + 2, top + TILE // 2 + 2), f"{count:,} images", fill=(170, 170, 170), font=_font())
        for number, pixels in enumerate(images):
            tile = _tile(pixels)
            x, y = LABEL_WIDTH + number % COLUMNS * cell, top + number // COLUMNS * cell
            grid.paste(tile, (x + (TILE - tile.width) // 2, y + (TILE - tile.height) // 2))
        top += taken * cell
    return grid


def pair_grid(rows: Sequence[tuple[str, np.ndarray, np.ndarray]]) -> Image.Image:
    """One row per pair: its caption on the left, then the two images side by side."""
    cell = TILE + GAP
    grid = Image.new("RGB", (LABEL_WIDTH + 2 * cell + GAP, max(1, len(rows)) * cell + GAP), BACKGROUND)
    draw = ImageDraw.Draw(grid)
    for number, (caption, first, second) in enumerate(rows):
        y = GAP + number * cell
        for line, text in enumerate(caption.split("\n")[:3]):
            draw.text((GAP + 2, y + TILE // 2 - 22 + 16 * line), text[:24], fill=TEXT, font=_font())
        for column, pixels in enumerate((first, second)):
            tile = _tile(pixels)
            x = LABEL_WIDTH + column * cell
            grid.paste(tile, (x + (TILE - tile.width) // 2, y + (TILE - tile.height) // 2))
    return grid


def bars_to_draw(counts: Sequence[int]) -> list[int]:
    """Indices of the bars drawn: all of them, or the MAX_BARS // 2 largest and smallest counts."""
    order = sorted(range(len(counts)), key=lambda i: (-counts[i], i))
    if len(order) <= MAX_BARS:
        return order
    return order[: MAX_BARS // 2] + order[-MAX_BARS // 2 :]


def class_bar_chart(names: Sequence[str], counts: Sequence[int]) -> Image.Image:
    """Horizontal bars, largest class first (with many classes: the largest and smallest ones)."""
    shown = bars_to_draw(counts)
    top = max(counts, default=0) or 1
    chart = Image.new("RGB", (LABEL_WIDTH + BAR_WIDTH + 90, GAP + max(1, len(shown)) * (BAR_HEIGHT + GAP)), "white")
    draw = ImageDraw.Draw(chart)
    for slot, index in enumerate(shown):
        y = GAP + slot * (BAR_HEIGHT + GAP)
        length = round(BAR_WIDTH * counts[index] / top)
        draw.text((GAP, y + 2), names[index][:20], fill="black", font=_font())
        colour = (200, 60, 60) if counts[index] == 0 else (70, 110, 200)
        draw.rectangle((LABEL_WIDTH, y, LABEL_WIDTH + max(length, 1), y + BAR_HEIGHT), fill=colour)
        draw.text((LABEL_WIDTH + length + 6, y + 2), f"{counts[index]:,}", fill="black", font=_font())
    return chart


def _label(draw: ImageDraw.ImageDraw, x: float, y: float, text: str, align: float) -> None:
    """``text`` with its left edge (``align`` 0), middle (0.5) or right edge (1) at ``x``."""
    draw.text((x - align * draw.textlength(text, font=_font()), y), text, fill="black", font=_font())


def _axes(draw: ImageDraw.ImageDraw, left: int, bottom: int, peak_share: float) -> None:
    """Value ticks under the plot (0..255, as decoded) and share-of-pixels ticks beside it (0, half the
    peak, the peak), so a reader can tell a spike at 255 from one at 200, and 2% from 60%."""
    width, height = PANEL
    draw.line((left - 1, bottom - height, left - 1, bottom, left + width - 1, bottom), fill=AXIS_COLOUR)
    for value in VALUE_TICKS:
        draw.line((left + value, bottom, left + value, bottom + TICK), fill=AXIS_COLOUR)
        _label(draw, left + value, bottom + TICK, str(value), 0.5)
    for part in (0, 1, 2) if peak_share else (0,):
        y = bottom - height * part // 2
        draw.line((left - 1 - TICK, y, left - 1, y), fill=AXIS_COLOUR)
        _label(draw, left - TICK - 3, y - FONT_SIZE // 2 - 1, f"{peak_share * part / 2 * 100:.3g}%", 1)


def channel_histograms(histogram: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> Image.Image:
    """One panel per channel (value 0..255 across, share of its pixels up, both with axes), captioned
    with its mean and std on the 0..1 scale."""
    width, height = PANEL
    step = AXIS + width + 2 * GAP
    chart = Image.new("RGB", (3 * step + GAP, CAPTION + height + TICK + 2 * CAPTION + GAP), "white")
    draw = ImageDraw.Draw(chart)
    bottom = CAPTION + height
    for channel, counts in enumerate(np.asarray(histogram, np.float64)):
        left = GAP + channel * step + AXIS
        peak = counts.max() or 1.0
        for value, count in enumerate(counts):
            bar = round(height * count / peak)
            if bar:
                draw.line((left + value, bottom - bar, left + value, bottom - 1), fill=CHANNEL_COLOURS[channel])
        _axes(draw, left, bottom, counts.max() / (counts.sum() or 1.0))
        label = f"{'RGB'[channel]}: mean {mean[channel]:.3f}, std {std[channel]:.3f} (0..1)"
        _label(draw, left, bottom + TICK + CAPTION, label, 0)
    return chart


def save_png(image: Image.Image, path: str | os.PathLike) -> None:
    with atomic_output(path) as handle:
        image.save(handle, format="PNG", compress_level=1)  # twice as fast as the default 6, 15% larger
