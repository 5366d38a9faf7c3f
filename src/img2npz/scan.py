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
import json
import operator
import os
import pickle
import stat
import subprocess
import sys
import zipfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from img2npz.atomic import atomic_output
from img2npz.contract import LISTING_FORMAT
from img2npz.npzformat import array_layout, blob_strings, read_array, strings_blob, write_npz

SCAN_LOG_ENV = "IMG2NPZ_SCAN_LOG"
# Worker processes pay a Python start each (about 0.17 s): measured here, a serial walk takes
# 0.09 s at 20,000 files (2 workers 0.25 s), both about 0.4 s at 10^5, and 4.2 s against 2.6 s at 10^6.
PARALLEL_MIN_FILES = 100_000
PARALLEL_MIN_FOLDERS = 8
MAX_WALKERS = 16  # walker processes at most, one per core this process may use


@dataclass
class Listing:
    """Image files in component order, with their sizes and mtimes (ns); columnar, to stay small."""

    paths: list[str]
    sizes: np.ndarray
    mtimes: np.ndarray
    hashes: np.ndarray | None = None  # path_hash of every path, when the walk computed them
    # other files, by extension (lower case, "" for none): what `extensions` left out
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.paths)

    def fingerprint(self) -> str:
        """Changes whenever an image is added, removed, renamed, resized or touched, and whenever the
        count of skipped files of an image format changes (the report says how many there are, and
        a .webp added where only .jpg are indexed must not go unseen); other files change nothing."""
        return _fingerprint(strings_blob(self.paths), self.sizes, self.mtimes, self.skipped)

    def save(self, path: str | os.PathLike) -> None:
        _save_listing(path, strings_blob(self.paths), self.sizes, self.mtimes, self.hashes, self.skipped)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Listing:
        """Raises ``ValueError`` for a file that is no listing of this version."""
        layouts = array_layout(path)
        if "format" not in layouts or str(read_array(path, "format", layouts["format"])) != LISTING_FORMAT:
            raise ValueError(f"{os.fspath(path)}: not an {LISTING_FORMAT} listing")
        sizes = read_array(path, "sizes", layouts["sizes"])
        paths = blob_strings(read_array(path, "paths", layouts["paths"]), len(sizes))
        hashes = read_array(path, "hashes", layouts["hashes"]) if "hashes" in layouts else None
        skipped = json.loads(str(read_array(path, "skipped", layouts["skipped"]))) if "skipped" in layouts else {}
        return cls(paths, sizes, read_array(path, "mtimes", layouts["mtimes"]), hashes, skipped)


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


# The extensions of every format Pillow opens (``Image.registered_extensions()`` whose format is in
# ``Image.OPEN``; tests/test_scan.py compares), written out so the main Snakemake process, which
# walks the tree, need not import Pillow (0.17 s).
PILLOW_EXTENSIONS = frozenset(
    (  # noqa: SIM905 - a list of 67 words
        ".apng .avif .avifs .blp .bmp .bufr .bw .cur .dcx .dds .dib .emf .eps .fit .fits .flc .fli .ftc .ftu .gbr "
        ".gif .grib .h5 .hdf .icb .icns .ico .iim .im .j2c .j2k .jfif .jp2 .jpc .jpe .jpeg .jpf .jpg .jpx .mpeg "
        ".mpg .msp .pbm .pcd .pcx .pfm .pgm .png .pnm .ppm .ps .psd .pxr .qoi .ras .rgb .rgba .sgi .tga .tif .tiff "
        ".vda .vst .webp .wmf .xbm .xpm"
    ).split()
)
LONGEST_EXTENSION = 10  # with its dot


def extension(name: str) -> str:
    """The extension a file is skipped by: lower case, with its dot; "" for none, and for a suffix
    of digits or a long one (``frame.000123``, DICOM's ``1.2.840.10008``), which would otherwise
    make a count per file."""
    ext = os.path.splitext(name)[1].lower()
    return ext if 1 < len(ext) <= LONGEST_EXTENSION and not ext[1:].isdigit() else ""


def _skip(entry: os.DirEntry, skipped: Counter) -> None:
    """Count a file that `extensions` leaves out (a regular file, links followed; not a folder)."""
    try:
        if entry.is_file():
            skipped[extension(entry.name)] += 1
    except OSError:
        pass


