"""index-images: label every image of the tree and cut the sorted list into shards.

Outputs (their formats are :mod:`img2npz.contract`'s): one manifest per shard ``{shard}.tsv`` (path,
size, mtime_ns, class name), rewritten only when its content changes so Snakemake reruns only that
shard; ``images.parquet`` (one row per image) and ``classes.tsv``. Manifests of shards that no
longer exist are removed. The tree itself is walked by :mod:`img2npz.scan`, normally in the main
Snakemake process.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from img2npz.allocation import Allocation, allocate
from img2npz.atomic import write_if_changed
from img2npz.contract import (
    CLASSES_HEADER,
    UNLABELLED_CLASS,
    UNLABELLED_LABEL,
    IndexSummary,
    path_sort_key,
    table_path,
)
from img2npz.manifests import keys_of, manifest_ids, read_keys, write_new_manifests
from img2npz.scan import Listing, describe_skipped, scan_tree
from img2npz.sharding import path_hashes, resolve_bounds
from img2npz.tsv import write_tsv_if_changed

log = logging.getLogger(__name__)
T = TypeVar("T")


def folder_label(path: str) -> str:
    """Class of an image in a class-folder tree; files at the top level are unlabelled."""
    head, sep, _ = path.partition("/")
    return head if sep else UNLABELLED_CLASS


def read_labels_csv(csv_path: str | os.PathLike, source: str | os.PathLike | None = None) -> dict[str, str]:
    """``path -> label`` from a CSV with columns ``path,label``; paths relative to ``source``, or
    absolute paths under it (made relative), so a CSV written with full paths labels its images."""
    roots = _absolute_roots(source) if source is not None else ()
    with open(csv_path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"path", "label"} <= set(reader.fieldnames):
            raise ValueError(f"{csv_path}: needs a header with columns 'path' and 'label'")
        labels: dict[str, str] = {}
        for number, row in enumerate(reader, start=2):
            path = (row["path"] or "").strip()
            while path.startswith("./"):
                path = path[2:]
            if os.path.isabs(path):
                path = os.path.normpath(path)
                path = next((path[len(root) :] for root in roots if path.startswith(root)), path)
            label = (row["label"] or "").strip()
            if not path or not label:
                raise ValueError(f"{csv_path}:{number}: empty path or label")
            if labels.get(path, label) != label:
                raise ValueError(f"{csv_path}:{number}: {path!r} has two labels")
            labels[path] = label
    return labels


def _absolute_roots(source: str | os.PathLike) -> tuple[str, ...]:
    """``source`` as absolute path prefixes, each ending in /: as given, and with links resolved,
    for a CSV written through the real path of a source reached through a link (or the reverse)."""
    given, resolved = os.path.abspath(source), os.path.realpath(source)
    return tuple(dict.fromkeys(root.rstrip("/") + "/" for root in (given, resolved)))


def labels_csv_warnings(
    index: Index, listed: Mapping[str, str], label_csv: str | os.PathLike, source: str | os.PathLike
) -> list[str]:
    """What the CSV and the tree disagree on, a line each: a job log is where nobody looks, so the
    report shows these too (from ``summary.json``)."""
    lines = []
    unknown = sorted(set(listed) - set(index.listing.paths), key=path_sort_key)
    if unknown:
        line = f"{len(unknown):,} paths in {os.fspath(label_csv)} name no indexed image, e.g. {', '.join(unknown[:3])}"
        outside = sum(os.path.isabs(path) for path in unknown)
        if outside:
            line += (
                f" ({outside:,} absolute paths not under source {os.fspath(source)!r}:"
                " paths must be relative to source, or absolute under it)"
            )
        lines.append(line)
    unlabelled = index.class_names.count(UNLABELLED_CLASS)
    if unlabelled:
        lines.append(f"{unlabelled:,} indexed images have no row in {os.fspath(label_csv)}: their label is -1")
    return lines


def class_names(paths: Sequence[str], mode: str, labels: Mapping[str, str] | None = None) -> list[str]:
    """Class name of every path (:data:`~img2npz.contract.UNLABELLED_CLASS` when unlabelled) for label
    mode folder, none or csv (``labels``: the CSV's :func:`read_labels_csv`)."""
    if mode == "folder":
        return [folder_label(path) for path in paths]
    if mode == "none":
        return [UNLABELLED_CLASS] * len(paths)
    if labels is None:
        raise ValueError("label mode csv needs the labels read from the CSV")
    return [labels.get(path, UNLABELLED_CLASS) for path in paths]


@dataclass
class Index:
    """The sorted image list with class names and each image's shard row (:mod:`img2npz.allocation`)."""

    listing: Listing
    class_names: list[str]
    allocation: Allocation

    @property
    def classes(self) -> list[str]:
        return sorted(set(self.class_names) - {UNLABELLED_CLASS})

    @property
    def shards(self) -> list[str]:
        return self.allocation.shards


def build_index(
    listing: Listing,
    names: list[str],
    target: int,
    min_images: int,
    max_images: int,
    existing: Mapping[str, np.ndarray] | None = None,
    compact_dropped: float = 0.2,
    compact_small: int = 8,
) -> Index:
    """``listing`` must already be in component order (as :func:`img2npz.scan.scan_tree` returns it);
    ``existing``: the keys of the manifests already written (:func:`img2npz.manifests.read_keys`)."""
    hashes = listing.hashes if listing.hashes is not None else path_hashes(listing.paths)
    allocation = allocate(
        listing.paths,
        keys_of(hashes, listing.sizes, listing.mtimes),
        existing or {},
        target,
        min_images,
        max_images,
        compact_dropped,
        compact_small,
    )
    return Index(listing, names, allocation)


def write_manifests(
    index: Index, directory: str | os.PathLike, keys_dir: str | os.PathLike | None = None
) -> tuple[int, int]:
    """The new shards' manifests, with their keys cached in ``keys_dir``; those of the removed shards
    deleted. Returns (written, removed)."""
    return write_new_manifests(index.allocation.lines, index.shards, directory, keys_dir)


def write_classes(index: Index, path: str | os.PathLike) -> bool:
    counts: dict[str, int] = {}
    for name in index.class_names:
        counts[name] = counts.get(name, 0) + 1
    rows = [(number, name, counts[name]) for number, name in enumerate(index.classes)]
    return write_tsv_if_changed(path, CLASSES_HEADER, rows)


def write_images_table(index: Index, path: str | os.PathLike) -> bool:
    """One row per image; written only when its bytes change (pyarrow output is deterministic)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = sorted(set(index.class_names))
    code_of = {name: code for code, name in enumerate(names)}
    codes = pa.array([code_of[name] for name in index.class_names], pa.int32())
    label_of = {name: number for number, name in enumerate(index.classes)}
    label_of_code = [label_of.get(name, UNLABELLED_LABEL) for name in names]
    paths = index.listing.paths
    table = pa.table(
        {
            "path": pa.array([table_path(p) for p in paths] if _needs_table_paths(paths) else paths, pa.string()),
            "size": pa.array(index.listing.sizes, pa.int64()),
            "mtime_ns": pa.array(index.listing.mtimes, pa.int64()),
            "class": pa.DictionaryArray.from_arrays(codes, pa.array([table_path(n) for n in names], pa.string())),
            "label": pa.array(np.asarray(label_of_code, np.int64)[codes.to_numpy()], pa.int64()),
            "shard": pa.DictionaryArray.from_arrays(
                pa.array(index.allocation.shard_code, pa.int32()), pa.array(index.shards, pa.string())
            ),
            "row": pa.array(index.allocation.row_of, pa.int64()),
        }
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return write_if_changed(path, buffer.getvalue())


def _needs_table_paths(paths: Sequence[str]) -> bool:
    try:
        "\n".join(paths).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def run_beside(background: Callable[[], None], foreground: Callable[[], T]) -> T:
    """Run ``background`` in a forked child while ``foreground`` runs here (at 10^6 images the
    manifests and the parquet table each take about a second); serially where fork is missing."""
    if not hasattr(os, "fork"):
        background()
        return foreground()
    child = os.fork()
    if child == 0:
        code = 1
        try:
            background()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    try:
        result = foreground()
    finally:
        _, status = os.waitpid(child, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError("writing images.parquet or classes.tsv failed (see the traceback above)")
    return result


def lost_manifests(manifest_dir: str | os.PathLike, summary: str | os.PathLike) -> int:
    """How many manifests of the shards the last index cut are gone (0 where it never ran).

    Snakemake sees the manifests only as one directory, so a manifest deleted by hand would go
    unnoticed, and the merge would leave that shard's images out.
    """
    try:
        return max(0, IndexSummary.load(summary).shards - len(manifest_ids(manifest_dir)))
    except (OSError, ValueError):
        return 0


def run_index(
    source: str | os.PathLike,
    extensions: Sequence[str],
    labels: str,
    label_csv: str | os.PathLike | None,
    bounds: Sequence[int | None],
    manifest_dir: str | os.PathLike,
    images_table: str | os.PathLike,
    classes_table: str | os.PathLike,
    listing: Listing | None = None,
    summary: str | os.PathLike | None = None,
    compaction: Mapping[str, float] | None = None,
    keys_dir: str | os.PathLike | None = None,
) -> Index:
    """The whole index-images step; raises ``ValueError`` naming the problem on bad input.

    ``bounds``: the configured (target, min, max), None where derived from the tree's size
    (:func:`img2npz.sharding.resolve_bounds`). ``listing`` is the main process's walk of the tree;
    without it the tree is walked here. ``summary``: where to write the :class:`IndexSummary`.
    ``compaction``: ``compact_dropped`` and ``compact_small`` (:mod:`img2npz.allocation`).
    ``keys_dir``: where the manifests' keys are cached (:mod:`img2npz.manifests`).
    """
    if listing is None:
        listing = scan_tree(source, extensions)
    if not len(listing):
        raise ValueError(f"no images with extensions {' '.join(extensions)} under {os.fspath(source)!r}")
    listed = read_labels_csv(label_csv, source) if labels == "csv" else None
    resolved = resolve_bounds(bounds, len(listing))
    existing = read_keys(manifest_dir, keys_dir)
    names = class_names(listing.paths, labels, listed)
    index = build_index(listing, names, *resolved, existing, **(compaction or {}))
    warnings = labels_csv_warnings(index, listed, label_csv, source) if labels == "csv" else []
    for line in [*warnings, *describe_skipped(listing.skipped)]:
        log.warning("%s", line)

    def tables() -> None:
        write_images_table(index, images_table)
        write_classes(index, classes_table)

    written, removed = run_beside(tables, lambda: write_manifests(index, manifest_dir, keys_dir))
    compacted = index.allocation.compaction
    if summary is not None:
        IndexSummary(
            len(listing),
            len(index.shards),
            *resolved,
            dict(listing.skipped),
            warnings,
            index.allocation.written,
            compacted.to_dict() if compacted else None,
        ).save(summary)
    log.info(
        "indexed %d images in %d classes: %d shards, %d of them new (%d images to decode, %d rows to copy), %d removed",
        len(listing),
        len(index.classes),
        len(index.shards),
        written,
        index.allocation.written["decode"],
        index.allocation.written["copy"],
        removed,
    )
    if compacted:
        log.info(
            "compaction: %d shards rewritten into %d, copying %d rows, because %s",
            compacted.shards,
            compacted.into,
            compacted.rows,
            "; ".join(compacted.reasons),
        )
    return index
