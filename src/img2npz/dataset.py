"""PyTorch datasets over img2npz output that never decompress or copy the image array.

``np.load("dataset.npz")["images"][i]`` reads the whole ``images`` member on every access: numpy
ignores ``mmap_mode`` for ``.npz``. Our writer stores every member uncompressed at a 64-byte-aligned
offset (:mod:`img2npz.npzformat`), so :class:`NPZDataset` maps each array straight from the file.
Opening costs a few headers; the maps are made lazily in each process, so a ``DataLoader`` with
workers pickles only paths. :class:`ShardedNPZDataset` does the same over ``results/shards/`` in the
merged file's row order. :func:`normalizer` turns batches of any stored dtype into normalised floats
on their device.

``torch`` is imported lazily: the workflow's jobs import this package without it.
"""

from __future__ import annotations

import bisect
import json
import os
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from img2npz import neardup
from img2npz.contract import (
    ADDED_DATASET_MEMBERS,
    DATASET_MEMBERS,
    READABLE_DATASET_FORMATS,
    UNLABELLED_LABEL,
    ShardMeta,
    in_index_order,
    member_names,
    read_classes,
)
from img2npz.npzformat import array_layout, read_array
from img2npz.splits import assign


class DatasetFormatError(ValueError):
    """Not an img2npz dataset, or one whose images cannot be memory-mapped."""


