"""index-images: walk the source tree once, label every image and cut the list into shards.

Outputs (see design.md): one manifest per shard ``{shard}.tsv`` (path, size, mtime_ns, class name),
rewritten only when its content changes so Snakemake reruns only that shard; ``images.parquet`` (one
row per image) and ``classes.tsv``. Manifests of shards that no longer exist are removed.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
import stat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from img2npz.atomic import write_if_changed
from img2npz.sharding import Shard, assign_shards, path_sort_key
from img2npz.tsv import read_tsv, write_tsv_if_changed

log = logging.getLogger(__name__)

MANIFEST_HEADER = ("path", "size", "mtime_ns", "class")
CLASSES_HEADER = ("index", "class", "images")
UNLABELLED = ""


@dataclass(frozen=True)
class Entry:
    """One image file as found by the scan; ``path`` is relative to the source, POSIX separators."""

    path: str
    size: int
    mtime_ns: int


def table_path(path: str) -> str:
    """A path as valid UTF-8 for tables (parquet): undecodable bytes of a file name become ``\\xNN``."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def scan_tree(root: str | os.PathLike, extensions: Sequence[str]) -> list[Entry]:
    """Every regular image file below ``root``, in no particular order.

    Skips hidden files and folders (which covers macOS ``._*`` files), broken links, and directories
    with image-like names. Links to folders are followed, each real folder once, so a link loop ends.
    """
    root = os.fspath(root)
    exts = tuple(ext.lower() for ext in extensions)
    root_stat = os.stat(root)
    seen_dirs = {(root_stat.st_dev, root_stat.st_ino)}
    entries: list[Entry] = []
    pending = [("", root)]
    while pending:
        prefix, directory = pending.pop()
        try:
            with os.scandir(directory) as listing:
                children = sorted(listing, key=lambda child: child.name)
        except OSError as error:
            log.warning("cannot list %s: %s", directory, error)
            continue
        for child in children:
            name = child.name
            if name.startswith("."):
                continue
            try:
                if child.is_dir():
                    info = child.stat()
                    key = (info.st_dev, info.st_ino)
                    if key not in seen_dirs:
                        seen_dirs.add(key)
                        pending.append((f"{prefix}{name}/", child.path))
                    continue
                if not name.lower().endswith(exts):
                    continue
                info = child.stat()
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                entries.append(Entry(f"{prefix}{name}", info.st_size, info.st_mtime_ns))
    return entries


