"""Walk an image tree fast, in the index's path order, and remember what was found.

The ``stat`` that gives each file's size and mtime is what costs at 10^6 files (a few microseconds
of kernel time each), so stats are taken relative to an open directory, and a large tree is walked
by several processes, each taking a share of the top-level folders. The order is the index's
component order: a folder's children sorted by name, sub-folders expanded where they sort, so
``cat/...`` precedes ``cat-big/...``.

The main Snakemake process walks the tree once per invocation for the fingerprint and saves the
:class:`Listing`; the index job loads it instead of walking again.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import stat
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from img2npz.atomic import atomic_output
from img2npz.contract import LISTING_FORMAT
from img2npz.npzformat import array_layout, blob_strings, read_array, strings_blob, write_npz
from img2npz.sharding import path_hashes

SCAN_LOG_ENV = "IMG2NPZ_SCAN_LOG"
PARALLEL_MIN_FILES = 20_000
PARALLEL_MIN_FOLDERS = 8


@dataclass
class Listing:
    """Image files in component order, with their sizes and mtimes (ns); columnar, to stay small."""

    paths: list[str]
    sizes: np.ndarray
    mtimes: np.ndarray
    hashes: np.ndarray | None = None  # path_hash of every path, when the walk computed them

    def __len__(self) -> int:
        return len(self.paths)

    def fingerprint(self) -> str:
        """Changes whenever an image is added, removed, renamed, resized or touched."""
        digest = hashlib.blake2b(digest_size=16)
        digest.update("\0".join(self.paths).encode("utf-8", "surrogateescape"))
        digest.update(self.sizes.astype("<i8").tobytes())
        digest.update(self.mtimes.astype("<i8").tobytes())
        return digest.hexdigest()

    def save(self, path: str | os.PathLike) -> None:
        with atomic_output(path, durable=False) as handle:
            arrays = {
                "format": np.array(LISTING_FORMAT),
                "paths": strings_blob(self.paths),
                "sizes": self.sizes,
                "mtimes": self.mtimes,
            }
            if self.hashes is not None:
                arrays["hashes"] = self.hashes
            write_npz(handle, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Listing:
        """Raises ``ValueError`` for a file that is no listing of this version."""
        layouts = array_layout(path)
        if "format" not in layouts or str(read_array(path, "format", layouts["format"])) != LISTING_FORMAT:
            raise ValueError(f"{os.fspath(path)}: not an {LISTING_FORMAT} listing")
        sizes = read_array(path, "sizes", layouts["sizes"])
        paths = blob_strings(read_array(path, "paths", layouts["paths"]), len(sizes))
        hashes = read_array(path, "hashes", layouts["hashes"]) if "hashes" in layouts else None
        return cls(paths, sizes, read_array(path, "mtimes", layouts["mtimes"]), hashes)


def _record_walk(root: str) -> None:
    """Append a line per walk to the file named by $IMG2NPZ_SCAN_LOG: tests and benchmarks count walks
    with it, to prove that job processes never walk the tree again."""
    log_path = os.environ.get(SCAN_LOG_ENV)
    if log_path:
        with open(log_path, "a", encoding="utf-8") as handle:
            handle.write(f"{os.getpid()}\t{' '.join(sys.argv[:3])}\n")


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _folder_identity(entry: os.DirEntry) -> tuple[int, int] | None:
    """(device, inode) of a folder entry, links followed; None when it is not a readable folder."""
    if not _is_dir(entry):
        return None
    try:
        info = entry.stat()
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _identity(path: str) -> tuple[int, int]:
    info = os.stat(path)
    return info.st_dev, info.st_ino


class _Walk:
    """Image files below one folder, in component order, into three parallel lists."""

    def __init__(self, extensions: tuple[str, ...]):
        self.extensions = extensions
        self.paths: list[str] = []
        self.sizes: list[int] = []
        self.mtimes: list[int] = []

    def folder(self, prefix: str, directory: str, ancestors: frozenset[tuple[int, int]]) -> None:
        """``ancestors``: identities of the folders above, so a link back up (a loop) is not followed."""
        try:
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return
        try:
            own = os.fstat(fd)
            ancestors = ancestors | {(own.st_dev, own.st_ino)}
            with os.scandir(fd) as listing:
                children = sorted((c for c in listing if not c.name.startswith(".")), key=_name)
            for child in children:
                name = child.name
                identity = _folder_identity(child)
                if identity is not None:
                    if identity not in ancestors:
                        self.folder(f"{prefix}{name}/", os.path.join(directory, name), ancestors)
                elif name.lower().endswith(self.extensions):
                    try:
                        info = child.stat()
                    except OSError:
                        continue
                    if stat.S_ISREG(info.st_mode):
                        self.paths.append(f"{prefix}{name}")
                        self.sizes.append(info.st_size)
                        self.mtimes.append(info.st_mtime_ns)
        finally:
            os.close(fd)


def _name(entry: os.DirEntry) -> str:
    return entry.name


def _walk_units(root: str, extensions: tuple[str, ...], units: list[tuple[str, list[tuple[int, int]]]]) -> list:
    """Walk each unit (a folder below root, with its ancestors): per unit, its paths joined by NUL, their
    count, sizes, mtimes and path hashes (compact to pickle back from a worker)."""
    results = []
    for prefix, ancestors in units:
        walk = _Walk(extensions)
        walk.folder(prefix, os.path.join(root, prefix), frozenset(map(tuple, ancestors)))
        hashes = path_hashes(walk.paths).tobytes()
        results.append(("\0".join(walk.paths), len(walk.paths), walk.sizes, walk.mtimes, hashes))
    return results


def _top_level(root: str, extensions: tuple[str, ...]) -> tuple[list, frozenset]:
    """The root's own image names and sub-folders, in order: ("file", name) or ("dir", "name/")."""
    root_id = _identity(root)
    items: list[tuple[str, object]] = []
    with os.scandir(root) as listing:
        children = sorted((c for c in listing if not c.name.startswith(".")), key=_name)
    for child in children:
        identity = _folder_identity(child)
        if identity is not None:
            if identity != root_id:
                items.append(("dir", f"{child.name}/"))
        elif child.name.lower().endswith(extensions):
            items.append(("file", child.name))
    return items, frozenset({root_id})


