"""The shard files on disk: those of shards no longer on any manifest are removed after the merge,
and the ``shards`` layout's dataset folder holds a link to every shard its row table names.

Only files a shard job writes, named by a shard id (16 hex digits), and the temporary files of a
killed job (``.{name}.*.tmp``), are ever removed from ``results/shards/``; the merge prunes them
once every shard job of the run has finished, so a compaction has read the rows it copies.
A dataset folder's shard files are hard links (the same bytes, no copy, and the folder stays whole
when moved or copied); where the file system has none, copies.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Collection, Sequence
from pathlib import Path

LINKED = "shards"  # the dataset folder's subfolder of shard files
SHARD_FILE = re.compile(r"^([0-9a-f]{16})\.(npz|failures\.tsv|stats\.json)$")
TEMPORARY = re.compile(r"^\.([0-9a-f]{16})\.(npz|failures\.tsv|stats\.json)\..+\.tmp$")
OLD_KEPT = ".kept"  # the second names of shards up to img2npz-shard/5, no longer read


def prune(shards_dir: str | os.PathLike, shards: Collection[str]) -> int:
    """Remove the files of shards not in ``shards`` (ids) and killed jobs' temporary files from
    ``shards_dir``; return how many. Call it only when no shard job runs."""
    removed = 0
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(shards_dir):
            match = SHARD_FILE.match(entry.name) or TEMPORARY.match(entry.name)
            if match and (match.group(1) not in shards or entry.name.startswith(".")):
                os.unlink(entry.path)
                removed += 1
    old = Path(shards_dir) / OLD_KEPT
    if old.is_dir():
        removed += sum(1 for _ in old.iterdir())
        shutil.rmtree(old)
    return removed


def _same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def link_shards(npzs: Sequence[str | os.PathLike], dataset_dir: str | os.PathLike) -> int:
    """Give each shard ``npz`` a name in ``dataset_dir/shards/`` (a hard link, else a copy, each
    made under a temporary name and renamed); return how many were added."""
    folder = Path(dataset_dir) / LINKED
    folder.mkdir(parents=True, exist_ok=True)
    added = 0
    for npz in npzs:
        target = folder / Path(npz).name
        if _same_file(npz, target):
            continue
        staging = folder / f".{target.name}.{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            staging.unlink()
        try:
            os.link(npz, staging)
        except OSError:
            shutil.copyfile(npz, staging)
        os.replace(staging, target)
        added += 1
    return added


def unlink_others(dataset_dir: str | os.PathLike, names: Collection[str]) -> int:
    """Remove the dataset folder's shard files not in ``names`` (file names); return how many."""
    removed = 0
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(Path(dataset_dir) / LINKED):
            if entry.name not in names:
                os.unlink(entry.path)
                removed += 1
    return removed


def other_layout(dataset: str | os.PathLike, layout: str) -> Path:
    """Where the layout not configured keeps its dataset, beside this one: ``results/dataset.npz``
    has ``results/dataset/``, and ``results/dataset/index.npz`` has ``results/dataset.npz``."""
    dataset = Path(dataset)
    return dataset.with_suffix("") if layout == "file" else dataset.parent.with_suffix(".npz")


def remove_other_layout(path: str | os.PathLike) -> bool:
    """Remove the dataset of the layout not configured (``dataset.npz``, or the shards layout's
    folder, whose links would keep the bytes of pruned shards); return whether there was one."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
        return True
    if path.exists() or path.is_symlink():
        path.unlink()
        return True
    return False
