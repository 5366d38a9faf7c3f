"""What validate-report looks at in a dataset: each fact read or computed once, when a check (or
the report) first asks for it, so checks stay small and independent of the order they run in.

The pixels are read in one streaming pass (:mod:`img2npz.pixelpass`); the path lists of the
dataset, the failure file and the index are walked together in their shared index order. Memory
holds a few dozen bytes per image (labels, fingerprints, CRCs), never the pixels.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property, partial

import numpy as np

from img2npz import cropcheck, neardup, nearrule
from img2npz.changes import Catalogue, previous_rows
from img2npz.contract import FAILURE_HEADER, FILTER_STAGE, UNLABELLED_LABEL, CopyCheck, DatasetMeta, table_path
from img2npz.cropsearch import window_reader
from img2npz.joblog import release_free_memory
from img2npz.nearrule import SEARCH_THREADS, HashColumns, NearRule
from img2npz.npzformat import ArrayLayout, array_layout, iter_chunks, read_array, read_rows, read_span_rows
from img2npz.pathkeys import order_breaks, path_keys
from img2npz.pixelpass import PixelScan, duplicate_groups, fingerprints_of, scan_images, scan_shards
from img2npz.treedigest import DIGEST_BYTES
from img2npz.tsv import iter_tsv


class Counted:
    """An iterator that counts what has been taken from it, so a stream is read once for both."""

    def __init__(self, items: Iterator[str]):
        self._items = iter(items)
        self.count = 0

    def __iter__(self) -> Counted:
        return self

    def __next__(self) -> str:
        item = next(self._items)
        self.count += 1
        return item


def account_for_index(dataset: Iterator[str], failures: Iterator[str], indexed: Iterator[str]) -> dict:
    """Walk three path lists in index order; every indexed path must be in exactly one of the others."""
    missing, extra, both = [], [], []
    next_data, next_fail = next(dataset, None), next(failures, None)
    count = 0
    for path in indexed:
        count += 1
        in_data, in_fail = next_data == path, next_fail == path
        if in_data:
            next_data = next(dataset, None)
        if in_fail:
            next_fail = next(failures, None)
        if in_data and in_fail:
            both.append(path)
        elif not (in_data or in_fail):
            missing.append(path)
    for rest, first in ((dataset, next_data), (failures, next_fail)):
        if first is not None:
            extra.append(first)
            extra.extend(rest)
    return {
        "indexed": count,
        "missing": missing[:20],
        "extra": extra[:20],
        "in_both": both[:20],
        "problems": len(missing) + len(extra) + len(both),
    }


def _indexed_paths(images_table: str) -> Iterator[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(images_table).iter_batches(columns=["path"], batch_size=65536):
        yield from batch.column(0).to_pylist()
    pa.default_memory_pool().release_unused()  # the reader's buffers, kept by the pool otherwise


SURROGATES = (0xDC80, 0xDCFF)  # where surrogateescape puts the bytes of a file name that is not UTF-8
LISTED = 50  # groups (and paths per group) and images named in validation.json and the report


@dataclass(frozen=True)
class NearDuplicates:
    """The near-duplicate pairs of rows under ``rule`` (:mod:`img2npz.nearrule`), and their groups
    (rows joined by pairs, transitively), each group ascending, groups by their first row."""

    rule: NearRule
    first: np.ndarray
    second: np.ndarray
    distance: np.ndarray
    groups: list[list[int]]


def near_duplicates_of(
    columns: HashColumns, rule: NearRule, threads: int = 1, among: np.ndarray | None = None
) -> NearDuplicates:
    """All the near-duplicates; ``among``: only those of these rows (ascending), when every pair of
    the whole is known to lie among them (the same pairs and groups as a search of the whole)."""
    if among is not None:
        first, second, distance = nearrule.pairs(rule, columns.subset(among), threads)
        first, second = among[first], among[second]
    else:
        first, second, distance = nearrule.pairs(rule, columns, threads)
    count = len(columns.hashes)
    rows = np.unique(np.concatenate([first, second]))
    roots = neardup.groups(count, first, second)[rows]
    order = np.lexsort((rows, roots))
    rows, roots = rows[order], roots[order]
    cuts = np.flatnonzero(np.diff(roots)) + 1
    groups = [group.tolist() for group in np.split(rows, cuts)] if len(rows) else []
    return NearDuplicates(rule, first, second, distance, groups)


def unchanged_rows(previous: Catalogue, old_of: np.ndarray, fingerprints: np.ndarray) -> np.ndarray:
    """Whether each row is in the ``previous`` catalogue (``old_of``: its row there, or -1;
    :func:`img2npz.changes.previous_rows`) with the same pixel ``fingerprints``. The catalogue is
    the last passed validation's: its fingerprints are of bytes that validation read or checked."""
    same = old_of >= 0
    same[same] = (previous.fingerprints[old_of[same]] == fingerprints[same]).all(axis=1)
    return same