def _looks_large(root: str, folders: list[str]) -> bool:
    if len(folders) < PARALLEL_MIN_FOLDERS:
        return False
    sample = folders[:: max(1, len(folders) // 4)][:4]
    try:
        entries = sum(len(os.listdir(os.path.join(root, folder))) for folder in sample)
    except OSError:
        return False
    return entries / len(sample) * len(folders) >= PARALLEL_MIN_FILES


def _walk_in_workers(root: str, extensions: tuple[str, ...], units: list, workers: int) -> list:
    """Walk units in ``python -m img2npz.scan`` subprocesses (plain subprocesses: unlike multiprocessing
    they behave the same whatever the main module is, Snakemake's included). Round-robin keeps the
    load even; results come back in unit order."""
    groups = [list(range(first, len(units), workers)) for first in range(workers)]
    procs = [
        subprocess.Popen([sys.executable, "-m", "img2npz.scan"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        for _ in groups
    ]
    for proc, group in zip(procs, groups, strict=True):
        proc.stdin.write(pickle.dumps((root, extensions, [units[i] for i in group]), pickle.HIGHEST_PROTOCOL))
        proc.stdin.close()
    results: list = [None] * len(units)
    for proc, group in zip(procs, groups, strict=True):
        output = proc.stdout.read()
        if proc.wait() != 0:
            raise RuntimeError(f"a walker process for {root} failed (exit {proc.returncode})")
        for index, result in zip(group, pickle.loads(output), strict=True):
            results[index] = result
    return results


def _worker_main() -> None:
    root, extensions, units = pickle.loads(sys.stdin.buffer.read())
    sys.stdout.buffer.write(pickle.dumps(_walk_units(root, extensions, units), pickle.HIGHEST_PROTOCOL))


def scan_tree(root: str | os.PathLike, extensions: Sequence[str], workers: int | None = None) -> Listing:
    """Every regular image file below ``root`` in component order.

    Skips hidden files and folders (which covers macOS ``._*`` files), broken links, non-regular files
    and folders with image-like names. Links to folders are followed (as ``ImageFolder`` does), except
    a link back to a folder above it, so a link loop ends. Large trees are walked by several processes,
    one share of the top-level folders each; the result does not depend on how many.
    """
    root = os.fspath(root)
    _record_walk(root)
    extensions = tuple(ext.lower() for ext in extensions)
    items, ancestors = _top_level(root, extensions)
    folders = [prefix for kind, prefix in items if kind == "dir"]
    units = [(prefix, sorted(ancestors)) for prefix in folders]
    workers = workers if workers is not None else min(4, os.cpu_count() or 1)
    if workers > 1 and _looks_large(root, folders):
        unit_results = iter(_walk_in_workers(root, extensions, units, min(workers, len(units) or 1)))
    else:
        unit_results = iter(_walk_units(root, extensions, units))
    paths: list[str] = []
    sizes: list[int] = []
    mtimes: list[int] = []
    hashes: list[bytes] = []
    for kind, name in items:
        if kind == "dir":
            blob, count, unit_sizes, unit_mtimes, unit_hashes = next(unit_results)
            if count:
                paths.extend(blob.split("\0"))
                sizes.extend(unit_sizes)
                mtimes.extend(unit_mtimes)
                hashes.append(unit_hashes)
            continue
        try:
            info = os.stat(os.path.join(root, name))
        except OSError:
            continue
        if stat.S_ISREG(info.st_mode):
            paths.append(name)
            sizes.append(info.st_size)
            mtimes.append(info.st_mtime_ns)
            hashes.append(path_hashes([name]).tobytes())
    all_hashes = np.frombuffer(b"".join(hashes), np.uint64) if hashes else np.zeros(0, np.uint64)
    return Listing(paths, np.array(sizes, np.int64), np.array(mtimes, np.int64), all_hashes)


class EmptyTreeError(ValueError):
    """The source holds no image with the configured extensions."""


def tree_fingerprint(
    root: str | os.PathLike, extensions: Sequence[str], save_to: str | os.PathLike | None = None
) -> str:
    """Fingerprint of the tree, or ``"missing"``; saves the listing to ``save_to/<fingerprint>.npz``
    (removing older ones) so that the index job can load it instead of walking again.

    Raises :class:`EmptyTreeError` when the tree has no image, so the run stops before any job.
    """
    if not os.path.isdir(root):
        return "missing"
    listing = scan_tree(root, extensions)
    if not len(listing):
        raise EmptyTreeError(f"no images with extensions {' '.join(extensions)} under {os.fspath(root)!r}")
    value = listing.fingerprint()
    if save_to is not None:
        folder = Path(save_to)
        target = folder / f"{value}.npz"
        if not target.exists():
            listing.save(target)
        for old in folder.glob("*.npz"):
            if old != target:
                old.unlink(missing_ok=True)
    return value


def listing_path(folder: str | os.PathLike, fingerprint: str) -> Path:
    return Path(folder) / f"{fingerprint}.npz"


def saved_listing(folder: str | os.PathLike, fingerprint: str) -> Listing | None:
    """The walk the main process saved for ``fingerprint``, or None (not saved, or unreadable)."""
    try:
        return Listing.load(listing_path(folder, fingerprint))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None


if __name__ == "__main__":
    _worker_main()