class _Walk:
    """Image files below one folder, in component order, into three parallel lists; other files
    counted by extension."""

    def __init__(self, extensions: tuple[str, ...]):
        self.extensions = extensions
        self.paths: list[str] = []
        self.sizes: list[int] = []
        self.mtimes: list[int] = []
        self.skipped: Counter = Counter()

    def folder(self, prefix: str, directory: str, ancestors: frozenset[tuple[int, int]]) -> None:
        """``ancestors``: identities of the folders above, so a link back up (a loop) is not followed.
        A name with an image extension is stat'ed once, which says whether it is a file or a folder
        (about 4 us a file of the walk's 10 here; the rest is kept lean, it runs per file)."""
        try:
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return
        try:
            own = os.fstat(fd)
            ancestors = ancestors | {(own.st_dev, own.st_ino)}
            with os.scandir(fd) as listing:
                children = [c for c in listing if c.name[0] != "."]
            children.sort(key=_name)
            extensions, paths, sizes, mtimes = self.extensions, self.paths, self.sizes, self.mtimes
            for child in children:
                name = child.name
                if name.lower().endswith(extensions):
                    try:
                        info = child.stat()
                    except OSError:
                        continue
                    if stat.S_ISREG(info.st_mode):
                        paths.append(prefix + name)
                        sizes.append(info.st_size)
                        mtimes.append(info.st_mtime_ns)
                        continue
                    if not stat.S_ISDIR(info.st_mode):
                        continue
                    identity = (info.st_dev, info.st_ino)  # a folder with an image's name
                else:
                    identity = _folder_identity(child)
                    if identity is None:
                        _skip(child, self.skipped)
                        continue
                if identity not in ancestors:
                    self.folder(f"{prefix}{name}/", os.path.join(directory, name), ancestors)
        finally:
            os.close(fd)


_name = operator.attrgetter("name")


def _walk_units(root: str, extensions: tuple[str, ...], units: list[tuple[str, list[tuple[int, int]]]]) -> list:
    """Walk each unit (a folder below root, with its ancestors): per unit, its paths joined by NUL
    (UTF-8, surrogates escaped), their count, and their sizes and mtimes as int64 bytes (compact to
    pickle back from a worker, and no Python object per file), and the counts of the files skipped
    by extension. No path hash: a walk that finds the tree unchanged needs none (the index job
    computes them for a new listing)."""
    results = []
    for prefix, ancestors in units:
        walk = _Walk(extensions)
        walk.folder(prefix, os.path.join(root, prefix), frozenset(map(tuple, ancestors)))
        blob = "\0".join(walk.paths).encode("utf-8", "surrogateescape")
        sizes, mtimes = (np.array(values, np.int64).tobytes() for values in (walk.sizes, walk.mtimes))
        results.append((blob, len(walk.paths), sizes, mtimes, dict(walk.skipped)))
    return results


def _top_level(root: str, extensions: tuple[str, ...], skipped: Counter) -> tuple[list, frozenset]:
    """The root's own image names and sub-folders, in order: ("file", name) or ("dir", "name/");
    its other files counted into ``skipped``."""
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
        else:
            _skip(child, skipped)
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


