"""merge-npz: gather the rows the index placed in shards into the dataset, in the index order.

The index says which shard row holds each image (``images.parquet``: ``shard``, ``row``;
:mod:`img2npz.allocation`); shards hold rows of images since deleted or changed too, and the merge
leaves those out. Two layouts (config ``layout``):

* ``file``: ``results/dataset.npz``, one memory-mappable file. The pixels are copied file to file
  in the kernel (:mod:`img2npz.filecopy`), a range per run of consecutive rows of one shard, so a
  dataset grown by many reruns costs one sequential copy, as a fresh build does, and has the same
  bytes.
* ``shards``: ``results/dataset/index.npz``, the row table (every member of dataset.npz but the
  pixels, and each row's shard and row), beside hard links to the shard files it names under
  ``results/dataset/shards/``. No pixel is copied.

Peak memory is the per-row members (about 100 bytes an image) and a read chunk per read-back
thread, never the pixels. ``meta.images_sha256`` is the tree of the rows' sha256s taken by the shard
jobs (:mod:`img2npz.treedigest`), and the zip's CRC-32 the rows' CRC-32s combined; in the ``file``
layout the merge then reads its copy back and hashes each row it has not hashed before, comparing
with those (:mod:`img2npz.readback`). The mean and std in ``meta`` are exact, from the shards'
integer histograms less the counts of the rows left out (the only shard pixels read: those of
dropped rows).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from img2npz import cropcheck, nearrule, shardfiles
from img2npz import splits as splitting
from img2npz.atomic import atomic_output
from img2npz.contract import (
    DATASET_FORMAT,
    FAILURE_HEADER,
    ROW_MEMBERS,
    SHARDED_DATASET_FORMAT,
    CopyCheck,
    DatasetMeta,
    ShardMeta,
    path_sort_key,
    row_member,
    table_path,
)
from img2npz.dedupe import find_copies
from img2npz.dtypes import uint8_of
from img2npz.filecopy import ByteRange, copy_ranges, row_ranges
from img2npz.nearrule import SEARCH_THREADS, HashColumns, NearRule
from img2npz.npzformat import ArrayLayout, NpzWriter, array_layout, read_array, read_rows, read_span_rows
from img2npz.readback import RowReadBack
from img2npz.treedigest import TreeDigest
from img2npz.tsv import read_tsv, write_tsv

log = logging.getLogger(__name__)
LAYOUTS = ("file", "shards")


@dataclass
class _Shard:
    npz: str
    failures: str
    layouts: dict[str, ArrayLayout]
    meta: ShardMeta

    def column(self, name: str) -> np.ndarray:
        return read_array(self.npz, name, self.layouts[name])

    def rows_of(self, name: str, rows: np.ndarray, span: bool = True) -> np.ndarray:
        """Rows of a member: by one read of the span they lie in (rows of a block, mostly
        consecutive), or else a read of each (rows far apart, as the crops' pixel check asks)."""
        if span:
            return read_span_rows(self.npz, name, rows, self.layouts[name])
        return read_rows(self.npz, name, rows.tolist(), self.layouts[name])

    @property
    def row_bytes(self) -> int:
        layout = self.layouts["images"]
        return layout.nbytes // layout.shape[0] if layout.shape[0] else 0


def _open_shard(npz: str, failures: str, pixel: dict) -> _Shard:
    layouts = array_layout(npz)
    try:
        meta = ShardMeta.from_json(str(read_array(npz, "meta", layouts["meta"])))
    except (KeyError, ValueError) as error:
        raise ValueError(f"{npz}: {error}; delete it and rerun") from None
    if meta.pixel != pixel:
        raise ValueError(f"{npz}: built with pixel config {meta.pixel}, expected {pixel}; rerun its shard")
    if layouts["images"].offset is None:
        raise ValueError(f"{npz}: images member is compressed; shards are stored uncompressed, rerun its shard")
    if layouts["images"].shape[0] != meta.rows:
        raise ValueError(f"{npz}: claims {meta.rows} rows, holds {layouts['images'].shape[0]}")
    return _Shard(npz, failures, layouts, meta)


@dataclass
class Placement:
    """Each indexed image's shard (an index into ``shards``) and row there, in the index order, and
    its label (from the index: a label changes without touching a shard)."""

    shards: list[str]
    shard: np.ndarray  # int32
    row: np.ndarray  # int64
    labels: np.ndarray  # int64
    paths: list[str]  # as images.parquet holds them (img2npz.contract.table_path)

    @classmethod
    def read(cls, images_table: str | os.PathLike) -> Placement:
        import pyarrow.parquet as pq

        # not read_table: its pyarrow.dataset imports pandas (img2npz.arrow)
        table = pq.ParquetFile(images_table).read(columns=["path", "label", "shard", "row"])
        shard = table.column("shard").combine_chunks()
        return cls(
            shard.dictionary.to_pylist(),
            shard.indices.to_numpy(zero_copy_only=False).astype(np.int32),
            table.column("row").to_numpy().astype(np.int64),
            table.column("label").to_numpy().astype(np.int64),
            table.column("path").to_pylist(),
        )


@dataclass
class _Rows:
    """The dataset's rows: for each, its shard and row there; and every per-row member gathered."""

    shard: np.ndarray
    row: np.ndarray
    labels: np.ndarray
    paths: np.ndarray
    members: dict[str, np.ndarray]


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


def _gather(shards: Sequence[_Shard], placement: Placement) -> tuple[_Rows, list[tuple[str, str, str]]]:
    """Every image's row and members, those that failed left out and their failure lines instead.
    A shard row that does not hold the path the index placed there is an error (a manifest edited
    or a shard replaced by hand)."""
    count = len(placement.shard)
    ok = np.zeros(count, bool)
    paths = np.empty(count, object)
    members = {member.name: member.empty(count) for member in ROW_MEMBERS if not member.streamed}
    failed_paths: dict[int, set[str]] = {}
    for number, shard in enumerate(shards):
        mine = np.flatnonzero(placement.shard == number)
        if not len(mine):
            continue
        rows = placement.row[mine]
        if rows.max() >= shard.meta.rows or rows.min() < 0:
            raise ValueError(f"{shard.npz}: the index places rows past its {shard.meta.rows}; rerun the index")
        shard_paths = shard.column("paths")[rows]
        for slot, path in zip(mine.tolist(), shard_paths.tolist(), strict=True):
            if table_path(path) != placement.paths[slot]:
                raise ValueError(f"{shard.npz}: row of {path!r} where the index has {placement.paths[slot]!r}")
            paths[slot] = path
        shard_ok = shard.column("ok")[rows]
        ok[mine] = shard_ok
        for name, values in members.items():
            values[mine] = shard.column(name)[rows]
        if not shard_ok.all():
            failed_paths[number] = set(shard_paths[~shard_ok].tolist())
    failures = []
    for number, wanted in failed_paths.items():
        failures.extend(line for line in read_tsv(shards[number].failures, FAILURE_HEADER) if line[0] in wanted)
    chosen = np.flatnonzero(ok)
    rows = _Rows(
        placement.shard[chosen],
        placement.row[chosen],
        placement.labels[chosen],
        paths[chosen],
        {name: values[chosen] for name, values in members.items()},
    )
    return rows, failures


def _select(rows: _Rows, keep: np.ndarray) -> _Rows:
    return _Rows(
        rows.shard[keep],
        rows.row[keep],
        rows.labels[keep],
        rows.paths[keep],
        {name: values[keep] for name, values in rows.members.items()},
    )


def _histogram(shards: Sequence[_Shard], rows: _Rows, pixel: dict) -> np.ndarray:
    """The (3, 256) counts of the dataset's rows: the shards' less those of their other ok rows
    (dropped since, or copies left out), which are the only pixels read."""
    total = np.zeros((3, 256), np.int64)
    for number, shard in enumerate(shards):
        used = rows.row[rows.shard == number]
        if not len(used) and not shard.meta.images:
            continue
        total += shard.column("histogram")
        others = np.setdiff1d(np.flatnonzero(shard.column("ok")), used)
        for start in range(0, len(others), 64):
            for stored in read_rows(shard.npz, "images", others[start : start + 64].tolist(), shard.layouts["images"]):
                pixels = uint8_of(stored, pixel["dtype"], pixel["normalize"])
                if pixels is None:
                    raise ValueError(f"{shard.npz}: a row left out cannot be counted out of the histogram")
                for channel in range(3):
                    total[channel] -= np.bincount(pixels[..., channel].reshape(-1), minlength=256)
    return total


READ_BACK_BYTES = 32 << 20  # ranges of about this many bytes: the read-back follows the copy closely


def _image_ranges(
    shards: Sequence[_Shard], rows: _Rows, trusted: set[int] = frozenset()
) -> tuple[list[ByteRange], list[bool]]:
    """Byte ranges of runs of consecutive rows of one shard (of about :data:`READ_BACK_BYTES`),
    each with its rows' CRC-32s combined; and whether each comes from a shard in ``trusted``."""
    if not len(rows.row):
        return [], []
    breaks = np.flatnonzero((np.diff(rows.shard) != 0) | (np.diff(rows.row) != 1)) + 1
    starts = np.concatenate([[0], breaks]).tolist()
    stops = np.concatenate([breaks, [len(rows.row)]]).tolist()
    crcs = rows.members["crc32s"]
    ranges, from_trusted = [], []
    for start, stop in zip(starts, stops, strict=True):
        shard = shards[int(rows.shard[start])]
        offset = shard.layouts["images"].offset + int(rows.row[start]) * shard.row_bytes
        found = row_ranges(shard.npz, offset, shard.row_bytes, crcs[start:stop], READ_BACK_BYTES)
        ranges.extend(found)
        from_trusted.extend([int(rows.shard[start]) in trusted] * len(found))
    return ranges, from_trusted


def _shard_identities(names: Sequence[str], shards: Sequence[_Shard], rows: _Rows) -> dict[str, list]:
    """Per shard: its file's (mtime_ns, size, inode) and a digest of the rows the dataset takes from
    it, in order: what a proof's ``shards`` records, to trust them again only as they are."""
    identities = {}
    order = np.argsort(rows.shard, kind="stable")  # each shard's rows in dataset order, one sort for all
    per_shard = np.split(rows.row[order].astype(np.int64), np.cumsum(np.bincount(rows.shard, minlength=len(names))))
    for name, shard, taken in zip(names, shards, per_shard, strict=False):
        info = os.stat(shard.npz)
        digest = hashlib.blake2b(np.ascontiguousarray(taken), digest_size=16).hexdigest()
        identities[name] = [info.st_mtime_ns, info.st_size, info.st_ino, digest]
    return identities


def _hashed_before(out_check, identities: dict[str, list], names: Sequence[str]) -> set[int]:
    """The shards (numbers) whose rows the last merge hashed, their files and the rows taken from
    them unchanged since (its proof, kept by Snakemake across runs)."""
    try:
        before = (CopyCheck.load(out_check).shards or {}) if out_check is not None else {}
    except (OSError, ValueError, TypeError):
        before = {}
    return {number for number, name in enumerate(names) if before.get(name) == identities[name]}


def _strings(values) -> np.ndarray:
    values = list(values)
    return np.array(values, dtype=str) if values else np.empty(0, dtype="<U1")


def _write_paths(writer: NpzWriter, paths: np.ndarray, batch: int = 65536) -> None:
    """``paths`` as one ``<Uk`` member, converted a batch at a time (4 bytes a character)."""
    chars = max((len(path) for path in paths.tolist()), default=1) or 1
    with writer.stream("paths", f"<U{chars}", (len(paths),)) as member:
        for start in range(0, len(paths), batch):
            member.write(np.array(paths[start : start + batch].tolist(), dtype=f"<U{chars}"))


def _near_pairs(
    rule: NearRule, shards: Sequence[_Shard], rows: _Rows, pixel: dict, threads: int
) -> tuple[np.ndarray, np.ndarray]:
    """The dataset's near-duplicate pairs under ``rule``, its field hashes and the crops' pixels
    read from the shards."""
    members = rows.members

    def reader(name: str, shape: tuple[int, ...], dtype, span: bool = True) -> Callable[[np.ndarray], np.ndarray]:
        def read(numbers: np.ndarray) -> np.ndarray:
            block = np.zeros((len(numbers), *shape), dtype)
            shard_of, row_of = rows.shard[numbers], rows.row[numbers]
            for number in np.unique(shard_of).tolist():
                mine = np.flatnonzero(shard_of == number)
                block[mine] = shards[number].rows_of(name, row_of[mine], span)
            return block

        return read

    height, width = pixel["size"]
    images = reader("images", (height, width, 3), pixel["dtype"], span=False)
    columns = HashColumns(
        members["phashes"],
        members["mean_rgb"],
        members["hash_quality"],
        members["field_quality"],
        reader("field_hashes", row_member("field_hashes").shape, np.uint8),
        sizes=members["source_size"],
        pixels=cropcheck.displayed(images, pixel["normalize"]),
        placement=((width, height), pixel["resize"]),
    )
    first, second, _ = nearrule.pairs(rule, columns, min(threads, SEARCH_THREADS))
    return first, second


def _splits(
    rows: _Rows, splits: Mapping[str, float], group_by: str, near: Callable[[], tuple] | None, rule: NearRule | None
) -> tuple[np.ndarray, dict]:
    values = splitting.key_values(rows.paths.tolist(), group_by)
    if near is not None:
        values = splitting.joined(values, *near())
    split = splitting.split_of(values, splits)
    counts = np.bincount(split, minlength=len(splits)).tolist()
    record = {"fractions": dict(splits), "group_by": group_by, "counts": dict(zip(splits, counts, strict=True))}
    if near is not None:
        record["near_duplicate_bits"] = rule.bits
        record["near_duplicate_crop_bits"] = rule.crop_bits
        record["min_hash_quality"] = rule.min_quality
        record["min_field_quality"] = rule.min_field_quality
    return split, record


def merge_shards(
    images_table: str | os.PathLike,
    shards_dir: str | os.PathLike,
    classes: Sequence[str],
    pixel: dict,
    out: str | os.PathLike,
    out_failures: str | os.PathLike,
    layout: str = "file",
    compress: bool = False,
    splits: Mapping[str, float] | None = None,
    group_by: str = "path",
    near_duplicate_bits: int | None = None,
    near_duplicate_crop_bits: int | None = None,
    min_hash_quality: int = 0,
    min_field_quality: int = 0,
    group_near_duplicates: bool = False,
    drop_duplicates: str = "none",
    streams: int = 1,
    out_check: str | os.PathLike | None = None,
    threads: int = 1,
    hash_rows: bool = True,
) -> DatasetMeta:
    """Write the dataset (``out``: ``dataset.npz``, or the ``shards`` layout's ``index.npz``) and the
    failure list, and ``out_check``, the :class:`~img2npz.contract.CopyCheck` of the pixels it
    copied (read back as they were copied, :mod:`img2npz.filecopy`); return the ``meta`` document.

    With ``splits`` (named fractions), ``split`` (int8, an index into ``splits``) says each row's
    split; see :mod:`img2npz.splits`. ``group_near_duplicates``: keep near-duplicates in one split
    (:mod:`img2npz.nearrule`: ``near_duplicate_bits``, crops within ``near_duplicate_crop_bits``
    unless None among fields of ``min_field_quality`` or more, hashes of ``min_hash_quality`` or
    more; exact duplicates always). ``drop_duplicates`` (``exact`` or
    ``near``): leave out every copy but the first (:mod:`img2npz.dedupe`). ``streams``: threads
    copying the pixels at once (:func:`img2npz.filecopy.copy_ranges`); with one, ``threads`` read
    the copy back and hash its rows (:mod:`img2npz.readback`) beside it (``hash_rows`` False: one
    reads it back and checks each range's CRC-32 only, as bench/throughput.py's floor does).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r}: one of {', '.join(LAYOUTS)}")
    if near_duplicate_bits is None and (group_near_duplicates or drop_duplicates == "near"):
        raise ValueError("group_near_duplicates and drop_duplicates: near need near_duplicate_bits")
    placement = Placement.read(images_table)
    shards_dir = Path(shards_dir)
    shards = [
        _open_shard(os.fspath(shards_dir / f"{name}.npz"), os.fspath(shards_dir / f"{name}.failures.tsv"), pixel)
        for name in placement.shards
    ]
    rows, failures = _gather(shards, placement)
    rule = NearRule(near_duplicate_bits or 0, near_duplicate_crop_bits, min_hash_quality, min_field_quality)
    if drop_duplicates != "none":
        members = rows.members

        def row_bytes(number: int) -> bytes:
            shard = shards[int(rows.shard[number])]
            return read_rows(shard.npz, "images", [int(rows.row[number])], shard.layouts["images"]).tobytes()

        keep, dropped = find_copies(
            members["phashes"], members["mean_rgb"], members["crc32s"], rows.paths, drop_duplicates,
            lambda: _near_pairs(rule, shards, rows, pixel, threads), row_bytes,
        )  # fmt: skip
        rows = _select(rows, keep)
        failures += dropped
    failures.sort(key=lambda line: path_sort_key(line[0]))
    histogram = _histogram(shards, rows, pixel)
    digest = TreeDigest()
    digest.update(rows.members["sha256s"])
    split = record = None
    if splits:
        near = (lambda: _near_pairs(rule, shards, rows, pixel, threads)) if group_near_duplicates else None
        split, record = _splits(rows, splits, group_by, near, rule)
    mean, std = channel_stats(histogram)
    meta = DatasetMeta(
        format=DATASET_FORMAT if layout == "file" else SHARDED_DATASET_FORMAT,
        pixel=pixel,
        images=len(rows.row),
        classes=len(classes),
        failures=len(failures),
        mean=mean,
        std=std,
        histogram=histogram.tolist(),
        images_sha256=digest.hexdigest(),
        splits=record,
    )
    check = CopyCheck(0)
    if layout == "file":
        readers = threads if hash_rows and not compress and streams == 1 else 0
        identities = _shard_identities(placement.shards, shards, rows) if readers else {}
        trusted = _hashed_before(out_check, identities, placement.shards) if readers else set()
        if pixel["dtype"] != "uint8":
            trusted = set()  # the pixels' float range is the merge's to prove: every row is read
        verified, read_back = _write_file(
            out, shards, rows, classes, pixel, split, splits, meta, compress, streams, readers, trusted
        )
        if read_back is not None:
            found = {"low": read_back.low, "high": read_back.high} if read_back.low is not None else {}
            used = {placement.shards[n] for n in set(rows.shard.tolist())}
            hashed = {name: identity for name, identity in identities.items() if name in used}
            check = CopyCheck.of(out, meta.images, hashed=True, finite=read_back.finite, shards=hashed, **found)
            log.info("rows hashed as read back: %d of %d", int(read_back.hashed.sum()), meta.images)
        elif verified:
            check = CopyCheck.of(out, meta.images)
    else:
        _write_index(out, shards, placement.shards, rows, classes, split, splits, meta)
    write_tsv(out_failures, FAILURE_HEADER, failures)
    if out_check is not None:
        check.save(out_check)
    log.info("merged %d shards: %d images, %d failures (%s layout)", len(shards), meta.images, meta.failures, layout)
    return meta


STREAM_ROWS = 4096  # rows of a streamed member gathered at a time


def _stream_member(writer: NpzWriter, member, shards: Sequence[_Shard], rows: _Rows) -> None:
    """A :attr:`~img2npz.contract.RowMember.streamed` member, gathered from the shards a block of
    rows at a time: each shard's rows of a block are one read of the span they lie in (rows of
    one shard are mostly consecutive), so the merge holds a block, never the member."""
    with writer.stream(member.name, member.dtype, (len(rows.row), *member.shape)) as out:
        for start in range(0, len(rows.row), STREAM_ROWS):
            shard_of, row_of = rows.shard[start : start + STREAM_ROWS], rows.row[start : start + STREAM_ROWS]
            block = member.empty(len(shard_of))
            for number in np.unique(shard_of).tolist():
                mine = np.flatnonzero(shard_of == number)
                block[mine] = shards[number].rows_of(member.name, row_of[mine])
            out.write(block)


def _write_table(writer: NpzWriter, rows: _Rows, classes, split, splits, meta: DatasetMeta, shards=()) -> None:
    """The members after the pixels (or their places), the same in both layouts."""
    writer.add("labels", rows.labels)
    writer.add("classes", _strings(classes))
    _write_paths(writer, rows.paths)
    for member in ROW_MEMBERS:
        if member.streamed:
            _stream_member(writer, member, shards, rows)
        else:
            writer.add(member.name, rows.members[member.name])
    if split is not None:
        writer.add("split", split)
        writer.add("splits", _strings(splits))
    writer.add("meta", np.array(meta.to_json()))


def _write_file(
    out, shards, rows: _Rows, classes, pixel, split, splits, meta, compress, streams, readers, trusted=frozenset()
) -> tuple[bool, RowReadBack | None]:
    """Write ``dataset.npz``; return whether its copy was read back, and what its rows gave there
    (for the merge to compare with what the shards recorded) where ``readers`` hashed them: the
    rows of the shards not ``trusted``, whose rows an earlier merge hashed."""
    height, width = pixel["size"]
    total = len(rows.row)
    dtype = np.dtype(pixel["dtype"])
    ranges, from_trusted = _image_ranges(shards, rows, trusted)
    read_back = None
    if readers:
        recorded = {name: rows.members[name] for name in ("sha256s", "crc32s", "constant")}
        read_back = RowReadBack(ranges, (height, width, 3), dtype, recorded, rows.paths, from_trusted)
        readers = read_back.readers(readers)
    with atomic_output(out) as handle, NpzWriter(handle, compress=compress) as writer:
        with writer.stream("images", dtype, (total, height, width, 3)) as member:
            # each shard is read once here: release its pages for the copy's (filecopy.release_cache)
            verify = read_back if read_back is not None else True
            verified = copy_ranges(
                member, ranges, release=True, streams=streams, verify=verify, readers=max(1, readers)
            )
        if verified and read_back is not None:
            read_back.finish()  # before the file is in place
        _write_table(writer, rows, classes, split, splits, meta, shards)
    return verified, read_back if verified else None


def _write_index(out, shards, names: Sequence[str], rows: _Rows, classes, split, splits, meta) -> None:
    """The row table, after linking every shard it names into the dataset folder; then the links of
    shards it no longer names go. A crash leaves the old table or the new one, each with its files."""
    out = Path(out)
    used = sorted(set(rows.shard.tolist()))
    renumber = np.full(len(names), -1, np.int32)
    renumber[used] = np.arange(len(used), dtype=np.int32)
    files = [f"{shardfiles.LINKED}/{names[number]}.npz" for number in used]
    shardfiles.link_shards([shards[number].npz for number in used], out.parent)
    with atomic_output(out) as handle, NpzWriter(handle) as writer:
        writer.add("shard", renumber[rows.shard] if len(rows.shard) else np.zeros(0, np.int32))
        writer.add("row", rows.row)
        writer.add("shards", _strings(files))
        _write_table(writer, rows, classes, split, splits, meta, shards)
    shardfiles.unlink_others(out.parent, {Path(name).name for name in files})
