"""``results/shards/.kept/``: every finished shard under a second name, so the next build can reuse its rows.

Snakemake deletes a job's outputs before it runs it, so every shard job leaves a second name of its
finished npz here, ``{shard}.{time_ns}.npz`` (a hard link: no copy, no space; a copy only where the
file system has no hard links). A job never replaces a kept file, it adds a version: a neighbour may
still be reading it. Once every shard job has run, the merge calls :func:`prune`: files of shards
that no longer exist go (from ``results/shards/`` and from ``.kept/``), only the newest kept version
of each shard stays, ``layout.tsv`` records their path ranges and first rows in the dataset, and
``dataset.json`` which ``dataset.npz`` those rows refer to (its path, size and images CRC-32), which
the next run's jobs read to find their rows (:mod:`img2npz.reuse`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from img2npz.atomic import write_bytes_atomic
from img2npz.contract import LAYOUT_HEADER, ShardStats, path_sort_key
from img2npz.npzformat import array_layout
from img2npz.tsv import read_tsv, write_tsv

KEPT = ".kept"
LAYOUT = "layout.tsv"
DATASET_STAMP = "dataset.json"  # which dataset.npz the layout's rows refer to: path, size, images CRC-32
# The files a shard job writes, named by the shard id (16 hex digits); nothing else is ever pruned.
SHARD_FILE = re.compile(r"^([0-9a-f]{16})\.(npz|failures\.tsv|stats\.json)$")
KEPT_FILE = re.compile(r"^([0-9a-f]{16})\.([0-9]+)\.npz$")
STAGING = re.compile(r"^\.[0-9a-f]{16}\.npz\.[0-9]+\.tmp$")


def kept_dir(shards_dir: str | os.PathLike) -> Path:
    return Path(shards_dir) / KEPT


def keep(npz: str | os.PathLike) -> str:
    """Add the finished shard ``npz`` to ``.kept/`` as a new version; return ``"link"`` or ``"copy"``."""
    npz = Path(npz)
    folder = kept_dir(npz.parent)
    folder.mkdir(exist_ok=True)
    target = folder / f"{npz.stem}.{time.time_ns()}.npz"
    try:
        os.link(npz, target)
        return "link"
    except OSError:
        staging = folder / f".{npz.name}.{os.getpid()}.tmp"
        shutil.copyfile(npz, staging)
        os.replace(staging, target)
        return "copy"


def _versions(folder: Path, shard: str) -> list[Path]:
    """Kept versions of ``shard``, newest first."""
    found = [(int(m.group(2)), p) for p in folder.glob(f"{shard}.*.npz") if (m := KEPT_FILE.match(p.name))]
    return [path for _, path in sorted(found, reverse=True)]


def candidates(shards_dir: str | os.PathLike, shard: str, first_path: str, last_path: str) -> list[tuple[Path, int]]:
    """Kept npz files that may hold rows of the shard ``shard`` spanning ``first_path..last_path``:
    its own versions, newest first, then the shards whose range in the last merged layout overlaps
    it; each with its first row in the merged dataset (-1 where the layout does not know it)."""
    folder = kept_dir(shards_dir)
    found = {path: -1 for path in _versions(folder, shard)}
    with contextlib.suppress(OSError, ValueError):
        low, high = path_sort_key(first_path), path_sort_key(last_path)
        for name, first, last, row in read_tsv(folder / LAYOUT, LAYOUT_HEADER):
            path = folder / name
            if path in found or (path_sort_key(first) <= high and path_sort_key(last) >= low and path.is_file()):
                found[path] = int(row)
    return list(found.items())


def merged_images(folder: Path, dtype: np.dtype, row_shape: tuple) -> tuple[str, int] | None:
    """(path, offset of row 0) of the dataset the layout's rows refer to, if it is still that file:
    the same size and the same CRC-32 of its images (from the zip's directory; Snakemake touches
    outputs after their job, so an mtime would not do)."""
    try:
        stamp = json.loads((folder / DATASET_STAMP).read_text())
        if os.stat(stamp["path"]).st_size != stamp["size"]:
            return None
        images = array_layout(stamp["path"])["images"]
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile):
        return None
    if images.offset is None or images.dtype != dtype or images.shape[1:] != row_shape:
        return None  # compressed (merge.compress) or another pixel config
    return (stamp["path"], images.offset) if images.crc32 == stamp["images_crc32"] else None


def prune(
    shards_dir: str | os.PathLike, shards: Sequence[tuple[str, str, str, int]], dataset: str | os.PathLike | None
) -> int:
    """Remove the files of shards not in ``shards`` (id, first path, last path, first row in
    ``dataset``) from the shards folder, and from ``.kept/`` all but the newest version of each shard
    in ``shards``; write the kept layout and the dataset's stamp. Return the number of files removed.
    Call it only when no shard job runs, right after the merge that wrote ``dataset``."""
    folder = Path(shards_dir)
    kept = kept_dir(folder)
    wanted = {shard: (first, last, row) for shard, first, last, row in shards}
    removed = 0
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(folder):
            match = SHARD_FILE.match(entry.name)
            if match and match.group(1) not in wanted:
                os.unlink(entry.path)
                removed += 1
    kept.mkdir(exist_ok=True)
    versions: dict[str, list[tuple[int, str]]] = {}
    for entry in os.scandir(kept):
        if match := KEPT_FILE.match(entry.name):
            versions.setdefault(match.group(1), []).append((int(match.group(2)), entry.name))
        elif STAGING.match(entry.name):  # a copy cut short by a killed job
            os.unlink(entry.path)
            removed += 1
    newest = {shard: max(found)[1] for shard, found in versions.items() if shard in wanted}
    for shard, found in versions.items():
        for _, name in found:
            if newest.get(shard) != name:
                os.unlink(kept / name)
                removed += 1
    layout = sorted(((name, *wanted[shard]) for shard, name in newest.items()), key=lambda row: path_sort_key(row[1]))
    write_tsv(kept / LAYOUT, LAYOUT_HEADER, layout)
    stamp = {}
    if dataset is not None:
        crc = array_layout(dataset)["images"].crc32
        stamp = {"path": os.fspath(dataset), "size": os.stat(dataset).st_size, "images_crc32": crc}
    write_bytes_atomic(kept / DATASET_STAMP, json.dumps(stamp).encode(), durable=False)
    return removed


def dataset_rows(stats: Mapping[str, ShardStats]) -> list[tuple[str, str, str, int]]:
    """(id, first path, last path, first row in the merged dataset) of every shard: shards are
    contiguous runs of the index's order, so a shard starts where the ones before it end."""
    ordered = sorted(stats.items(), key=lambda item: path_sort_key(item[1].first_path))
    rows, start = [], 0
    for shard, account in ordered:
        rows.append((shard, account.first_path, account.last_path, start))
        start += account.images
    return rows