def fingerprint(entries: Iterable[Entry]) -> str:
    """A cheap digest of paths, sizes and mtimes: changes whenever the tree's images change."""
    digest = hashlib.blake2b(digest_size=16)
    for entry in sorted(entries, key=lambda e: e.path):
        digest.update(f"{entry.path}\0{entry.size}\0{entry.mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def tree_fingerprint(root: str | os.PathLike, extensions: Sequence[str]) -> str:
    if not os.path.isdir(root):
        return "missing"
    return fingerprint(scan_tree(root, extensions))


def folder_label(path: str) -> str:
    """Class of an image in a class-folder tree; files at the top level are unlabelled."""
    head, sep, _ = path.partition("/")
    return head if sep else UNLABELLED


def read_labels_csv(csv_path: str | os.PathLike) -> dict[str, str]:
    """``path -> label`` from a CSV with columns ``path,label``."""
    with open(csv_path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"path", "label"} <= set(reader.fieldnames):
            raise ValueError(f"{csv_path}: needs a header with columns 'path' and 'label'")
        labels: dict[str, str] = {}
        for number, row in enumerate(reader, start=2):
            path = (row["path"] or "").strip()
            while path.startswith("./"):
                path = path[2:]
            label = (row["label"] or "").strip()
            if not path or not label:
                raise ValueError(f"{csv_path}:{number}: empty path or label")
            if labels.get(path, label) != label:
                raise ValueError(f"{csv_path}:{number}: {path!r} has two labels")
            labels[path] = label
    return labels


def make_labeller(mode: str, csv_path: str | os.PathLike | None = None) -> Callable[[str], str]:
    if mode == "folder":
        return folder_label
    if mode == "none":
        return lambda path: UNLABELLED
    labels = read_labels_csv(csv_path)
    return lambda path: labels.get(path, UNLABELLED)


@dataclass
class Index:
    """The sorted image list with class names and shard assignment."""

    entries: list[Entry]
    class_names: list[str]
    shards: list[Shard]

    @property
    def classes(self) -> list[str]:
        return sorted({name for name in self.class_names if name != UNLABELLED})


def build_index(
    entries: Iterable[Entry], labeller: Callable[[str], str], target: int, min_images: int, max_images: int
) -> Index:
    ordered = sorted(entries, key=lambda e: path_sort_key(e.path))
    names = [labeller(entry.path) for entry in ordered]
    shards = assign_shards([entry.path for entry in ordered], target, min_images, max_images)
    return Index(ordered, names, shards)


def manifest_rows(index: Index, shard: Shard) -> list[tuple]:
    return [
        (entry.path, entry.size, entry.mtime_ns, name)
        for entry, name in zip(
            index.entries[shard.start : shard.stop], index.class_names[shard.start : shard.stop], strict=True
        )
    ]


def read_manifest(path: str | os.PathLike) -> list[tuple[str, int, int, str]]:
    return [(p, int(size), int(mtime), name) for p, size, mtime, name in read_tsv(path, MANIFEST_HEADER)]


def write_manifests(index: Index, directory: str | os.PathLike) -> tuple[int, int]:
    """Write changed manifests and delete stale ones; return (written, removed)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    wanted = {f"{shard.id}.tsv": shard for shard in index.shards}
    written = sum(
        write_tsv_if_changed(directory / name, MANIFEST_HEADER, manifest_rows(index, shard))
        for name, shard in wanted.items()
    )
    removed = 0
    for stale in directory.glob("*.tsv"):
        if stale.name not in wanted:
            stale.unlink()
            removed += 1
    return written, removed


def write_classes(index: Index, path: str | os.PathLike) -> bool:
    counts: dict[str, int] = {}
    for name in index.class_names:
        counts[name] = counts.get(name, 0) + 1
    rows = [(number, name, counts[name]) for number, name in enumerate(index.classes)]
    return write_tsv_if_changed(path, CLASSES_HEADER, rows)


def read_classes(path: str | os.PathLike) -> list[str]:
    return [name for _, name, _ in read_tsv(path, CLASSES_HEADER)]


def write_images_table(index: Index, path: str | os.PathLike) -> bool:
    """One row per image; written only when its bytes change (pyarrow output is deterministic)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    label_of = {name: number for number, name in enumerate(index.classes)}
    shard_of = [""] * len(index.entries)
    for shard in index.shards:
        shard_of[shard.start : shard.stop] = [shard.id] * len(shard)
    table = pa.table(
        {
            "path": pa.array([table_path(e.path) for e in index.entries], pa.string()),
            "size": pa.array([e.size for e in index.entries], pa.int64()),
            "mtime_ns": pa.array([e.mtime_ns for e in index.entries], pa.int64()),
            "class": pa.array([table_path(name) for name in index.class_names], pa.string()),
            "label": pa.array([label_of.get(name, -1) for name in index.class_names], pa.int64()),
            "shard": pa.array(shard_of, pa.string()),
        }
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return write_if_changed(path, buffer.getvalue())


def read_indexed_paths(path: str | os.PathLike) -> list[str]:
    import pyarrow.parquet as pq

    return pq.read_table(path, columns=["path"]).column("path").to_pylist()


def run_index(
    source: str | os.PathLike,
    extensions: Sequence[str],
    labels: str,
    label_csv: str | os.PathLike | None,
    bounds: tuple[int, int, int],
    manifest_dir: str | os.PathLike,
    images_table: str | os.PathLike,
    classes_table: str | os.PathLike,
) -> Index:
    """The whole index-images step; raises ``ValueError`` naming the problem on bad input."""
    entries = scan_tree(source, extensions)
    if not entries:
        raise ValueError(f"no images with extensions {' '.join(extensions)} under {os.fspath(source)!r}")
    labeller = make_labeller(labels, label_csv)
    index = build_index(entries, labeller, *bounds)
    if labels == "csv":
        known = {entry.path for entry in index.entries}
        listed = read_labels_csv(label_csv)
        unknown = sorted(set(listed) - known, key=path_sort_key)
        unlabelled = sum(1 for name in index.class_names if name == UNLABELLED)
        if unknown:
            log.warning("%d paths in %s are not indexed images, e.g. %s", len(unknown), label_csv, unknown[:3])
        if unlabelled:
            log.warning("%d indexed images have no row in %s: their label is -1", unlabelled, label_csv)
    written, removed = write_manifests(index, manifest_dir)
    write_images_table(index, images_table)
    write_classes(index, classes_table)
    log.info(
        "indexed %d images in %d classes into %d shards (%d manifests written, %d removed)",
        len(index.entries),
        len(index.classes),
        len(index.shards),
        written,
        removed,
    )
    return index
