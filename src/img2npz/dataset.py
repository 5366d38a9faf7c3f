"""PyTorch datasets over img2npz output that never decompress or copy the image array.

``np.load("dataset.npz")["images"][i]`` reads the whole ``images`` member on every access: numpy
ignores ``mmap_mode`` for ``.npz``. Our writer stores every member uncompressed at a 64-byte-aligned
offset (:mod:`img2npz.npzformat`), so :class:`NPZDataset` maps each array straight from the file,
or, in the ``shards`` layout, from the shard file its row table names. Opening costs a few headers;
the maps are made lazily in each process, so a ``DataLoader`` with workers pickles only paths.
:func:`normalizer` turns batches of any stored dtype into normalised floats on their device.

``torch`` is imported lazily: the workflow's jobs import this package without it.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np

from img2npz.contract import (
    ADDED_DATASET_MEMBERS,
    DATASET_MEMBERS,
    INDEX_MEMBERS,
    READABLE_DATASET_FORMATS,
    SHARDED_DATASET_FORMAT,
    member_names,
)
from img2npz.npzformat import array_layout, read_array

INDEX_FILE = "index.npz"  # the shards layout's row table, in the dataset folder


class DatasetFormatError(ValueError):
    """Not an img2npz dataset, or one whose images cannot be memory-mapped."""


def _map(path: str, layout) -> np.ndarray:
    # mode "c" (copy-on-write): pages are shared with the page cache, and torch accepts the array as
    # writable, so no per-item warning and no copy.
    if layout.offset is None:
        raise DatasetFormatError(
            f"{path}: member {layout.name!r} is compressed and cannot be memory-mapped; rebuild with "
            "merge.compress: false, or with layout: shards"
        )
    if not layout.shape or 0 in layout.shape:
        return np.zeros(layout.shape, layout.dtype)
    return np.memmap(path, dtype=layout.dtype, mode="c", offset=layout.offset, shape=layout.shape)


def _to_item(pixels: np.ndarray, label: int, transform: Callable | None, target_transform: Callable | None):
    import torch

    image = torch.from_numpy(pixels).permute(2, 0, 1)  # a CHW view of the mapped HWC row
    if transform is not None:
        image = transform(image)
    if target_transform is not None:
        label = target_transform(label)
    return image, label


class _ImageFolderLike:
    """``classes``, ``class_to_idx``, ``targets`` and ``samples`` as torchvision's ImageFolder has them."""

    classes: list[str]
    root: str

    @property
    def class_to_idx(self) -> dict[str, int]:
        return {name: index for index, name in enumerate(self.classes)}

    @property
    def targets(self) -> list[int]:
        return self._labels().tolist()

    @property
    def samples(self) -> list[tuple[str, int]]:
        return [
            (os.path.join(self.root, path), int(label))
            for path, label in zip(self._paths(), self._labels(), strict=True)
        ]

    def _labels(self) -> np.ndarray:
        raise NotImplementedError

    def _paths(self) -> list[str]:
        raise NotImplementedError


