"""pictures: what each picture shows, and its size, predicted from the data by the module's constants."""

import numpy as np
from PIL import Image

from img2npz import pictures
from img2npz.pictures import (
    AXIS,
    BAR_HEIGHT,
    BAR_WIDTH,
    CAPTION,
    COLUMNS,
    GAP,
    LABEL_WIDTH,
    MAX_BARS,
    PAGE_WIDTH,
    PANEL,
    TICK,
    TILE,
    VALUE_TICKS,
    bars_to_draw,
    channel_histograms,
    class_bar_chart,
    class_grid,
    rows_per_class,
    sample_rows,
    to_display,
)


def test_samples_spread_over_the_rows_and_the_classes():
    assert sample_rows(10, 3) == [0, 4, 9] and sample_rows(2, 5) == [0, 1] and sample_rows(0, 5) == []
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    picked = rows_per_class(labels, 3, 6)
    assert picked == {0: [0, 2], 1: [3, 4], 2: [5, 8]}
    assert rows_per_class(np.full(5, -1), 0, 3) == {-1: [0, 2, 4]}  # unlabelled: one row of all images


def test_the_grid_has_a_row_per_class_each_showing_its_own_images():
    red, blue = np.full((8, 8, 3), (250, 0, 0), np.uint8), np.full((8, 8, 3), (0, 0, 250), np.uint8)
    grid = class_grid([("red", [red, red], 2), ("blue", [blue], 1)])
    cell = TILE + GAP
    assert grid.size == (LABEL_WIDTH + 2 * cell + GAP, 2 * cell + GAP)
    assert grid.getpixel((LABEL_WIDTH + TILE // 2, GAP + TILE // 2)) == (250, 0, 0)
    assert grid.getpixel((LABEL_WIDTH + TILE // 2, GAP + cell + TILE // 2)) == (0, 0, 250)
    assert grid.getpixel((LABEL_WIDTH + cell + TILE // 2, GAP + cell + TILE // 2)) == pictures.BACKGROUND


def displayed_tile(picture_width: int) -> float:
    """A tile's width on the page, where a picture wider than the page is shrunk to fit it."""
    return TILE * min(1.0, PAGE_WIDTH / picture_width)


def test_unlabelled_samples_wrap_into_lines_that_show_every_tile_at_64_px_or_more():
    images = [np.full((8, 8, 3), (0, 10 * n, 0), np.uint8) for n in range(20)]  # each a shade of its own
    grid = class_grid([("(all images)", images, 20)])
    cell, lines = TILE + GAP, -(-20 // COLUMNS)
    assert lines > 1 and grid.size == (LABEL_WIDTH + COLUMNS * cell + GAP, lines * cell + GAP)
    assert grid.width <= PAGE_WIDTH and displayed_tile(grid.width) >= 64
    for n in (0, COLUMNS - 1, COLUMNS, 19):  # line by line, left to right
        centre = (LABEL_WIDTH + n % COLUMNS * cell + TILE // 2, GAP + n // COLUMNS * cell + TILE // 2)
        assert grid.getpixel(centre) == (0, 10 * n, 0)


def test_a_few_classes_of_many_samples_each_wrap_too():
    labels = np.repeat([0, 1], 50)
    picked = rows_per_class(labels, 2, 64)  # 32 of each class
    blank = np.zeros((8, 8, 3), np.uint8)
    grid = class_grid([(name, [blank] * len(picked[label]), 50) for label, name in enumerate(("a", "b"))])
    lines = 2 * -(-32 // COLUMNS)
    assert grid.size == (LABEL_WIDTH + COLUMNS * (TILE + GAP) + GAP, lines * (TILE + GAP) + GAP)
    assert displayed_tile(grid.width) >= 64


def test_small_images_are_enlarged_by_whole_pixels():
    checker = np.indices((4, 4)).sum(axis=0) % 2 * 255
    tile = pictures._tile(np.repeat(checker[..., None], 3, axis=2).astype(np.uint8))
    assert tile.size == (TILE, TILE) and set(np.unique(np.asarray(tile)).tolist()) == {0, 255}  # not blurred


def test_bar_chart_keeps_the_largest_and_smallest_classes_when_there_are_many():
    counts = list(range(150))
    shown = bars_to_draw(counts)
    assert len(shown) == MAX_BARS and shown[0] == 149 and shown[-1] == 0
    chart = class_bar_chart([f"c{i}" for i in range(150)], counts)
    assert chart.size == (LABEL_WIDTH + BAR_WIDTH + 90, GAP + MAX_BARS * (BAR_HEIGHT + GAP))
    assert chart.width <= PAGE_WIDTH  # shown at full size
    empty = class_bar_chart(["a", "b"], [3, 0])
    assert empty.getpixel((LABEL_WIDTH, GAP + BAR_HEIGHT + GAP + 2)) == (200, 60, 60)  # an empty class in red


def test_histograms_draw_each_channel_in_its_colour_with_value_and_share_axes():
    histogram = np.zeros((3, 256), np.int64)
    histogram[:, 128] = 10
    histogram[:, 0] = 30  # the peak: 75% of each channel's pixels
    chart = channel_histograms(histogram, [0.5] * 3, [0.1] * 3)
    width, height = PANEL
    step = AXIS + width + 2 * GAP
    assert chart.size == (3 * step + GAP, CAPTION + height + TICK + 2 * CAPTION + GAP) and chart.width <= PAGE_WIDTH
    pixels = np.asarray(chart)
    ink = pixels.max(axis=2) < 160  # axes, ticks and labels (the channel colours are brighter)
    bottom = CAPTION + height
    for channel, colour in enumerate(pictures.CHANNEL_COLOURS):
        left = GAP + channel * step + AXIS  # value 0 of this panel
        assert chart.getpixel((left + 128, bottom - height // 3)) == colour  # a third of the peak's bar
        assert all(ink[bottom + 1 : bottom + TICK, left + value].all() for value in VALUE_TICKS)  # value ticks
        assert ink[bottom + TICK : bottom + TICK + CAPTION, left - 8 : left + width + 8].sum() > 40  # their labels
        assert ink[bottom - height, left - 1 - TICK : left].all()  # the peak's share tick, on the axis
        assert ink[bottom - height - 7 : bottom - height + 7, left - AXIS : left - TICK - 1].sum() > 20  # "75%"


def test_float_pixels_are_shown_as_their_uint8_values():
    pixels = np.array([[[0, 128, 255]]], np.uint8)
    norm = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    stored = ((pixels / 255 - 0.5) / 0.25).astype(np.float16)
    assert np.array_equal(to_display(stored, norm), pixels)
    assert to_display(pixels, None) is pixels


def test_pictures_are_written_as_png(tmp_path):
    pictures.save_png(Image.new("RGB", (3, 2)), tmp_path / "p.png")
    assert Image.open(tmp_path / "p.png").format == "PNG" and not list(tmp_path.glob(".*"))
