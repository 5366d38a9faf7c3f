"""Realistic benchmark trees: photo-like JPEGs (quality 90, 4:2:0) around 500x375, some up to
2000x1500 and some tiny, about 5% PNG and BMP, in class folders; deterministic from a seed.

Solid colours or noise decode at unrepresentative speeds, so pictures are smooth shapes with texture
and sensor noise (the demo's painters at photo sizes). Usage:
python bench/corpus.py OUT_DIR --images 20000 [--classes 10] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from img2npz.demo import CLASSES, render


def size_for(rng: np.random.Generator) -> tuple[int, int]:
    draw = rng.random()
    if draw < 0.05:
        width, height = 2000, 1500
    elif draw < 0.10:
        width, height = int(rng.integers(40, 120)), int(rng.integers(40, 120))
    else:
        width, height = int(rng.integers(440, 560)), int(rng.integers(330, 420))
    return (width, height) if rng.random() < 0.8 else (height, width)


def photo(class_name: str, size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """Shapes painted at up to 256 px, scaled to ``size``, then fresh sensor noise at full size."""
    scale = min(1.0, 256 / max(size))
    small = render(class_name, (max(8, round(size[0] * scale)), max(8, round(size[1] * scale))), rng)
    pixels = np.asarray(small.resize(size, Image.Resampling.BICUBIC), dtype=np.int16)
    pixels += rng.integers(-5, 6, size=pixels.shape, dtype=np.int16)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def write_image(path: Path, class_name: str, rng: np.random.Generator) -> None:
    image = photo(class_name, size_for(rng), rng)
    kind = rng.random()
    if kind < 0.03:
        image.save(path.with_suffix(".png"))
    elif kind < 0.05:
        image.save(path.with_suffix(".bmp"))
    else:
        image.save(path.with_suffix(".jpg"), quality=90, subsampling="4:2:0")


def _write_range(root: Path, numbers: range, classes: int, seed: int) -> None:
    for number in numbers:
        painter = CLASSES[number % classes % len(CLASSES)]
        folder = root / f"{painter}{number % classes:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        write_image(folder / f"img{number:07d}", painter, np.random.default_rng([seed, number]))


def make_corpus(root: str | os.PathLike, images: int, classes: int = 10, seed: int = 0, workers: int = 0) -> Path:
    """Write the corpus once (a marker file remembers it); the same arguments give the same files."""
    root = Path(root)
    marker = root / f".complete-{images}-{classes}-{seed}"
    if marker.exists():
        return root
    workers = workers or os.cpu_count() or 1
    with ProcessPoolExecutor(workers) as pool:
        list(
            pool.map(
                _write_range,
                [root] * workers,
                [range(k, images, workers) for k in range(workers)],
                [classes] * workers,
                [seed] * workers,
            )
        )
    marker.touch()
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    make_corpus(args.out, args.images, args.classes, args.seed)
    print(f"corpus of {args.images} images in {args.out}")


if __name__ == "__main__":
    main()