class NPZDataset(_ImageFolderLike):
    """A dataset of either layout as a map-style dataset: ``ds[i] -> (CHW tensor, label)``, the
    tensor in the stored dtype (uint8, or ``image.dtype`` float16 or float32) and the label -1 when
    unlabelled. ``path`` is ``results/dataset.npz`` (layout ``file``) or the folder
    ``results/dataset`` (layout ``shards``: its ``index.npz`` says which shard file and row holds
    each image); both give the same rows in the same order.

    ``transform`` gets the CHW tensor (torchvision.transforms.v2 works on it); ``root`` is
    prefixed to ``samples`` paths (the ``source`` the dataset was built from), as ImageFolder does.
    ``split`` (a name from the config's ``splits``) keeps that split's rows only: an index array
    over the same mapped files, no copy of the images.

    In the folder where the workflow built its demo tree (README command 1)::

        >>> from img2npz import NPZDataset
        >>> dataset = NPZDataset("results/dataset.npz")
        >>> len(dataset), dataset.classes
        (300, ['bubbles', 'checkers', 'rings', 'stripes', 'sunsets'])
        >>> image, label = dataset[0]
        >>> image.shape, image.dtype, dataset.classes[label]
        (torch.Size([3, 256, 256]), torch.uint8, 'bubbles')
        >>> dataset.samples[0]
        ('bubbles/bubbles_000.jpg', 0)
    """

    def __init__(
        self,
        path: str | os.PathLike,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
        root: str | os.PathLike = "",
        split: str | None = None,
    ):
        self.path = os.fspath(path)
        self.transform = transform
        self.target_transform = target_transform
        self.root = os.fspath(root)
        self.sharded = os.path.isdir(self.path)
        self._table = os.path.join(self.path, INDEX_FILE) if self.sharded else self.path
        try:
            self._layouts = array_layout(self._table)
        except (OSError, ValueError, zipfile.BadZipFile) as error:
            raise DatasetFormatError(f"{self._table}: not a readable .npz ({error})") from error
        required = INDEX_MEMBERS if self.sharded else DATASET_MEMBERS
        missing = set(member_names(required)) - set(ADDED_DATASET_MEMBERS) - set(self._layouts)
        if missing:
            raise DatasetFormatError(f"{self._table}: not an img2npz dataset (no {', '.join(sorted(missing))})")
        self.meta: dict[str, Any] = json.loads(str(read_array(self._table, "meta", self._layouts["meta"])))
        formats = (SHARDED_DATASET_FORMAT,) if self.sharded else READABLE_DATASET_FORMATS
        if self.meta.get("format") not in formats:
            expected = " or ".join(map(repr, formats))
            raise DatasetFormatError(f"{self._table}: format {self.meta.get('format')!r}, expected {expected}")
        self._files: list[str] = []
        if self.sharded:
            names = read_array(self._table, "shards", self._layouts["shards"]).tolist()
            self._files = [os.path.join(self.path, name) for name in names]
            absent = [name for name in self._files if not os.path.isfile(name)]
            if absent:
                missing = f"{absent[0]}: missing ({len(absent)} shard files missing)"
                raise DatasetFormatError(f"{missing}; rerun the workflow")
        elif self._layouts["images"].offset is None:
            _map(self.path, self._layouts["images"])  # raises the clear error for compressed files
        self.classes = read_array(self._table, "classes", self._layouts["classes"]).tolist()
        self._arrays: dict[str, np.ndarray] = {}
        self._images: dict[int, np.ndarray] = {}
        self.split = split
        self._rows: np.ndarray | None = None
        if split is not None:
            if "split" not in self._layouts:
                raise DatasetFormatError(f"{self.path}: built without splits (config key 'splits')")
            names = read_array(self._table, "splits", self._layouts["splits"]).tolist()
            if split not in names:
                raise ValueError(f"{self.path}: no split {split!r}; it has {', '.join(names)}")
            self._rows = np.flatnonzero(read_array(self._table, "split", self._layouts["split"]) == names.index(split))

    def _array(self, name: str) -> np.ndarray:
        if name not in self._arrays:
            self._arrays[name] = _map(self._table, self._layouts[name])
        return self._arrays[name]

    def _pixels(self, row: int) -> np.ndarray:
        if not self.sharded:
            return self._array("images")[row]
        number = int(self._array("shard")[row])
        if number not in self._images:
            path = self._files[number]
            self._images[number] = _map(path, array_layout(path)["images"])
        return self._images[number][int(self._array("row")[row])]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_arrays"], state["_images"] = {}, {}  # each worker maps the files itself
        return state

    def __len__(self) -> int:
        if self._rows is not None:
            return len(self._rows)
        return self._layouts["labels"].shape[0]

    def __getitem__(self, index: int):
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        if index < 0:
            index += len(self)
        row = index if self._rows is None else int(self._rows[index])
        return _to_item(self._pixels(row), int(self._array("labels")[row]), self.transform, self.target_transform)

    def _labels(self) -> np.ndarray:
        labels = self._array("labels")
        return labels if self._rows is None else labels[self._rows]

    def _paths(self) -> list[str]:
        paths = self._array("paths")
        return (paths if self._rows is None else paths[self._rows]).tolist()