def _map(path: str, layout) -> np.ndarray:
    # mode "c" (copy-on-write): pages are shared with the page cache, and torch accepts the array as
    # writable, so no per-item warning and no copy.
    if layout.offset is None:
        raise DatasetFormatError(
            f"{path}: member {layout.name!r} is compressed and cannot be memory-mapped; rebuild with "
            "merge.compress: false, or read the shards with ShardedNPZDataset"
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
    """``dataset.npz`` as a map-style dataset: ``ds[i] -> (CHW tensor, label)``, the tensor in the
    stored dtype (uint8, or ``image.dtype`` float16 or float32) and the label -1 when unlabelled.

    ``transform`` gets the CHW tensor (torchvision.transforms.v2 works on it); ``root`` is
    prefixed to ``samples`` paths (the ``source`` the dataset was built from), as ImageFolder does.
    ``split`` (a name from the config's ``splits``) keeps that split's rows only: an index array
    over the same mapped file, no copy of the images.

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
        try:
            self._layouts = array_layout(self.path)
        except (OSError, ValueError, zipfile.BadZipFile) as error:
            raise DatasetFormatError(f"{self.path}: not a readable .npz ({error})") from error
        missing = set(member_names(DATASET_MEMBERS)) - set(ADDED_DATASET_MEMBERS) - set(self._layouts)
        if missing:
            raise DatasetFormatError(f"{self.path}: not an img2npz dataset (no {', '.join(sorted(missing))})")
        self.meta: dict[str, Any] = json.loads(str(read_array(self.path, "meta", self._layouts["meta"])))
        if self.meta.get("format") not in READABLE_DATASET_FORMATS:
            expected = " or ".join(map(repr, READABLE_DATASET_FORMATS))
            raise DatasetFormatError(f"{self.path}: format {self.meta.get('format')!r}, expected {expected}")
        if self._layouts["images"].offset is None:
            _map(self.path, self._layouts["images"])  # raises the clear error for compressed files
        self.classes = read_array(self.path, "classes", self._layouts["classes"]).tolist()
        self._arrays: dict[str, np.ndarray] = {}
        self.split = split
        self._rows: np.ndarray | None = None
        if split is not None:
            if "split" not in self._layouts:
                raise DatasetFormatError(f"{self.path}: built without splits (config key 'splits')")
            names = read_array(self.path, "splits", self._layouts["splits"]).tolist()
            if split not in names:
                raise ValueError(f"{self.path}: no split {split!r}; it has {', '.join(names)}")
            self._rows = np.flatnonzero(read_array(self.path, "split", self._layouts["split"]) == names.index(split))

    def _array(self, name: str) -> np.ndarray:
        if name not in self._arrays:
            self._arrays[name] = _map(self.path, self._layouts[name])
        return self._arrays[name]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_arrays"] = {}  # each worker maps the file itself
        return state

    def __len__(self) -> int:
        return self._layouts["images"].shape[0] if self._rows is None else len(self._rows)

    def __getitem__(self, index: int):
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        row = index if self._rows is None else int(self._rows[index])
        return _to_item(
            self._array("images")[row], int(self._array("labels")[row]), self.transform, self.target_transform
        )

    def _labels(self) -> np.ndarray:
        labels = self._array("labels")
        return labels if self._rows is None else labels[self._rows]

    def _paths(self) -> list[str]:
        paths = self._array("paths")
        return (paths if self._rows is None else paths[self._rows]).tolist()


class ShardedNPZDataset(_ImageFolderLike):
    """The shards in ``results/shards/`` as one dataset, in the merged file's row order.

    For datasets too large to merge, or when ``merge.compress`` is on. ``classes`` come from the
    index's ``classes.tsv`` (default: ``results/index/classes.tsv`` beside the shards folder).
    Shards do not record splits: for ``split``, pass the config's ``splits`` and ``group_by`` (and,
    with ``group_near_duplicates``, ``near_duplicate_bits``: its ``validate.near_duplicate_bits``)
    and the same rows as in the merged file are chosen (:mod:`img2npz.splits` is a pure function).
    Shards hold every decoded row: with ``filters.drop_duplicates``, pass ``drop_duplicates`` (and
    ``near_duplicate_bits``) to leave out the rows the merge leaves out.

    Beside the merged file, the same rows in the same order::

        >>> from img2npz import NPZDataset, ShardedNPZDataset
        >>> shards, merged = ShardedNPZDataset("results/shards"), NPZDataset("results/dataset.npz")
        >>> len(shards) == len(merged) and shards.samples == merged.samples
        True
        >>> bool((shards[123][0] == merged[123][0]).all())
        True
    """

    def __init__(
        self,
        shards: str | os.PathLike,
        classes: str | os.PathLike | None = None,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
        root: str | os.PathLike = "",
        files: Sequence[str | os.PathLike] | None = None,
        split: str | None = None,
        splits: Mapping[str, float] | None = None,
        group_by: str = "path",
        near_duplicate_bits: int | None = None,
        drop_duplicates: str = "none",
    ):
        folder = Path(shards)
        self.transform = transform
        self.target_transform = target_transform
        self.root = os.fspath(root)
        classes_path = Path(classes) if classes else folder.parent / "index" / "classes.tsv"
        self.classes = read_classes(classes_path)
        class_index = {name: number for number, name in enumerate(self.classes)}
        found = []
        for npz in files or sorted(folder.glob("*.npz")):
            layouts = array_layout(npz)
            try:
                meta = ShardMeta.from_json(str(read_array(npz, "meta", layouts["meta"])))
            except ValueError as error:
                raise DatasetFormatError(f"{npz}: {error}") from None
            if meta.images:
                found.append(_Shard(os.fspath(npz), meta.first_path, layouts, meta.images))
        self._shards = in_index_order(found)
        self._starts = np.cumsum([0] + [s.count for s in self._shards]).tolist()
        self._label_arrays = [
            np.array(
                [class_index.get(n, UNLABELLED_LABEL) for n in read_array(s.path, "class_names").tolist()], np.int64
            )
            for s in self._shards
        ]
        self.split = split
        self._rows: np.ndarray | None = None
        kept = self._kept(drop_duplicates, near_duplicate_bits) if drop_duplicates != "none" else None
        if kept is not None:
            self._rows = np.flatnonzero(kept)
        if split is not None:
            if not splits or split not in splits:
                raise ValueError(f"split {split!r}: pass splits= (the config's splits) naming it")
            pairs = self._near_duplicate_pairs(near_duplicate_bits, kept) if near_duplicate_bits is not None else None
            paths = self._all_paths()
            paths = paths if self._rows is None else [paths[row] for row in self._rows.tolist()]
            chosen = np.flatnonzero(assign(paths, splits, group_by, pairs) == list(splits).index(split))
            self._rows = chosen if self._rows is None else self._rows[chosen]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_shards"] = [_Shard(s.path, s.first_path, s.layouts, s.count) for s in self._shards]
        return state

    def __len__(self) -> int:
        return self._starts[-1] if self._rows is None else len(self._rows)

    def __getitem__(self, index: int):
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        if self._rows is not None:
            index = int(self._rows[index])
        number = bisect.bisect_right(self._starts, index) - 1
        row = index - self._starts[number]
        shard = self._shards[number]
        return _to_item(
            shard.images()[row], int(self._label_arrays[number][row]), self.transform, self.target_transform
        )

    def _labels(self) -> np.ndarray:
        labels = np.concatenate(self._label_arrays) if self._label_arrays else np.zeros(0, np.int64)
        return labels if self._rows is None else labels[self._rows]

    def _near_duplicate_pairs(self, bits: int, kept: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """As the merge finds them with ``group_near_duplicates``: among the rows it keeps."""
        hashes = [np.zeros((0, neardup.BYTES), np.uint8)]
        colours = [np.zeros((0, 3), np.uint8)]
        for shard in self._shards:
            hashes.append(read_array(shard.path, "phashes", shard.layouts["phashes"]))
            colours.append(read_array(shard.path, "mean_rgb", shard.layouts["mean_rgb"]))
        hashes, colours = np.concatenate(hashes), np.concatenate(colours)
        if kept is not None:
            hashes, colours = hashes[kept], colours[kept]
        return neardup.near_duplicate_pairs(hashes, colours, bits)

    def _kept(self, mode: str, bits: int | None) -> np.ndarray:
        """Which rows the merge keeps with ``filters.drop_duplicates`` (the shards hold them all)."""
        from img2npz.copies import find_copies  # not on the loader's usual path: it reads pixels

        if mode == "near" and bits is None:
            raise ValueError("drop_duplicates='near' needs near_duplicate_bits= (validate.near_duplicate_bits)")
        shards = [SimpleNamespace(npz=s.path, layouts=s.layouts, images=s.count) for s in self._shards]
        keep = find_copies(shards, mode, bits if bits is not None else 0).keep
        return np.concatenate(keep) if keep else np.zeros(0, bool)

    def _all_paths(self) -> list[str]:
        return [p for s in self._shards for p in read_array(s.path, "paths", s.layouts["paths"]).tolist()]

    def _paths(self) -> list[str]:
        paths = self._all_paths()
        return paths if self._rows is None else [paths[row] for row in self._rows.tolist()]


class _Shard:
    """One shard npz; its first ``count`` image rows are real (padding rows for failures follow)."""

    def __init__(self, path: str, first_path: str, layouts: dict, count: int):
        self.path, self.first_path, self.layouts, self.count = path, first_path, layouts, count
        self._images: np.ndarray | None = None

    def images(self) -> np.ndarray:
        if self._images is None:
            self._images = _map(self.path, self.layouts["images"])[: self.count]
        return self._images


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
