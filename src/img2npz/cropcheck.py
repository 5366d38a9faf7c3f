"""The crops' check: a crop pair found by the field hashes is kept only when the two rows' pixels
agree where they show the same part of the picture.

The field hashes see a 32 x 32 thumbnail's coarse layout, and two photos of one layout in like
colours can be as close there as a crop and its original (``bench/neardup.py``: 21 pairs of two
scenes among 23,000 held-out images). The rows hold far more: the matched window says which part
of the other's picture the crop shows, and each row's source size and the resize
(:func:`img2npz.resize.geometry`) place both rows' pixels in their pictures. The crop's row is
sampled on a grid, the other's at the same places of the picture (shifted and scaled by up to
3%: the windows are 2.5% from a crop's edges at most), and the best correlation of their
luminance, both rows box-reduced to :data:`SIDE` pixels, must reach :data:`MIN_CORRELATION`. Crops
of generated scenes scored 0.94 or more, the look-alike scenes' crops 0.83 at most.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

from img2npz.fieldhash import window_box
from img2npz.pictures import to_display
from img2npz.resize import geometry

SIDE = 64  # rows are reduced to this many pixels a side before they are compared
GRID = 24  # points a side sampled over the crop's picture
SHIFTS = np.linspace(-0.03, 0.03, 5)  # of the picture, each way
SCALES = (0.97, 1.0, 1.03)
MIN_CORRELATION = 0.9
MIN_ROW_SIDE = 32  # smaller pictures in a row hold too little to check: their crop pairs are kept as found
MIN_SHARED = 0.3  # of the grid both rows show, or the pair cannot be checked (kept as found)
MIN_VARIANCE = 1e-3  # of luminance in grey levels squared: flatter than this shows nothing to compare
PAIRS_AT_ONCE = 1024  # pairs checked a batch at a time: their rows reduced (16 KB each) are held
ROWS_AT_ONCE = 16  # rows read at once (16 rows of 512 x 512 float32: 50 MB)

Pixels = Callable[[np.ndarray], np.ndarray]  # ascending rows -> their (rows, H, W, 3) uint8 pixels


def displayed(stored: Pixels, normalize: dict | None) -> Pixels:
    """A reader of stored rows (any dtype, normalised or not) as uint8 0..255: the check's flatness
    floor is in grey levels, so the same pictures get the same decision whatever the dtype."""
    return lambda rows: to_display(stored(rows), normalize)


def luminance(row: np.ndarray) -> np.ndarray:
    """(SIDE, SIDE) float32 luminance of a row of :func:`displayed` pixels, box-reduced."""
    plane = np.asarray(row, np.float32) @ np.array([0.25, 0.5, 0.25], np.float32)
    return np.asarray(Image.fromarray(plane, "F").resize((SIDE, SIDE), Image.Resampling.BOX))


class Placement:
    """Where a row's pixels sit in its source's picture, for one source size and the resize."""

    def __init__(self, source: tuple[int, int], target: tuple[int, int], mode: str):
        geo = geometry((int(source[0]), int(source[1])), target, mode)
        self.source, self.target = source, target
        (self.left, self.top, right, bottom), self.size, self.offset = geo.box, geo.size, geo.offset
        self.box_width, self.box_height = right - self.left, bottom - self.top

    def picture(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Canvas pixels (of the row at its target size) to fractions of the source's picture."""
        sx = self.left + (x - self.offset[0]) * self.box_width / self.size[0]
        sy = self.top + (y - self.offset[1]) * self.box_height / self.size[1]
        return sx / self.source[0], sy / self.source[1]

    def canvas(self, fx: np.ndarray, fy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Fractions of the picture to canvas pixels, and whether the row shows them."""
        x = self.offset[0] + (fx * self.source[0] - self.left) * self.size[0] / self.box_width
        y = self.offset[1] + (fy * self.source[1] - self.top) * self.size[1] / self.box_height
        shown = (x >= self.offset[0]) & (x <= self.offset[0] + self.size[0])
        shown &= (y >= self.offset[1]) & (y <= self.offset[1] + self.size[1])
        return x, y, shown


def _sample(plane: np.ndarray, x: np.ndarray, y: np.ndarray, target: tuple[int, int]) -> np.ndarray:
    """Bilinear samples of a SIDE x SIDE plane at canvas pixels of a row of size ``target``."""
    x = np.clip(np.float32(x * (SIDE / target[0]) - 0.5), 0, SIDE - 1)
    y = np.clip(np.float32(y * (SIDE / target[1]) - 0.5), 0, SIDE - 1)
    x0, y0 = np.minimum(x.astype(int), SIDE - 2), np.minimum(y.astype(int), SIDE - 2)
    fx, fy = x - x0, y - y0
    top = plane[y0, x0] * (1 - fx) + plane[y0, x0 + 1] * fx
    bottom = plane[y0 + 1, x0] * (1 - fx) + plane[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def _placements() -> list[np.ndarray]:
    """The (scale, shift x, shift y) placements in stages: the window at each scale, unshifted,
    then every placement. A stage that reaches the threshold ends the search (the decision is the
    one all placements give: their best is at least any stage's)."""
    every = np.stack(np.meshgrid(SCALES, SHIFTS, SHIFTS, indexing="ij"), axis=-1).reshape(-1, 3)
    return [np.array([[scale, 0.0, 0.0] for scale in SCALES]), every]


PLACEMENTS = _placements()


def correlation(
    crop: np.ndarray,
    crop_place: Placement,
    other: np.ndarray,
    other_place: Placement,
    window: int,
    enough: float = np.inf,
) -> float:
    """The best correlation of the crop's luminance (:func:`luminance`) with the other's, the
    crop's whole picture taken as ``window`` of the other's, shifted and scaled a little (once a
    stage of :data:`PLACEMENTS` reaches ``enough``, that stage's best); -1 where one is flat
    where they meet, NaN where no placement shares :data:`MIN_SHARED` of the grid (nothing to
    check)."""
    left, top, right, bottom = window_box(window)
    at = (np.arange(GRID) + 0.5) / GRID
    x, y = np.meshgrid(crop_place.offset[0] + at * crop_place.size[0], crop_place.offset[1] + at * crop_place.size[1])
    seen = _sample(crop, x.ravel(), y.ravel(), crop_place.target)
    fx, fy = crop_place.picture(x.ravel(), y.ravel())
    best = np.nan
    for stage in PLACEMENTS:
        scale, shift_x, shift_y = (column[:, None] for column in stage.T)
        width, height = (right - left) * scale, (bottom - top) * scale
        cx, cy, shown = other_place.canvas(
            (left + right - width) / 2 + shift_x + fx * width, (top + bottom - height) / 2 + shift_y + fy * height
        )
        best = np.fmax(best, _best_score(seen, _sample(other, cx, cy, other_place.target), shown))
        if best >= enough:
            break
    return float(best)


def _best_score(seen: np.ndarray, theirs: np.ndarray, shown: np.ndarray) -> float:
    """The best correlation of ``seen`` (points) with each placement's ``theirs`` over the points
    ``shown`` there (placements by points): -1 where every placement that shares enough is flat,
    NaN where none shares enough. Centred in float64 (a bright, nearly flat region would make
    E[x^2] - E[x]^2 in float32 mostly rounding)."""
    weight = shown.astype(np.float64)
    counts = weight.sum(axis=1)
    shared = counts >= MIN_SHARED * GRID**2
    if not shared.any():
        return np.nan
    weight, counts = weight[shared], counts[shared]
    theirs = np.asarray(theirs, np.float64)[shared]
    ours = np.broadcast_to(np.asarray(seen, np.float64), theirs.shape)
    ours = (ours - ((ours * weight).sum(axis=1) / counts)[:, None]) * weight
    theirs = (theirs - ((theirs * weight).sum(axis=1) / counts)[:, None]) * weight
    var_ours, var_theirs = (ours * ours).sum(axis=1) / counts, (theirs * theirs).sum(axis=1) / counts
    valid = (var_ours > MIN_VARIANCE) & (var_theirs > MIN_VARIANCE)
    if not valid.any():
        return -1.0
    cross = (ours * theirs).sum(axis=1)[valid] / counts[valid]
    return float((cross / np.sqrt(var_ours[valid] * var_theirs[valid])).max())


def agree(
    whole: np.ndarray,
    other: np.ndarray,
    window: np.ndarray,
    sizes: np.ndarray,
    pixels: Pixels,
    target: tuple[int, int],
    mode: str,
) -> np.ndarray:
    """Whether each crop pair (``whole``'s whole picture as ``window`` of ``other``'s) agrees in its
    rows' pixels (``pixels``: :func:`displayed`); every pair that cannot be checked is kept as the
    hashes found it: a picture under MIN_ROW_SIDE a side in either row (a small target, or a
    narrow source padded), or too little of the crop's picture shown in the other's row."""
    keep = np.ones(len(whole), bool)
    if min(target) < MIN_ROW_SIDE or not len(whole):
        return keep
    for start in range(0, len(whole), PAIRS_AT_ONCE):
        part = slice(start, start + PAIRS_AT_ONCE)
        rows = np.unique(np.concatenate([whole[part], other[part]]))
        planes = {}
        for at in range(0, len(rows), ROWS_AT_ONCE):  # rows read a few at a time, kept reduced
            some = rows[at : at + ROWS_AT_ONCE]
            planes.update(zip(some.tolist(), map(luminance, pixels(some)), strict=True))
        for n in range(start, min(start + PAIRS_AT_ONCE, len(whole))):
            a, b = int(whole[n]), int(other[n])
            place_a, place_b = Placement(sizes[a], target, mode), Placement(sizes[b], target, mode)
            if min(*place_a.size, *place_b.size) < MIN_ROW_SIDE:
                continue
            score = correlation(planes[a], place_a, planes[b], place_b, int(window[n]), MIN_CORRELATION)
            keep[n] = not score < MIN_CORRELATION  # NaN: nothing to check
    return keep
