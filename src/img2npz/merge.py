"""merge-npz: stream every shard into ``results/dataset.npz`` and every failure list into one.

Peak memory is bounded by a shard's small arrays plus one read chunk, never by the number of images:
pass one reads only headers and path lists shard by shard, pass two copies the image bytes file to
file in the kernel (``copy_file_range``, in as many parallel streams as the job has threads; each
shard's page cache is released behind it, so the copy reuses those pages) and the rest in chunks.
No pixel is read here: the digest in ``meta`` is the tree of the rows' sha256s that the shard jobs
took (:mod:`img2npz.treedigest`), and the zip's CRC-32 is the rows' CRC-32s combined.
Rows follow the index's path order: shards are contiguous runs of it, put in order by the first
path of their manifest, so the result never depends on how the tree was sharded.

What ``dataset.npz`` holds is specified in :mod:`img2npz.contract` (its members are written here in
the order given there); its bytes in :mod:`img2npz.npzformat`. The mean and std in ``meta`` are
exact, from the shards' integer histograms, so they never depend on the shard layout either.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from img2npz import fingerprint, neardup
from img2npz import splits as splitting
from img2npz.atomic import atomic_output
from img2npz.contract import (
    DATASET_FORMAT,
    FAILURE_HEADER,
    UNLABELLED_LABEL,
    DatasetMeta,
    ShardMeta,
    in_index_order,
    path_sort_key,
)
from img2npz.copies import Copies, dropped_counts, find_copies, kept_ranges
from img2npz.filecopy import ByteRange, copy_ranges
from img2npz.npzformat import ArrayLayout, NpzWriter, array_layout, read_array
from img2npz.treedigest import TreeDigest
from img2npz.tsv import concatenate_tsv, read_tsv, write_tsv

log = logging.getLogger(__name__)


@dataclass
class ShardSummary:
    npz: str
    failures: str
    first_path: str
    layouts: dict[str, ArrayLayout]
    images: int
    histogram: np.ndarray


def _summarise(npz: str, failures: str, pixel: dict) -> ShardSummary:
    layouts = array_layout(npz)
    try:
        meta = ShardMeta.from_json(str(read_array(npz, "meta", layouts["meta"])))
    except ValueError as error:
        raise ValueError(f"{npz}: {error}") from None
    if meta.pixel != pixel:
        raise ValueError(f"{npz}: built with pixel config {meta.pixel}, expected {pixel}; rerun its shard")
    if layouts["images"].offset is None:
        raise ValueError(f"{npz}: images member is compressed; shards are stored uncompressed, rerun its shard")
    if not 0 <= meta.images <= layouts["images"].shape[0]:
        raise ValueError(f"{npz}: claims {meta.images} images in {layouts['images'].shape[0]} rows")
    histogram = read_array(npz, "histogram", layouts["histogram"])
    return ShardSummary(npz, failures, meta.first_path, layouts, meta.images, histogram)


def _image_bytes(shard: ShardSummary) -> ByteRange:
    """A shard's decoded rows (its padding rows for failures follow them)."""
    layout = shard.layouts["images"]
    rows = layout.shape[0]
    nbytes = layout.nbytes // rows * shard.images if rows else 0
    return ByteRange(shard.npz, layout.offset, nbytes, layout.crc32 if shard.images == rows else None)


def channel_stats(histogram: np.ndarray) -> tuple[list[float], list[float]]:
    """Exact per-channel mean and std (0..1 scale) from (3, 256) uint8 value counts."""
    means, stds = [], []
    values = range(256)
    for counts in histogram.tolist():
        total = sum(counts)
        if not total:
            means.append(0.0)
            stds.append(0.0)
            continue
        mean = Fraction(sum(v * c for v, c in zip(values, counts, strict=True)), total)
        square = Fraction(sum(v * v * c for v, c in zip(values, counts, strict=True)), total)
        means.append(float(mean / 255))
        stds.append(float((square - mean * mean) / (255 * 255)) ** 0.5)
    return means, stds


