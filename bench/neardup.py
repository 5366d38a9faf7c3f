"""Near-duplicates: what the perceptual hash catches, what it costs, and the search at scale.

Three figures, each measured in this one run:

* ``quality``: scenes (``bench/scenes.py``) and each of their variants, saved as JPEG q90 and
  decoded by the workflow's own decoder at ``--size`` and ``--resize``; per variant the largest
  Hamming distance to its original, and the distances between distinct scenes (every pair), so
  that the threshold's two sides are visible;
* ``demo``: the demo's painters, every pair: how many distinct pictures of one kind of scene are
  flagged, by the hash alone and with the colour check;
* ``cost``: the fingerprint's share of a real shard job's time (its functions timed inside the job);
* ``search``: :func:`img2npz.neardup.near_pairs` on ``--search`` random hashes with 1,000 planted
  pairs at 0..threshold bits: time, peak memory, and whether exactly the planted pairs came back.

Usage: python bench/neardup.py [--scenes 200] [--size 256] [--resize center-crop] [--search 1000000]
[--parts quality,demo,cost,search] [--rounds 5]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from scenes import CAUGHT, VARIANTS, scene

from img2npz import fingerprint, neardup
from img2npz.contract import MANIFEST_HEADER
from img2npz.decode import load_image
from img2npz.demo import make_demo_tree
from img2npz.preprocess import process_shard
from img2npz.tsv import write_tsv

DEFAULT_THRESHOLD = 24


def make_tree(root: Path, scenes: int) -> None:
    for number in range(scenes):
        rng = np.random.default_rng([17, number])
        size = (int(rng.integers(440, 560)), int(rng.integers(330, 420)))
        original = scene(rng, size if rng.random() < 0.8 else size[::-1])
        original.save(root / f"{number:05d}_original.jpg", quality=90)
        for name, make in VARIANTS.items():
            make(original).save(root / f"{number:05d}_{name}.jpg", quality=90)


def hashes_of(files: list[Path], size: int, resize: str) -> tuple[np.ndarray, np.ndarray]:
    """Each file's hash and mean colour, as a shard job makes them."""
    thumbs, colours = [], []
    for path in files:
        image = load_image(path, (size, size), resize)
        thumbs.append(fingerprint.thumbnail(image))
        colours.append(fingerprint.mean_rgb(np.asarray(image.histogram()).reshape(3, 256)))
    return fingerprint.hashes(np.stack(thumbs)), np.stack(colours)