def _usable_cores() -> int:
    """The cores this process may run on (Linux: its affinity, as a cluster job's cgroup sets it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


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
    blob, count, sizes, mtimes, skipped = _collect(root, extensions, workers)
    paths = blob.tobytes().decode("utf-8", "surrogateescape").split("\0") if count else []
    return Listing(paths, sizes, mtimes, None, skipped)


def _collect(
    root: str | os.PathLike, extensions: Sequence[str], workers: int | None = None
) -> tuple[np.ndarray, int, np.ndarray, np.ndarray, dict[str, int]]:
    """:func:`scan_tree`'s walk as (the paths' :func:`strings_blob`, their count, sizes, mtimes, the
    files skipped by extension): bytes and arrays, no Python object per file, so the main Snakemake
    process that only fingerprints and saves the listing holds about 32 bytes a file."""
    root = os.fspath(root)
    _record_walk(root)
    extensions = tuple(ext.lower() for ext in extensions)
    skipped: Counter = Counter()
    items, ancestors = _top_level(root, extensions, skipped)
    folders = [prefix for kind, prefix in items if kind == "dir"]
    units = [(prefix, sorted(ancestors)) for prefix in folders]
    workers = workers if workers is not None else min(MAX_WALKERS, _usable_cores())
    if workers > 1 and _looks_large(root, folders):
        unit_results = iter(_walk_in_workers(root, extensions, units, min(workers, len(units) or 1)))
    else:
        unit_results = iter(_walk_units(root, extensions, units))
    blobs: list[bytes] = []
    sizes: list[bytes] = []
    mtimes: list[bytes] = []
    count = 0
    for kind, name in items:
        if kind == "dir":
            blob, unit_count, unit_sizes, unit_mtimes, unit_skipped = next(unit_results)
            skipped.update(unit_skipped)
            if not unit_count:
                continue
        else:
            try:
                info = os.stat(os.path.join(root, name))
            except OSError:
                continue
            if not stat.S_ISREG(info.st_mode):
                continue
            blob, unit_count = name.encode("utf-8", "surrogateescape"), 1
            unit_sizes, unit_mtimes = (
                np.array([value], np.int64).tobytes() for value in (info.st_size, info.st_mtime_ns)
            )
        blobs.append(blob)
        sizes.append(unit_sizes)
        mtimes.append(unit_mtimes)
        count += unit_count
    joined = np.frombuffer(b"\0".join(blobs), np.uint8)
    del blobs
    arrays = [np.frombuffer(b"".join(parts), np.int64) for parts in (sizes, mtimes)]
    return joined, count, *arrays, dict(sorted(skipped.items()))


def _fingerprint(blob, sizes: np.ndarray, mtimes: np.ndarray, skipped: dict[str, int]) -> str:
    """:meth:`Listing.fingerprint` from the NUL-joined paths' bytes (:func:`strings_blob`)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(blob)
    digest.update(sizes.astype("<i8").tobytes())
    digest.update(mtimes.astype("<i8").tobytes())
    images = {ext: count for ext, count in skipped.items() if ext in PILLOW_EXTENSIONS}
    digest.update(_skipped_json(images).encode())
    return digest.hexdigest()


def _skipped_json(skipped: dict[str, int]) -> str:
    return json.dumps(skipped, sort_keys=True)


def _save_listing(
    path, blob: np.ndarray, sizes: np.ndarray, mtimes: np.ndarray, hashes: np.ndarray | None, skipped: dict[str, int]
) -> None:
    with atomic_output(path, durable=False) as handle:
        arrays = {"format": np.array(LISTING_FORMAT), "paths": blob, "sizes": sizes, "mtimes": mtimes}
        if hashes is not None:
            arrays["hashes"] = hashes
        arrays["skipped"] = np.array(_skipped_json(skipped))
        write_npz(handle, arrays)


SKIPPED_SHOWN = 8


def describe_skipped(skipped: dict[str, int]) -> list[str]:
    """What ``extensions`` left out, in a line or two: images Pillow could read first (the likely
    mistake), then other files, e.g. ``12 files skipped by extension: .webp 10, .tif 2; add them
    to extensions to index them``."""
    images = {ext: n for ext, n in skipped.items() if ext in PILLOW_EXTENSIONS}
    others = {ext: n for ext, n in skipped.items() if ext not in PILLOW_EXTENSIONS}
    lines = []
    if images:
        lines.append(
            f"{_files(sum(images.values()))} skipped by extension: {_counts(images)}; "
            "add them to `extensions` to index them"
        )
    if others:
        lines.append(f"{_files(sum(others.values()), 'other file')} skipped (no image extension): {_counts(others)}")
    return lines


def _files(count: int, noun: str = "file") -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _counts(skipped: dict[str, int]) -> str:
    ranked = sorted(skipped.items(), key=lambda item: (-item[1], item[0]))
    shown = ", ".join(f"{ext or '(no extension)'} {n:,}" for ext, n in ranked[:SKIPPED_SHOWN])
    return shown + (f" and {len(ranked) - SKIPPED_SHOWN} more" if len(ranked) > SKIPPED_SHOWN else "")


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
    blob, count, sizes, mtimes, skipped = _collect(root, extensions)
    if not count:
        found = "".join(f"; {line}" for line in describe_skipped(skipped))
        raise EmptyTreeError(f"no images with extensions {' '.join(extensions)} under {os.fspath(root)!r}{found}")
    value = _fingerprint(blob, sizes, mtimes, skipped)
    if save_to is not None:
        folder = Path(save_to)
        target = folder / f"{value}.npz"
        if not target.exists():
            _save_listing(target, blob, sizes, mtimes, None, skipped)
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
