"""The rows a compaction copies from older shards instead of decoding them again.

A compaction's manifest line names its source row, ``{shard}:{row}`` (:mod:`img2npz.allocation`).
The row is copied, with every per-row member (:data:`~img2npz.contract.ROW_MEMBERS`: the CRC-32 and
sha256 taken when it was decoded travel with it), only where its key still holds: the same path,
size and mtime, and the same decoder key (the pixel config, the decompression-bomb limit, the
filters, Pillow's version and the decoder's: all that shapes a row's bytes). A source shard that is
missing, truncated, of another version or built under another key is passed over with one log
line, never an error: the image is decoded instead. A row that failed in its source shard is a
failure again, with the same reason, without decoding it.
"""

from __future__ import annotations

import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from img2npz.allocation import Line
from img2npz.contract import FAILURE_HEADER, ROW_MEMBERS, ShardMeta
from img2npz.dtypes import uint8_of
from img2npz.npzformat import ArrayLayout, array_layout, read_array, read_rows
from img2npz.tsv import read_tsv

log = logging.getLogger(__name__)
OPEN_SHARDS = 8  # source shards held open at once (a compaction reads them in path order)


@dataclass(frozen=True)
class CopiedRow:
    data: bytes
    values: dict[str, np.ndarray]
    counts: np.ndarray  # (3, 256) uint8 value counts, for the new shard's histogram


@dataclass(frozen=True)
class CopiedFailure:
    stage: str
    error: str


@dataclass
class _Source:
    npz: str
    layouts: dict[str, ArrayLayout]
    keys: list[tuple[str, int, int]]
    ok: np.ndarray
    values: dict[str, np.ndarray]
    failures: dict[str, tuple[str, str]]


class RowSources:
    """The shards under ``shards_dir`` that compaction lines name, opened as needed."""

    def __init__(self, shards_dir: str | os.PathLike, decoder: dict, pixel: dict):
        self.shards_dir = Path(shards_dir)
        self.decoder, self.pixel = decoder, pixel
        self._open: dict[str, _Source | None] = {}

    def __enter__(self) -> RowSources:
        return self

    def __exit__(self, *_) -> None:
        self._open.clear()

    def find(self, line: Line) -> CopiedRow | CopiedFailure | None:
        """The row ``line.source`` names, if its key still holds; else None (decode it)."""
        shard, _, row_text = line.source.partition(":")
        source = self._source(shard)
        row = int(row_text) if row_text.isdigit() else -1
        if source is None or not 0 <= row < len(source.keys) or source.keys[row] != line.key:
            return None
        if not source.ok[row]:
            failure = source.failures.get(line.path)
            return CopiedFailure(*failure) if failure else None
        stored = read_rows(source.npz, "images", [row], source.layouts["images"])[0]
        pixels = uint8_of(stored, self.pixel["dtype"], self.pixel["normalize"])
        if pixels is None:
            return None
        counts = np.stack([np.bincount(pixels[..., channel].reshape(-1), minlength=256) for channel in range(3)])
        values = {name: array[row] for name, array in source.values.items()}
        return CopiedRow(stored.tobytes(), values, counts.astype(np.int64))

    def _source(self, shard: str) -> _Source | None:
        if shard not in self._open:
            if len(self._open) >= OPEN_SHARDS:
                self._open.pop(next(iter(self._open)))
            self._open[shard] = self._load(shard)
        return self._open[shard]

    def _load(self, shard: str) -> _Source | None:
        npz = self.shards_dir / f"{shard}.npz"
        try:
            layouts = array_layout(npz)
            meta = ShardMeta.from_json(str(read_array(npz, "meta", layouts["meta"])))
            if meta.decoder != self.decoder:
                log.info("shard %s was built under another decoder key: its rows are decoded again", shard)
                return None
            if layouts["images"].offset is None:
                raise ValueError("images member is compressed")

            def column(name: str) -> np.ndarray:
                return read_array(npz, name, layouts[name])

            keys = list(
                zip(column("paths").tolist(), column("sizes").tolist(), column("mtimes_ns").tolist(), strict=True)
            )
            values = {member.name: column(member.name) for member in ROW_MEMBERS}
            ok = column("ok")
            failed = self.shards_dir / f"{shard}.failures.tsv"
            failures = {}
            if not ok.all():
                failures = {path: (stage, error) for path, stage, error in read_tsv(failed, FAILURE_HEADER)}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
            log.info("shard %s cannot be copied from (%s): its rows are decoded again", shard, error)
            return None
        return _Source(os.fspath(npz), layouts, keys, ok, values, failures)