def quality(scenes: int, size: int, resize: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        make_tree(root, scenes)
        files = sorted(root.glob("*.jpg"))
        found, colours = hashes_of(files, size, resize)
        hashes = dict(zip((path.stem for path in files), found, strict=True))
        colour = dict(zip((path.stem for path in files), colours, strict=True))
    names = [f"{n:05d}_original" for n in range(scenes)]
    originals = np.stack([hashes[name] for name in names])
    original_colours = np.stack([colour[name] for name in names])
    tolerance = neardup.COLOUR_TOLERANCE
    print(
        f"quality: {scenes} scenes at {size}x{size} {resize}; distance of 256 bits, caught: within the bits"
        f" and colours within {tolerance}"
    )
    for name in VARIANTS:
        variant = np.stack([hashes[f"{n:05d}_{name}"] for n in range(scenes)])
        same_colour = neardup.colour_apart(original_colours, [colour[f"{n:05d}_{name}"] for n in range(scenes)])
        far = neardup.distances(originals, variant)
        caught = "  ".join(f"<={t}: {((far <= t) & (same_colour <= tolerance)).mean():6.1%}" for t in (16, 24, 32))
        mark = "meant to be caught" if name in CAUGHT else "not a target"
        print(f"  {name:14} max {far.max():3d}  median {np.median(far):5.1f}  caught {caught}  ({mark})")
    first, second = np.triu_indices(scenes, 1)
    apart = neardup.distances(originals[first], originals[second])
    alike = neardup.colour_apart(original_colours[first], original_colours[second]) <= tolerance
    print(
        f"  distinct scenes ({len(apart)} pairs): min {apart.min()}  0.1st percentile {np.percentile(apart, 0.1):.0f}"
        f"  1st {np.percentile(apart, 1):.0f}  median {np.median(apart):.0f};  flagged at 24 bits:"
        f" {((apart <= DEFAULT_THRESHOLD) & alike).sum()} ({(apart <= DEFAULT_THRESHOLD).sum()} by the hash alone)"
    )


def demo_pairs(size: int, resize: str, per_class: int = 200) -> None:
    """The demo's painters at ``per_class`` images a class: distinct pictures of one kind of scene
    (stripes, rings, sunsets...), the hard case for a perceptual hash."""
    with tempfile.TemporaryDirectory() as folder:
        make_demo_tree(folder, per_class=per_class)
        files = sorted(path for path in Path(folder).rglob("*.*") if not path.name.startswith("broken"))
        hashes, colours = hashes_of(files, size, resize)
    first, second = np.triu_indices(len(files), 1)
    apart = neardup.distances(hashes[first], hashes[second])
    alike = neardup.colour_apart(colours[first], colours[second]) <= neardup.COLOUR_TOLERANCE
    print(f"demo painters: {len(files)} distinct images, {len(apart):,} pairs; flagged (hash alone / with colour):")
    print("  " + "  ".join(f"<={t}: {(apart <= t).sum()} / {((apart <= t) & alike).sum()}" for t in (16, 24, 32)))


def _manifest(root: Path, images: int) -> Path:
    for number in range(images):
        rng = np.random.default_rng([23, number])
        scene(rng, (int(rng.integers(440, 560)), int(rng.integers(330, 420)))).save(root / f"{number}.jpg", quality=90)
    rows = [(path.name, path.stat().st_size, path.stat().st_mtime_ns, "") for path in sorted(root.glob("*.jpg"))]
    manifest = root / "manifest.tsv"
    write_tsv(manifest, MANIFEST_HEADER, rows)
    return manifest


def cost(size: int, resize: str, images: int = 300, rounds: int = 5) -> None:
    """The fingerprint's share of a real shard job's time: its three functions timed inside the job
    (an A/B of two jobs differs by more than the share from run to run on a shared machine)."""
    pixel = {"size": [size, size], "resize": resize, "dtype": "uint8", "background": [255, 255, 255], "normalize": None}
    spent = {"thumbnail": 0.0, "hashes": 0.0, "mean_rgb": 0.0}
    real = {name: getattr(fingerprint, name) for name in spent}

    def timed(name: str):
        def call(*args):
            start = time.perf_counter()
            try:
                return real[name](*args)
            finally:
                spent[name] += time.perf_counter() - start

        return call

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        manifest = _manifest(root, images)
        out = (root / "out" / "s.npz", root / "out" / "s.tsv")
        process_shard(manifest, root, pixel, *out)  # warm the page cache
        for name in spent:
            setattr(fingerprint, name, timed(name))
        try:
            start = time.perf_counter()
            for _ in range(rounds):
                process_shard(manifest, root, pixel, *out)
            job = time.perf_counter() - start
        finally:
            for name, function in real.items():
                setattr(fingerprint, name, function)
    count = images * rounds
    parts = ", ".join(f"{name} {seconds / count * 1e6:.1f} us" for name, seconds in spent.items())
    print(
        f"cost at {size}x{size} {resize}: a shard job {job / count * 1e3:.3f} ms an image, of which the"
        f" fingerprint {sum(spent.values()) / count * 1e6:.1f} us ({sum(spent.values()) / job:.2%}): {parts}"
    )


def search(count: int, threshold: int = DEFAULT_THRESHOLD, planted: int = 1000) -> None:
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 256, (count, fingerprint.BYTES), dtype=np.uint8)
    chosen = rng.choice(count, 2 * planted, replace=False)
    first, second = chosen[:planted], chosen[planted:]
    bits = np.unpackbits(hashes[first], axis=1)
    for row in bits:
        row[rng.choice(fingerprint.BYTES * 8, int(rng.integers(0, threshold + 1)), replace=False)] ^= 1
    hashes[second] = np.packbits(bits, axis=1)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    found_first, found_second = neardup.near_pairs(hashes, threshold)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    want = set(zip(np.minimum(first, second).tolist(), np.maximum(first, second).tolist(), strict=True))
    got = set(zip(found_first.tolist(), found_second.tolist(), strict=True))
    print(
        f"search: {count:,} random hashes, {planted} planted pairs at 0..{threshold} bits,"
        f" {neardup.chunk_count(count, threshold)} chunks: {seconds:.1f} s, peak RSS {peak / 1024:.0f} MB"
        f" ({before / 1024:.0f} MB before); planted found {len(want & got)}/{planted}, others {len(got - want)}"
        f" (all pairs would be {count * (count - 1) // 2:.2e} comparisons)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=200)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--resize", default="center-crop")
    parser.add_argument("--search", type=int, default=1_000_000, help="random hashes to search")
    parser.add_argument("--parts", default="quality,demo,cost,search", help="which figures, comma-separated")
    parser.add_argument("--rounds", type=int, default=5, help="shard jobs timed for the cost figure")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if "quality" in parts:
        quality(args.scenes, args.size, args.resize)
    if "demo" in parts:
        demo_pairs(args.size, args.resize)
    if "cost" in parts:
        cost(args.size, args.resize, rounds=args.rounds)
    if "search" in parts:
        search(args.search)


if __name__ == "__main__":
    main()
