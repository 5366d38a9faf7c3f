"""Train a small CNN on the demo dataset, on the CPU, to show that pixels and labels line up.

Run the workflow first (README command 1), then:  python examples/train_demo.py [--epochs 8]
Prints the validation accuracy; with 5 classes, chance is 20%. Unlabelled images (label -1, such as
files at the top of a folder tree) are left out of training and validation, and counted.
"""

from __future__ import annotations

import argparse
import sys

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from img2npz import NPZDataset, normalizer
from img2npz.contract import UNLABELLED_LABEL


def small_cnn(classes: int) -> nn.Module:
    def block(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2))

    return nn.Sequential(
        nn.AvgPool2d(4),  # 256 -> 64 pixels: enough for these classes, and quick on a CPU
        block(3, 16),
        block(16, 32),
        block(32, 64),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, classes),
    )


def labelled_rows(dataset: NPZDataset) -> list[int]:
    """The rows with a class: cross-entropy has no target for label -1."""
    return [row for row, label in enumerate(dataset.targets) if label != UNLABELLED_LABEL]


def split(rows: list[int], every: int = 5) -> tuple[list[int], list[int]]:
    """Every fifth of ``rows`` for validation: deterministic and spread over all classes."""
    return [row for i, row in enumerate(rows) if i % every], rows[::every]


def accuracy(model: nn.Module, loader: DataLoader, normalise) -> float:
    model.eval()
    right = total = 0
    with torch.no_grad():
        for images, labels in loader:
            right += (model(normalise(images)).argmax(1) == labels).sum().item()
            total += len(labels)
    return right / max(total, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="results/dataset.npz")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)

    dataset = NPZDataset(args.dataset)
    rows = labelled_rows(dataset)
    if len(rows) < len(dataset):
        print(f"left out {len(dataset) - len(rows)} unlabelled images (label -1) of {len(dataset)}")
    train_rows, val_rows = split(rows)
    if not train_rows:
        sys.exit(f"train_demo: {args.dataset} has {len(rows)} labelled images of {len(dataset)}: too few to train on")
    normalise = normalizer(dataset.meta)
    train = DataLoader(Subset(dataset, train_rows), batch_size=32, shuffle=True, num_workers=args.workers)
    val = DataLoader(Subset(dataset, val_rows), batch_size=64, num_workers=args.workers)
    model = small_cnn(len(dataset.classes))
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for epoch in range(args.epochs):
        model.train()
        for images, labels in train:
            loss = nn.functional.cross_entropy(model(normalise(images)), labels)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        print(f"epoch {epoch + 1}: loss {loss.item():.3f}")
    print(
        f"validation accuracy: {accuracy(model, val, normalise):.3f} "
        f"({len(val_rows)} images, {len(dataset.classes)} classes, chance {1 / len(dataset.classes):.3f})"
    )


if __name__ == "__main__":
    main()