def _label_array(names: np.ndarray, class_index: dict[str, int], source: str) -> np.ndarray:
    """Class names to indices into ``classes``; the empty name (unlabelled) becomes -1."""
    unique, inverse = np.unique(names, return_inverse=True)
    unknown = [name for name in unique.tolist() if name and name not in class_index]
    if unknown:
        raise ValueError(f"{source}: class {unknown[0]!r} is not in classes.tsv; rerun the index")
    lookup = np.array([class_index.get(name, UNLABELLED_LABEL) for name in unique.tolist()], dtype=np.int64)
    return lookup[inverse.reshape(-1)] if len(names) else np.empty(0, dtype=np.int64)


def _write_splits(
    writer: NpzWriter, split: np.ndarray, splits: Mapping[str, float], group_by: str, near_bits: int | None
) -> dict:
    writer.add("split", split)
    writer.add("splits", np.array(list(splits), dtype=str))
    counts = np.bincount(split, minlength=len(splits)).tolist()
    record = {"fractions": dict(splits), "group_by": group_by, "counts": dict(zip(splits, counts, strict=True))}
    if near_bits is not None:
        record["near_duplicate_bits"] = near_bits
    return record


@dataclass
class _Selection:
    """The shards in merge order, and per shard the decoded rows that go in (None: all of them)."""

    shards: Sequence[ShardSummary]
    keep: Sequence[np.ndarray | None]

    @property
    def total(self) -> int:
        return sum(s.images if k is None else int(k.sum()) for s, k in zip(self.shards, self.keep, strict=True))

    def column(self, number: int, name: str) -> np.ndarray:
        """Member ``name`` of shard ``number``, its rows that go in."""
        shard, keep = self.shards[number], self.keep[number]
        values = read_array(shard.npz, name, shard.layouts[name])
        return values if keep is None else values[keep]

    def concatenated(self, name: str) -> np.ndarray:
        """A per-row member of every shard, the rows that go in, as one array."""
        parts = [self.column(number, name) for number in range(len(self.shards))]
        return np.concatenate(parts) if parts else np.zeros((0, *SHARD_ROW_SHAPES[name]), np.uint8)

    def image_ranges(self) -> list[ByteRange]:
        ranges = []
        for shard, keep in zip(self.shards, self.keep, strict=True):
            if keep is None:
                ranges.append(_image_bytes(shard))
            else:
                ranges.extend(kept_ranges(shard, keep, read_array(shard.npz, "crc32s", shard.layouts["crc32s"])))
        return ranges

    def histogram(self, pixel: dict) -> np.ndarray:
        """The (3, 256) counts of the rows that go in: the shards' less the dropped rows'."""
        total = sum((s.histogram for s in self.shards), np.zeros((3, 256), dtype=np.int64))
        for shard, keep in zip(self.shards, self.keep, strict=True):
            if keep is not None:
                total -= dropped_counts(shard, keep, pixel)
        return total


SHARD_ROW_SHAPES = {"phashes": (fingerprint.BYTES,), "mean_rgb": (3,)}


def _write_failures(summaries: Sequence[ShardSummary], copies: Copies, out: str | os.PathLike) -> int:
    """Each shard's failures with the copies dropped from it, in the index order; their count."""
    lines = []
    for shard, dropped in zip(summaries, copies.failures, strict=True):
        lines.extend(
            sorted([*read_tsv(shard.failures, FAILURE_HEADER), *dropped], key=lambda line: path_sort_key(line[0]))
        )
    write_tsv(out, FAILURE_HEADER, lines)
    return len(lines)


