"""The shard manifests on disk (``{shard}.tsv``: path, size, mtime_ns, source), and the key of every
manifest line as an array, cached per shard.

The index matches the whole tree against every manifest's keys on each run: parsing the manifests'
text for that cost 3 s a run at 10^6 images, so the keys are kept as arrays too. A key is the
path's 64-bit hash (:func:`img2npz.sharding.path_hashes`), the file's size and its mtime in ns
(:data:`KEY`). A manifest never changes once written (its shard id is its digest), so its cached
keys, ``{keys_dir}/{shard}.npy``, hold for as long as it exists. A cache that is missing,
unreadable or of another length than its manifest is rebuilt from the manifest: the manifests
stay the only record of what a shard holds.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import numpy as np

from img2npz.allocation import Line
from img2npz.atomic import atomic_output, write_if_changed
from img2npz.contract import MANIFEST_HEADER
from img2npz.sharding import path_hashes
from img2npz.tsv import format_tsv, needs_escape, parse_tsv

log = logging.getLogger(__name__)
KEY = np.dtype([("hash", "<u8"), ("size", "<i8"), ("mtime", "<i8")])


def manifest_bytes(lines: Sequence[Line], escape: bool = True) -> bytes:
    """``escape=False`` when no path holds a tab, newline or backslash (checked once)."""
    rows = ((line.path, str(line.size), str(line.mtime), line.source) for line in lines)
    return format_tsv(MANIFEST_HEADER, rows, escape)


def read_manifest(path: str | os.PathLike) -> list[Line]:
    rows = parse_tsv(Path(path).read_bytes(), MANIFEST_HEADER, os.fspath(path))
    return [Line(p, int(size), int(mtime), source) for p, size, mtime, source in rows]


def manifest_ids(manifest_dir: str | os.PathLike) -> list[str]:
    """The shard ids whose manifests are in ``manifest_dir``, sorted."""
    return sorted(
        name.removesuffix(".tsv")
        for name in os.listdir(manifest_dir)
        if name.endswith(".tsv") and not name.startswith(".")
    )


def keys_of(hashes: np.ndarray, sizes: Sequence[int], mtimes: Sequence[int]) -> np.ndarray:
    keys = np.empty(len(hashes), KEY)
    keys["hash"], keys["size"], keys["mtime"] = hashes, sizes, mtimes
    return keys


def line_keys(lines: Sequence[Line]) -> np.ndarray:
    paths = [line.path for line in lines]
    return keys_of(path_hashes(paths), [line.size for line in lines], [line.mtime for line in lines])


def _save_keys(keys_dir: str | os.PathLike, shard: str, keys: np.ndarray) -> None:
    with atomic_output(Path(keys_dir) / f"{shard}.npy", durable=False) as handle:
        np.save(handle, keys, allow_pickle=False)


def _cached_keys(path: Path, lines: int) -> np.ndarray | None:
    try:
        keys = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):  # EOFError: an empty file
        return None
    return keys if keys.dtype == KEY and keys.shape == (lines,) else None


def read_keys(manifest_dir: str | os.PathLike, keys_dir: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """The keys of every manifest in ``manifest_dir`` by shard id, from ``keys_dir`` where cached
    there (a cache rebuilt is saved). A manifest of another version, or unreadable, is left out, so
    its images count as new."""
    found: dict[str, np.ndarray] = {}
    if not os.path.isdir(manifest_dir):
        return found
    for shard in manifest_ids(manifest_dir):
        manifest = Path(manifest_dir) / f"{shard}.tsv"
        try:
            lines = manifest.read_bytes().count(b"\n") - 1  # after the header
            keys = _cached_keys(Path(keys_dir) / f"{shard}.npy", lines) if keys_dir else None
            cached = keys is not None
            if keys is None:
                keys = line_keys(read_manifest(manifest))
        except (OSError, ValueError) as error:
            log.warning("manifest %s.tsv is not readable (%s): its images are decoded again", shard, error)
            continue
        if keys_dir and not cached:
            try:
                _save_keys(keys_dir, shard, keys)
            except OSError as error:  # the cache is only an optimisation
                log.warning("could not cache the keys of %s.tsv (%s)", shard, error)
        found[shard] = keys
    return found


def write_new_manifests(
    lines: Mapping[str, Sequence[Line]],
    shards: Collection[str],
    directory: str | os.PathLike,
    keys_dir: str | os.PathLike | None = None,
) -> tuple[int, int]:
    """Write the new shards' manifests ``lines`` (and their keys), then delete those of shards not
    in ``shards``; return (written, removed). A manifest is never rewritten: its shard is immutable."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    escape = needs_escape("\0".join(line.path for shard_lines in lines.values() for line in shard_lines))
    written = 0
    for shard, shard_lines in lines.items():
        written += write_if_changed(directory / f"{shard}.tsv", manifest_bytes(shard_lines, escape), durable=False)
        if keys_dir:
            _save_keys(keys_dir, shard, line_keys(shard_lines))
    removed = 0
    for stale in directory.glob("*.tsv"):
        if stale.stem not in shards:
            stale.unlink()
            removed += 1
    if keys_dir:
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(keys_dir):
                if entry.name.removesuffix(".npy") not in shards:
                    os.unlink(entry.path)
    return written, removed