def normalizer(meta: dict):
    """A function ``(N, 3, H, W) batch, as the dataset returns it -> float32``, on the batch's device,
    that gives every channel mean 0 and std 1 over the dataset, by the dataset's own statistics.

    ``meta``'s mean and std are on the 0..1 scale of the uint8 values (exact: the workflow counts
    them), so each stored dtype is mapped back to that scale first: uint8 / 255; float16 and
    float32 as they are; with ``image.normalize`` its ``(x - mean) / std`` undone, so the dataset's
    own statistics replace the configured ones (to train on those, use the items as stored). All of
    it is one multiply-add per value. A batch of another dtype is refused: a uint8 dataset's batch
    made float elsewhere may be on 0..1 or 0..255. Do it on the GPU: uint8 moves a quarter of the
    bytes of float32.

    Over the whole dataset, every channel comes out with mean 0 and std 1::

        >>> import torch
        >>> from img2npz import NPZDataset, normalizer
        >>> dataset = NPZDataset("results/dataset.npz")
        >>> normalise = normalizer(dataset.meta)
        >>> x = normalise(torch.stack([image for image, _ in dataset]))
        >>> x.dtype, tuple(x.shape)
        (torch.float32, (300, 3, 256, 256))
        >>> bool(x.mean(dim=(0, 2, 3)).abs().max() < 1e-3), bool((x.std(dim=(0, 2, 3)) - 1).abs().max() < 1e-3)
        (True, True)
    """
    import torch

    stored = meta["pixel"]["dtype"]
    scale, shift = _affine_to_standard(meta)
    scale = torch.tensor(scale, dtype=torch.float32).view(1, 3, 1, 1)
    shift = torch.tensor(shift, dtype=torch.float32).view(1, 3, 1, 1)
    cache: dict[Any, tuple] = {}

    def normalise(batch):
        fits = batch.dtype == torch.uint8 if stored == "uint8" else batch.is_floating_point()
        if not fits:
            raise TypeError(
                f"normalizer: this dataset stores {stored} pixels, the batch is {batch.dtype}: normalise the "
                "batch as the dataset returns it, before any other conversion"
            )
        key = batch.device
        if key not in cache:
            cache[key] = (scale.to(key), shift.to(key))
        on_device_scale, on_device_shift = cache[key]
        return torch.addcmul(on_device_shift, batch.to(torch.float32), on_device_scale)

    return normalise


def _affine_to_standard(meta: dict) -> tuple[np.ndarray, np.ndarray]:
    """Per channel ``scale, shift`` with ``stored * scale + shift == (x01 - mean) / std``, where
    ``x01`` is the pixel on the 0..1 scale: uint8 / 255, or the float undone of ``image.normalize``."""
    mean, std = np.asarray(meta["mean"], np.float64), np.asarray(meta["std"], np.float64)
    if not (std > 0).all():
        constant = ", ".join("RGB"[channel] for channel in np.flatnonzero(~(std > 0)))
        raise ValueError(
            f"normalizer: channel {constant} has std 0 (every pixel alike, or no images): cannot scale it to 1"
        )
    pixel = meta["pixel"]
    if pixel["dtype"] == "uint8":
        to01_scale, to01_shift = np.full(3, 1 / 255), np.zeros(3)
    elif pixel.get("normalize") is None:
        to01_scale, to01_shift = np.ones(3), np.zeros(3)
    else:
        to01_scale = np.asarray(pixel["normalize"]["std"], np.float64)
        to01_shift = np.asarray(pixel["normalize"]["mean"], np.float64)
    return to01_scale / std, (to01_shift - mean) / std