def merge_shards(
    shard_npzs: Sequence[str],
    shard_failures: Sequence[str],
    classes: Sequence[str],
    pixel: dict,
    out_npz: str | os.PathLike,
    out_failures: str | os.PathLike,
    compress: bool = False,
    splits: Mapping[str, float] | None = None,
    group_by: str = "path",
    near_duplicate_bits: int | None = None,
    group_near_duplicates: bool = False,
    drop_duplicates: str = "none",
    streams: int = 1,
) -> DatasetMeta:
    """Write the dataset and the failure list; return the ``meta`` document.

    With ``splits`` (named fractions), ``split`` (int8, an index into ``splits``) says each row's
    split; see :mod:`img2npz.splits`. ``group_near_duplicates``: keep near-duplicates within
    ``near_duplicate_bits`` (and exact duplicates) in one split. ``drop_duplicates`` (``exact`` or
    ``near``): leave out every copy but the first (:mod:`img2npz.copies`). ``streams``: threads
    copying the pixels at once (:func:`img2npz.filecopy.copy_ranges`).
    """
    if len(shard_npzs) != len(shard_failures):
        raise ValueError("every shard needs its failures file")
    by_stem = {os.path.basename(f).removesuffix(".failures.tsv"): f for f in shard_failures}
    summaries = []
    for npz in shard_npzs:
        stem = os.path.basename(npz).removesuffix(".npz")
        if stem not in by_stem:
            raise ValueError(f"{npz}: no matching failures file")
        summaries.append(_summarise(npz, by_stem[stem], pixel))
    summaries = in_index_order(summaries)

    if near_duplicate_bits is None and (group_near_duplicates or drop_duplicates == "near"):
        raise ValueError("group_near_duplicates and drop_duplicates: near need near_duplicate_bits")
    copies = find_copies(summaries, drop_duplicates, near_duplicate_bits) if drop_duplicates != "none" else None
    rows = _Selection(summaries, copies.keep if copies else [None] * len(summaries))
    total = rows.total
    height, width = pixel["size"]
    dtype = np.dtype(pixel["dtype"])
    path_chars = max((s.layouts["paths"].dtype.itemsize // 4 for s in summaries if s.images), default=1)
    class_index = {name: number for number, name in enumerate(classes)}
    histogram = rows.histogram(pixel)
    numbers = range(len(summaries))
    digest = TreeDigest()
    for number in numbers:
        digest.update(rows.column(number, "sha256s"))

    with atomic_output(out_npz) as handle, NpzWriter(handle, compress=compress) as writer:
        with writer.stream("images", dtype, (total, height, width, 3)) as member:
            # each shard is read once here: release its pages for the copy's (filecopy.release_cache)
            copy_ranges(member, rows.image_ranges(), release=True, streams=streams)
        with writer.stream("labels", np.int64, (total,)) as member:
            for number in numbers:
                member.write(_label_array(rows.column(number, "class_names"), class_index, summaries[number].npz))
        writer.add("classes", np.array(list(classes), dtype=str) if classes else np.empty(0, dtype="<U1"))
        values = np.empty(total if splits else 0)  # each row's point in [0, 1), found in the paths pass
        start = 0
        with writer.stream("paths", f"<U{path_chars}", (total,)) as member:
            for number in numbers:
                paths = rows.column(number, "paths")
                member.write(paths.astype(f"<U{path_chars}"))
                if splits:
                    values[start : start + len(paths)] = splitting.key_values(paths.tolist(), group_by)
                start += len(paths)
        for name, member_dtype, row_shape in (
            ("crc32s", np.uint32, ()),
            ("phashes", np.uint8, (fingerprint.BYTES,)),
            ("mean_rgb", np.uint8, (3,)),
        ):
            with writer.stream(name, member_dtype, (total, *row_shape)) as member:
                for number in numbers:
                    member.write(rows.column(number, name))
        split_meta = None
        if splits:
            if group_near_duplicates:
                hashes, colours = rows.concatenated("phashes"), rows.concatenated("mean_rgb")
                values = splitting.joined(values, *neardup.near_duplicate_pairs(hashes, colours, near_duplicate_bits))
            split = splitting.split_of(values, splits)
            split_meta = _write_splits(
                writer, split, splits, group_by, near_duplicate_bits if group_near_duplicates else None
            )
        if copies and copies.dropped:
            failures = _write_failures(summaries, copies, out_failures)
        else:
            failures = concatenate_tsv([shard.failures for shard in summaries], FAILURE_HEADER, out_failures)
        mean, std = channel_stats(histogram)
        meta = DatasetMeta(
            format=DATASET_FORMAT,
            pixel=pixel,
            images=total,
            classes=len(classes),
            failures=failures,
            mean=mean,
            std=std,
            histogram=histogram.tolist(),
            images_sha256=digest.hexdigest(),
            splits=split_meta,
        )
        writer.add("meta", np.array(meta.to_json()))
    log.info("merged %d shards: %d images, %d failures", len(summaries), total, failures)
    return meta
