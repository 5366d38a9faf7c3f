"""Resize modes and their geometry: one pure function decides the boxes, one applies them."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from PIL import Image

RESAMPLE = Image.Resampling.BICUBIC


class ResizeMode(StrEnum):
    CENTER_CROP = "center-crop"
    STRETCH = "stretch"
    PAD = "pad"


@dataclass(frozen=True)
class Geometry:
    """Resample ``box`` (source pixels) to ``size`` and paste it at ``offset`` on the output canvas."""

    box: tuple[float, float, float, float]
    size: tuple[int, int]
    offset: tuple[int, int]


def geometry(source: tuple[int, int], target: tuple[int, int], mode: ResizeMode | str) -> Geometry:
    """Sizes are (width, height), as Pillow has them."""
    mode = ResizeMode(mode)
    sw, sh = source
    tw, th = target
    if mode is ResizeMode.STRETCH:
        return Geometry((0.0, 0.0, float(sw), float(sh)), (tw, th), (0, 0))
    if mode is ResizeMode.CENTER_CROP:
        scale = max(tw / sw, th / sh)
        bw, bh = min(sw, tw / scale), min(sh, th / scale)  # min: float error must not leave the image
        left, top = max(0.0, (sw - bw) / 2), max(0.0, (sh - bh) / 2)
        return Geometry((left, top, left + bw, top + bh), (tw, th), (0, 0))
    scale = min(tw / sw, th / sh)
    iw, ih = max(1, min(tw, round(sw * scale))), max(1, min(th, round(sh * scale)))
    return Geometry((0.0, 0.0, float(sw), float(sh)), (iw, ih), ((tw - iw) // 2, (th - ih) // 2))


def needed_source_size(source: tuple[int, int], target: tuple[int, int], mode: ResizeMode | str) -> tuple[int, int]:
    """The smallest (width, height) of the whole source image that the resize would still sample from.

    JPEG draft decoding may shrink the source while it stays at least twice this size.
    """
    geo = geometry(source, target, mode)
    bx0, by0, bx1, by1 = geo.box
    fx, fy = geo.size[0] / (bx1 - bx0), geo.size[1] / (by1 - by0)
    return max(1, round(source[0] * fx)), max(1, round(source[1] * fy))


def resize(
    image: Image.Image, target: tuple[int, int], mode: ResizeMode | str, background: tuple[int, int, int]
) -> Image.Image:
    """Resize an RGB image to ``target`` (width, height), antialiased."""
    geo = geometry(image.size, target, mode)
    if geo.size == image.size and geo.box == (0.0, 0.0, float(image.width), float(image.height)):
        scaled = image
    else:
        scaled = image.resize(geo.size, RESAMPLE, box=geo.box)
    if geo.size == target:
        return scaled
    canvas = Image.new("RGB", target, tuple(background))
    canvas.paste(scaled, geo.offset)
    return canvas