def rows_to_search(previous: Catalogue, old_of: np.ndarray, fingerprints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the rows to look up, the previous pairs that still hold as (k, 2) rows of this dataset).

    A row is new unless the previous dataset had its path with the same pixel fingerprint. A
    previous pair holds when both its rows are still there; where one is gone, the other is looked
    up again (the pairs kept only one copy of each set of equal hashes: its others are joined
    through it)."""
    same = unchanged_rows(previous, old_of, fingerprints)
    new_of = np.full(previous.count, -1, np.int64)
    new_of[old_of[same]] = np.flatnonzero(same)
    pairs = new_of[np.asarray(previous.near_pairs, np.int64).reshape(-1, 2)]
    whole = (pairs >= 0).all(axis=1)
    orphans = pairs[~whole][pairs[~whole] >= 0]
    queries = np.union1d(np.flatnonzero(~same), orphans).astype(np.int64)
    return queries, pairs[whole]


class Facts:
    """The dataset (with its ``failures.tsv`` and the index's ``images.parquet``) as the checks see
    it: ``npz`` is ``dataset.npz`` (``layout`` ``file``) or the ``shards`` layout's ``index.npz``,
    whose members are the same but for ``images`` (rows of the shard files it names). ``pixel``
    and ``label_mode`` are this run's config; ``threads`` scan the pixels. ``verified``: shard id
    -> npz mtime of the shards an earlier run verified (the ``shards`` layout reads only the
    others); ``previous``: the last checked dataset's catalogue (its near-duplicate pairs);
    ``copied``: the merge's :class:`~img2npz.contract.CopyCheck` (where it proves the ``file``
    layout's copy as it is now, the pass reads no pixel, or with a proof of an earlier release only
    the rows it hashes). Until
    the ``members`` and ``shapes_and_dtypes`` checks have passed, only :attr:`layouts` and
    :attr:`image_layouts` may be asked for."""

    def __init__(
        self,
        npz: str,
        failures: str,
        images_table: str,
        pixel: dict,
        label_mode: str,
        threads: int = 1,
        layout: str = "file",
        verified: Mapping[str, int] | None = None,
        previous: Catalogue | None = None,
        copied: CopyCheck | None = None,
    ):
        self.npz, self.failures, self.images_table = npz, failures, images_table
        self.copied = copied
        self.pixel, self.label_mode, self.threads = pixel, label_mode, threads
        self.sharded = layout == "shards"
        self.verified = dict(verified or {})
        self.previous = previous
        self._near_lock = threading.Lock()

    @cached_property
    def layouts(self) -> dict[str, ArrayLayout]:
        return array_layout(self.npz)

    @cached_property
    def shard_files(self) -> list[str]:
        """The ``shards`` layout's shard files, by their number in the row table."""
        folder = os.path.dirname(self.npz)
        return [os.path.join(folder, name) for name in self.member("shards").tolist()]

    @cached_property
    def placement(self) -> tuple[np.ndarray, np.ndarray]:
        """The ``shards`` layout's (shard number, row there) of every dataset row."""
        return self.member("shard"), self.member("row")

    @cached_property
    def old_rows(self) -> np.ndarray:
        """Each row's row in the ``previous`` catalogue, -1 where it is not there (matched by path
        key once, for the pixel pass, the near-duplicate search and the change report)."""
        return previous_rows(self.previous, self.path_keys)

    @cached_property
    def _path_pass(self) -> tuple[np.ndarray, tuple[int, str | None]]:
        """One pass over ``paths``, a chunk at a time: every path's key, and the index-order breaks."""
        keys, breaks, example, last = [], 0, None, None
        for chunk in iter_chunks(self.npz, "paths", layout=self.layouts["paths"]):
            keys.append(path_keys(chunk))
            found, first = order_breaks(chunk, last)
            breaks, example, last = breaks + found, example or first, chunk[-1:]
        return (np.concatenate(keys) if keys else np.zeros(0, np.uint64)), (breaks, example)

    @property
    def path_keys(self) -> np.ndarray:
        """:func:`img2npz.pathkeys.path_keys` of every row's path."""
        return self._path_pass[0]

    @cached_property
    def shard_layouts(self) -> list[dict[str, ArrayLayout]]:
        """Every shard file's members, read once (their zip directories)."""
        return [array_layout(path) for path in self.shard_files]

    @cached_property
    def image_layouts(self) -> list[ArrayLayout]:
        """Where the pixels are: ``dataset.npz``'s ``images``, or every shard file's."""
        if not self.sharded:
            return [self.layouts["images"]]
        return [layouts["images"] for layouts in self.shard_layouts]

    def member(self, name: str) -> np.ndarray:
        """A small member, read whole."""
        return read_array(self.npz, name, self.layouts[name])

    @cached_property
    def meta(self) -> DatasetMeta:
        """``meta``, with None for every key it lacks (the checks say what is wrong)."""
        return DatasetMeta.from_json(str(self.member("meta")), strict=False)

    @property
    def count(self) -> int:
        rows = self.layouts["labels" if self.sharded else "images"]
        return rows.shape[0] if rows.shape else -1

    @cached_property
    def pixels(self) -> PixelScan:
        if self.sharded:
            checked = {
                number: read_array(path, "sha256s", self.shard_layouts[number]["sha256s"])
                for number, path in enumerate(self.shard_files)
                if self.verified.get(os.path.basename(path).removesuffix(".npz")) == os.stat(path).st_mtime_ns
            }
            recorded = {name: self.member(name) for name in ("sha256s", "crc32s", "constant")}
            scan = scan_shards(self.shard_files, self.image_layouts, *self.placement, recorded, checked, self.threads)
            self.checked_shards = (len(self.shard_files) - len(checked), len(self.shard_files))
        else:
            self.copy_proven = self.copied is not None and self.copied.holds_for(self.npz, self.count)
            hashed = self.copy_proven and bool(self.copied.hashed) and (recorded := self._recorded()) is not None
            if hashed:  # the merge hashed every row as it read its copy back (img2npz.readback)
                known = np.ones(self.count, bool)
            else:
                known, recorded = self._verified_rows()
            scan = scan_images(self.npz, self.layouts["images"], self.threads, known, recorded, self.copy_proven)
            if hashed and self.copied.finite is not None:
                scan.finite = scan.finite and self.copied.finite
                if self.copied.low is not None:
                    scan.low, scan.high = self.copied.low, self.copied.high
            self.merge_hashed = hashed
            self.hashed_rows = (self.count - int(known.sum()), self.count)
        release_free_memory()
        return scan

    def _recorded(self) -> dict[str, np.ndarray] | None:
        """The ``sha256s``, ``crc32s`` and ``constant`` this dataset records for its rows, or None
        where one is missing or of another shape (the checks name it; every row is hashed meanwhile)."""
        count = max(self.count, 0)
        shapes = {"sha256s": (count, DIGEST_BYTES), "crc32s": (count,), "constant": (count,)}
        if any(name not in self.layouts or self.layouts[name].shape != shape for name, shape in shapes.items()):
            return None
        return {name: self.member(name) for name in shapes}

    def _verified_rows(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The ``file`` layout's rows the last passed validation verified (:func:`unchanged_rows`:
        the same path and the whole sha256 this dataset records), and the recorded members the pass
        takes for them. None are known without a catalogue of a passed validation, or in a dataset
        whose ``sha256s``, ``crc32s`` or ``constant`` is missing or of another shape."""
        none = np.zeros(max(self.count, 0), bool), {}
        if self.previous is None or not self.previous.passed:
            return none
        recorded = self._recorded()
        if recorded is None:
            return none
        if self.previous.fingerprints.shape[1:] != (4,):
            return none
        digests = np.asarray(recorded["sha256s"], np.uint8)
        # a zero digest is no row's: it marks a row found damaged (pixelpass.scan_images)
        known = unchanged_rows(self.previous, self.old_rows, fingerprints_of(digests)) & digests.any(axis=1)
        return known, recorded

    def rows(self, rows: Sequence[int]) -> np.ndarray:
        """Selected rows of the pixels, in the order asked."""
        if not self.sharded:
            return read_rows(self.npz, "images", rows, self.layouts["images"])
        rows = np.asarray(rows, np.int64)
        shard, row = self.placement[0][rows], self.placement[1][rows]
        height, width = self.pixel["size"]
        out = np.empty((len(rows), height, width, 3), self.pixel["dtype"])
        for number in np.unique(shard).tolist():
            slots = np.flatnonzero(shard == number)
            path = self.shard_files[number]
            out[slots] = read_rows(path, "images", row[slots].tolist(), self.image_layouts[number])
        return out

    @cached_property
    def classes(self) -> list[str]:
        return self.member("classes").tolist()

    @cached_property
    def labels(self) -> np.ndarray:
        return self.member("labels")

    @cached_property
    def bad_labels(self) -> int:
        """Labels that are neither unlabelled nor an index into ``classes`` (any label without labels)."""
        labels = self.labels
        bad = int(((labels < UNLABELLED_LABEL) | (labels >= len(self.classes))).sum())
        if self.label_mode == "none":
            bad += int((labels != UNLABELLED_LABEL).sum())
        return bad

    @cached_property
    def class_counts(self) -> list[int]:
        """Images per class (all zero when some label is bad: then no count can be trusted)."""
        if not self.classes:
            return []
        labels = self.labels if self.bad_labels == 0 else self.labels[:0]
        return np.bincount(labels[labels >= 0], minlength=len(self.classes)).tolist()

    @cached_property
    def duplicates(self) -> list[list[int]]:
        """Groups of rows with the same pixels."""
        return duplicate_groups(lambda rows: self.rows(rows), self.pixels.fingerprints)

    def near_duplicates(self, rule: NearRule) -> NearDuplicates:
        """:class:`NearDuplicates` under ``rule`` (searched once per rule): with the previous run's
        pairs under the same rule, only the rows that are new since (and those whose pair lost its
        other row) are looked up among all (:func:`rows_to_search`)."""
        found = self.__dict__.setdefault("_near", {})
        with self._near_lock:  # asked ahead in a thread of its own (checks.run_checks): searched once
            return self._near_duplicates(rule, found)

    def low_quality(self, name: str, floor: int) -> int:
        """Images whose ``name`` (``hash_quality`` or ``field_quality``) is under ``floor``: the
        near-duplicate search matches them to copies only, or does not search their crops."""
        return int((self.member(name) < floor).sum()) if name in self.layouts else 0

    def hash_columns(self) -> HashColumns:
        """The members the near-duplicate search reads; the field hashes a block at a time."""
        layout = self.layouts.get("field_hashes")
        count = len(self.member("phashes"))
        quality, field_quality = (
            self.member(name) if name in self.layouts else np.full(count, 100, np.uint8)
            for name in ("hash_quality", "field_quality")
        )
        if layout is None:
            fields = None
        elif layout.offset is None:  # compressed: read_rows would inflate all of it for each block
            fields = window_reader(self._inflated("field_hashes", layout))
        else:
            fields = partial(read_span_rows, self.npz, "field_hashes", layout=layout)
        sizes = self.member("source_size") if "source_size" in self.layouts else None
        height, width = self.pixel["size"]
        placement = ((width, height), self.pixel["resize"])
        return HashColumns(
            self.member("phashes"), self.member("mean_rgb"), quality, field_quality, fields,
            sizes=sizes, pixels=cropcheck.displayed(self._check_rows(), self.pixel["normalize"]), placement=placement,
        )  # fmt: skip

    def _check_rows(self) -> cropcheck.Pixels:
        """The rows the crops' pixel check reads, a few at a time: of a compressed ``images``
        member (where :meth:`rows` would inflate all of it for each few), from the member
        inflated once, when the check first asks."""
        layout = self.layouts.get("images")
        if self.sharded or layout is None or layout.offset is not None:
            return self.rows
        inflated: list[np.ndarray] = []

        def read(rows: np.ndarray) -> np.ndarray:
            if not inflated:
                inflated.append(self._inflated("images", layout))
            return np.asarray(inflated[0][np.asarray(rows, np.int64)])

        return read

    def _inflated(self, name: str, layout: ArrayLayout) -> np.ndarray:
        """A compressed member inflated once, a chunk at a time, into an unnamed temporary file and
        memory-mapped (1.1 GB of field hashes at 10^6 rows: on disk, not in memory)."""
        with tempfile.TemporaryFile() as handle:
            for chunk in iter_chunks(self.npz, name, layout=layout):
                handle.write(np.ascontiguousarray(chunk).data)
            handle.flush()
            if not layout.shape[0]:
                return np.zeros(layout.shape, layout.dtype)
            return np.memmap(handle, dtype=layout.dtype, mode="r", shape=layout.shape)

    def _near_duplicates(self, asked: NearRule, found: dict) -> NearDuplicates:
        rule = asked
        if asked not in found:
            threads = min(self.threads, SEARCH_THREADS)
            columns = self.hash_columns()
            if columns.fields is None:  # a dataset without field hashes: no crops to look for
                rule = replace(rule, crop_bits=None)
            previous = self.previous
            if previous is not None and previous.near_bits == rule.key():
                queries, kept = rows_to_search(previous, self.old_rows, self.pixels.fingerprints)
                first, second, _ = nearrule.pairs(rule, columns, threads, queries)
                among = np.unique(np.concatenate([first, second, kept.reshape(-1)]))
                near = near_duplicates_of(columns, rule, threads, among)
                self.searched = len(queries)
            else:
                near = near_duplicates_of(columns, rule, threads)
                self.searched = len(columns.hashes)
            found[asked] = near
            release_free_memory()  # the search's temporaries, so the next fact's peak starts low
        return found[asked]

    @cached_property
    def duplicate_paths(self) -> list[list[str]]:
        """The paths of the first :data:`LISTED` duplicate groups (each to :data:`LISTED` paths)."""
        return [self.paths_of(group[:LISTED]) for group in self.duplicates[:LISTED]]

    @cached_property
    def constant_paths(self) -> list[str]:
        """The paths of the first :data:`LISTED` images of one colour."""
        return self.paths_of(self.pixels.constant[:LISTED])

    def paths_of(self, rows: Sequence[int]) -> list[str]:
        return read_rows(self.npz, "paths", list(rows), self.layouts["paths"]).tolist() if len(rows) else []

    def iter_paths(self) -> Iterator[str]:
        for chunk in iter_chunks(self.npz, "paths", layout=self.layouts["paths"]):
            yield from chunk.tolist()

    def _table_paths(self) -> Iterator[str]:
        """The paths as ``images.parquet`` holds them (:func:`img2npz.contract.table_path`): only a
        chunk with an undecodable byte (a surrogate) needs the conversion, 0.5 s at 10^6 paths."""
        for chunk in iter_chunks(self.npz, "paths", layout=self.layouts["paths"]):
            codes = chunk.view(np.uint32)
            escaped = ((codes >= SURROGATES[0]) & (codes <= SURROGATES[1])).any()
            yield from map(table_path, chunk.tolist()) if escaped else chunk.tolist()

    @property
    def path_order(self) -> tuple[int, str | None]:
        """(paths out of the index order or repeated, the first such path)."""
        return self._path_pass[1]

    @cached_property
    def accounting(self) -> dict:
        """:func:`account_for_index` of the dataset, the failures and the index, with ``failures``:
        the lines of ``failures.tsv`` of files that could not be read, and ``filtered``: those the
        filters left out."""
        filtered = [0]

        def failed_paths() -> Iterator[str]:
            for path, stage, _ in iter_tsv(self.failures, FAILURE_HEADER):
                filtered[0] += stage == FILTER_STAGE
                yield table_path(path)

        failed = Counted(failed_paths())
        found = account_for_index(self._table_paths(), failed, _indexed_paths(self.images_table))
        # account_for_index reads the failures to their end
        return {**found, "failures": failed.count - filtered[0], "filtered": filtered[0]}

    @cached_property
    def split(self) -> np.ndarray | None:
        """Each row's split (int8), or None: the dataset was built without splits."""
        return self.member("split") if "split" in self.layouts else None

    @cached_property
    def split_names(self) -> list[str]:
        return self.member("splits").tolist() if self.split is not None else []

    @cached_property
    def split_class_counts(self) -> list[list[int]]:
        """[split][class] image counts, then the split's unlabelled images (label -1) last: a row
        adds up to the split's whole size, labelled or not."""
        if self.split is None:
            return []
        classes = len(self.classes)
        labels = np.where((self.labels >= 0) & (self.labels < classes), self.labels, classes)
        return [
            np.bincount(labels[self.split == number], minlength=classes + 1).tolist()
            for number in range(len(self.split_names))
        ]
