"""Loading speed: random access into NPZDataset against np.load(...)[key][i] and ImageFolder decoding
the same images, and DataLoader throughput with 0 and 2 workers. Reads from the page cache.

Usage (after the workflow has run): python bench/loader.py [--dataset results/dataset.npz]
[--source results/demo]
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np
import torch
from torch.utils.data import DataLoader

from img2npz import NPZDataset


def rate(count: int, step) -> float:
    start = time.perf_counter()
    for index in range(count):
        step(index)
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="results/dataset.npz")
    parser.add_argument("--source", default="results/demo")
    args = parser.parse_args()
    torch.set_num_threads(1)
    dataset = NPZDataset(args.dataset)
    n = len(dataset)
    order = [random.Random(0).randrange(n) for _ in range(200_000)]
    dataset[0]
    print(f"{n} images of {tuple(dataset[0][0].shape)}")
    npz = rate(100_000, lambda i: dataset[order[i]])
    print(f"NPZDataset random items/s, one core:            {npz:,.0f}")
    archive = np.load(args.dataset)
    loaded = rate(20, lambda i: archive["images"][order[i]])
    print(f"np.load(...)['images'][i] random items/s:        {loaded:,.1f}   ({npz / loaded:,.0f}x slower)")
    try:
        from torchvision.datasets import ImageFolder
        from torchvision.transforms import v2

        folder = ImageFolder(args.source, transform=v2.Compose([v2.PILToTensor(), v2.Resize(256), v2.CenterCrop(256)]))
        decoded = rate(200, lambda i: folder[order[i] % len(folder)])
        print(f"ImageFolder decoding the sources, items/s:       {decoded:,.0f}   ({npz / decoded:,.0f}x slower)")
    except (ImportError, FileNotFoundError) as error:
        print(f"ImageFolder: skipped ({error})")
    for workers in (0, 2):
        loader = DataLoader(dataset, batch_size=64, shuffle=True, num_workers=workers)
        start, seen = time.perf_counter(), 0
        for _ in range(3):
            for images, _labels in loader:
                seen += len(images)
        print(f"DataLoader, {workers} workers, batch 64, items/s:    {seen / (time.perf_counter() - start):,.0f}")


if __name__ == "__main__":
    main()
