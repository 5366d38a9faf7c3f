"""The validation's one streaming pass over an array of image rows, and what needs the rows again.

The pass reads ``images`` once, in chunks scanned by parallel threads: per row its CRC-32, and for
the rows no earlier validation verified its sha256 (for the tree digest, :mod:`img2npz.treedigest`;
as four words, the row's fingerprint), a one-colour test, and for float dtypes finiteness
and range (uint8 is 0..255 by type). A row verified before is taken as the dataset records it
(``sha256s``, ``constant``) once its bytes have the CRC-32 recorded with them: at about 4 GB/s
against sha256's 1.4, the copy the merge made is checked whole at a fraction of hashing it. Memory
holds about 40 bytes per image and a few chunks, never the pixels. In the ``file`` layout it reads
``dataset.npz`` (the copy the merge made), or nothing where the merge hashed every row as it read
its copy back (``dataset.verified.json``, :class:`img2npz.contract.CopyCheck`; with a proof of an
earlier release, only the rows it hashes); in the
``shards`` layout only the shard files no earlier run verified (:func:`scan_shards`). Rows with
equal fingerprints are then read again, few of them, to confirm duplicates byte for byte.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from img2npz.npzformat import ArrayLayout, iter_chunks, read_rows
from img2npz.treedigest import DIGEST_BYTES, TreeDigest, row_digests


@dataclass
class PixelScan:
    sha256: str
    low: float | None
    high: float | None
    finite: bool
    digests: np.ndarray  # (N, 32) uint8 sha256 of each row's bytes
    constant: list[int]  # rows whose pixels are all one colour
    crcs: np.ndarray  # uint32 CRC-32 of each row's bytes

    @property
    def fingerprints(self) -> np.ndarray:
        """(N, 4) uint64 per row: its sha256 as four words (what duplicates, the catalogue and the
        change report compare)."""
        return fingerprints_of(self.digests)


def fingerprints_of(digests: np.ndarray) -> np.ndarray:
    """Rows' (N, 4) uint64 fingerprints from their (N, 32) sha256 digests (the same bytes)."""
    return np.ascontiguousarray(np.asarray(digests, np.uint8).reshape(-1, DIGEST_BYTES)).view("<u8").reshape(-1, 4)


def row_fingerprints(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: (sum, xor) of its 8-byte words, and whether it is one colour throughout.

    The fingerprint only proposes duplicates (they are confirmed byte for byte); a row of one colour
    repeats every 24 bytes (8 pixels of uint8, 2 of float32), which the fingerprint tests for free,
    and those 24 bytes are one pixel repeated (a row of an 8-pixel pattern repeats too). Rows whose
    size is not a multiple of 24 bytes, or whose pixel is not a divisor of 24 bytes, take an exact,
    slower path.
    """
    count = len(rows)
    flat = rows.reshape(count, -1).view(np.uint8)
    pixel_bytes = (rows.shape[-1] if rows.ndim > 1 else 1) * rows.dtype.itemsize
    if flat.shape[1] % 24 or not flat.shape[1] or 24 % pixel_bytes:
        pixels = rows.reshape(count, -1, rows.shape[-1]) if rows.ndim > 1 else rows.reshape(count, -1, 1)
        constant = (pixels == pixels[:, :1]).all(axis=(1, 2))
        digests = [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in flat]
        prints = (
            np.frombuffer(b"".join(digests), dtype=np.uint64).reshape(count, 2)
            if count
            else np.empty((0, 2), np.uint64)
        )
        return prints, constant
    words = flat.view(np.uint64)
    prints = np.stack([words.sum(axis=1, dtype=np.uint64), np.bitwise_xor.reduce(words, axis=1)], axis=1)
    repeats = np.uint64(words.shape[1] // 3)
    period = words[:, :3]
    with np.errstate(over="ignore"):
        candidate_sum = period.sum(axis=1, dtype=np.uint64) * repeats
    candidate_xor = np.bitwise_xor.reduce(period, axis=1) if int(repeats) % 2 else np.zeros(count, np.uint64)
    candidates = np.flatnonzero((prints[:, 0] == candidate_sum) & (prints[:, 1] == candidate_xor))
    constant = np.zeros(count, bool)
    for row in candidates:
        first = period[row].view(np.uint8).reshape(-1, pixel_bytes)
        constant[row] = bool((first == first[0]).all() and (words[row].reshape(-1, 3) == period[row]).all())
    return prints, constant


@dataclass
class _ChunkScan:
    """What the pass learns from one chunk of rows (``digests`` and ``constant`` of the rows it
    hashed: all of them, or those ``fresh``)."""

    digests: np.ndarray
    crcs: list[int]
    constant: np.ndarray
    finite: bool
    low: float | None
    high: float | None
    fresh: np.ndarray | None = None


def scan_chunk(rows: np.ndarray, fresh: np.ndarray | None = None) -> _ChunkScan:
    """Every per-row fact of the pass for one chunk: the CRC-32 of every row, the rest of the rows
    ``fresh`` (numbers within the chunk; None: all). hashlib and zlib release the GIL, numpy mostly
    does: chunks scan in parallel threads."""
    crcs = [zlib.crc32(row) for row in rows.reshape(len(rows), -1)]
    hashed = rows if fresh is None else rows[fresh]
    if not len(hashed):
        return _ChunkScan(np.zeros((0, DIGEST_BYTES), np.uint8), crcs, np.zeros(0, np.int64), True, None, None, fresh)
    flat = hashed.reshape(len(hashed), -1)
    _, one_colour = row_fingerprints(hashed)
    finite, low, high = True, None, None
    if hashed.dtype.kind == "f":
        finite = bool(np.isfinite(hashed).all())
        values = np.nan_to_num(hashed)
        low, high = float(values.min()), float(values.max())
    return _ChunkScan(row_digests(flat), crcs, np.flatnonzero(one_colour), finite, low, high, fresh)


CHUNK_ROWS_BYTES = 4 << 20  # about this much of the member per chunk


def scan_images(
    npz: str,
    layout: ArrayLayout,
    threads: int = 1,
    known: np.ndarray | None = None,
    recorded: dict | None = None,
    proven: bool = False,
) -> PixelScan:
    """The pass (see the module docstring) over the member ``layout`` describes, in ``threads``
    threads: chunks are read and scanned in parallel and taken in order (at most ``2 * threads`` in
    flight), so the tree digest grows in row order and memory is a few chunks. ``known`` (bool per
    row): rows an earlier validation verified, whose ``sha256s`` and ``constant`` are taken from
    ``recorded`` (per row) when their CRC-32 is the recorded ``crc32s``; a known row whose bytes
    differ gets a zero digest (it fails the digest and CRC checks, and is hashed again next time).
    ``proven``: the merge read every row back as it copied it (a stored member only), so a chunk of
    known rows alone is not read at all, their CRC-32s taken as recorded."""
    count = layout.shape[0] if layout.shape else 0
    row_shape = layout.shape[1:] if layout.shape else ()
    row_bytes = layout.nbytes // count if count else 0
    chunk_rows = max(1, CHUNK_ROWS_BYTES // max(row_bytes, 1))
    known = np.zeros(count, bool) if known is None else np.asarray(known, bool)
    recorded = recorded or {}
    digests = np.zeros((count, DIGEST_BYTES), np.uint8)
    crcs = np.zeros(count, np.uint32)
    flat = np.zeros(count, bool)  # one colour throughout
    if known.any():
        digests[known] = np.asarray(recorded["sha256s"], np.uint8)[known]
        flat[known] = np.asarray(recorded["constant"], bool)[known]
        crcs[known] = np.asarray(recorded["crc32s"], np.uint32)[known]
    low, high, finite = None, None, True

    def fresh_in(start: int, rows: int) -> np.ndarray | None:
        part = known[start : start + rows]
        return None if not part.any() else np.flatnonzero(~part)

    # work items give (the dataset rows of the chunk, its scan)
    if layout.offset is not None and proven and known.any():  # only the rows to hash are read

        def scan(rows: np.ndarray) -> tuple[np.ndarray, _ChunkScan]:
            return rows, scan_chunk(read_rows(npz, layout.name, rows.tolist(), layout), None)

        fresh = np.flatnonzero(~known)
        work = [fresh[at : at + chunk_rows] for at in range(0, len(fresh), chunk_rows)]
    elif layout.offset is not None:  # stored: each thread reads its own chunks

        def scan(start: int) -> tuple[np.ndarray, _ChunkScan]:
            rows = _read_rows(npz, layout, start, min(chunk_rows, count - start))
            chunk = scan_chunk(rows.reshape(-1, *row_shape), fresh_in(start, min(chunk_rows, count - start)))
            return np.arange(start, start + len(chunk.crcs)), chunk

        work = range(0, count, chunk_rows)
    else:  # deflated: one stream to inflate, in order; the threads scan what it gives

        def chunks():
            start = 0
            for rows in iter_chunks(npz, layout.name, chunk_bytes=CHUNK_ROWS_BYTES, layout=layout):
                yield rows, start
                start += len(rows)

        def scan(item) -> tuple[np.ndarray, _ChunkScan]:
            rows, start = item
            return np.arange(start, start + len(rows)), scan_chunk(rows, fresh_in(start, len(rows)))

        work = chunks() if count else ()
    with ThreadPoolExecutor(max(1, threads), thread_name_prefix="pixelpass") as pool:
        for rows, chunk in _ordered(pool, scan, work, 2 * max(1, threads)):
            crcs[rows] = chunk.crcs
            hashed = rows if chunk.fresh is None else rows[chunk.fresh]
            digests[hashed] = chunk.digests
            flat[hashed] = False
            flat[hashed[chunk.constant]] = True
            finite = finite and chunk.finite
            if chunk.low is not None:
                low = chunk.low if low is None else min(low, chunk.low)
                high = chunk.high if high is None else max(high, chunk.high)
    if known.any():
        differs = np.flatnonzero(known & (crcs != np.asarray(recorded["crc32s"], np.uint32)))
        digests[differs] = 0
    if layout.dtype == np.uint8:
        low, high = 0.0, 255.0
    digest = TreeDigest()
    digest.update(digests)
    return PixelScan(digest.hexdigest(), low, high, finite, digests, np.flatnonzero(flat).tolist(), crcs)


def _ordered(pool: ThreadPoolExecutor, work, items, ahead: int):
    """``work(item)`` for each item, in order, with at most ``ahead`` submitted and not yet taken."""
    pending: deque = deque()
    for item in items:
        pending.append(pool.submit(work, item))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _read_rows(npz: str, layout: ArrayLayout, start: int, rows: int) -> np.ndarray:
    """``rows`` rows of a stored member from row ``start``, in one positioned read."""
    row_bytes = layout.nbytes // layout.shape[0]
    buffer = np.empty(rows * row_bytes, np.uint8)
    with open(npz, "rb", buffering=0) as raw:
        view, got = memoryview(buffer), 0
        while got < len(buffer):
            count = os.preadv(raw.fileno(), [view[got:]], layout.offset + start * row_bytes + got)
            if not count:
                raise ValueError(f"{npz}: member {layout.name!r} ends early")
            got += count
    return buffer.view(layout.dtype)


def duplicate_groups(read: Callable[[list[int]], np.ndarray], fingerprints: np.ndarray) -> list[list[int]]:
    """Groups of rows with the same pixels: equal fingerprints, confirmed byte for byte (``read``
    gives the rows of a list of row numbers). An all-zero fingerprint is a row the pass found
    damaged (:func:`scan_images`), not a digest: those rows are left out."""
    if not len(fingerprints):
        return []
    fingerprints = np.asarray(fingerprints, np.uint64).reshape(len(fingerprints), -1)
    # sorted by the first word alone (a sha256 prefix, so equal words are rare): a tenth of the
    # time of np.unique over all at 10^6 rows; rows of equal first words are then split by all
    order = np.argsort(fingerprints[:, 0], kind="stable")
    first = fingerprints[order, 0]
    repeated = np.flatnonzero(first[1:] == first[:-1])
    candidates = np.unique(np.concatenate([order[repeated], order[repeated + 1]]))
    candidates = candidates[fingerprints[candidates].any(axis=1)]
    groups = []
    by_print: dict[tuple[int, int], list[int]] = {}
    for row in candidates.tolist():
        by_print.setdefault(tuple(fingerprints[row].tolist()), []).append(row)
    for rows in by_print.values():
        if len(rows) < 2:
            continue
        pixels = read(rows)
        by_bytes: dict[bytes, list[int]] = {}
        for row, image in zip(rows, pixels, strict=True):
            by_bytes.setdefault(image.tobytes(), []).append(row)
        groups.extend(group for group in by_bytes.values() if len(group) > 1)
    return sorted(groups)


def scan_shards(
    files: Sequence[str],
    layouts: Sequence[ArrayLayout],
    shard: np.ndarray,
    row: np.ndarray,
    recorded: dict[str, np.ndarray],
    checked: Mapping[int, np.ndarray],
    threads: int = 1,
) -> PixelScan:
    """The pass for the ``shards`` layout, in proportion to the change: the shard ``files`` (their
    pixels at ``layouts``) not in ``checked`` are read whole; ``checked`` maps the number of each
    shard an earlier run verified to the row digests its file records, and every row of those is
    taken as the row table records it (``recorded``: ``sha256s``, ``crc32s``, ``constant`` per
    dataset row), after checking that the table says what its shard file says (32 bytes a row; a
    row where they disagree counts as damaged).
    Each dataset row is shard ``shard[i]``, row ``row[i]``. A row whose bytes differ from what was
    recorded then fails the digest and CRC checks; ``low``, ``high`` and ``finite`` cover the rows
    read."""
    digests = np.array(recorded["sha256s"], np.uint8, copy=True).reshape(-1, DIGEST_BYTES)
    crcs = np.array(recorded["crc32s"], np.uint32, copy=True)
    constant = np.array(recorded["constant"], bool, copy=True)
    low = high = None
    finite = True
    for number, path in enumerate(files):
        mine = np.flatnonzero(shard == number)
        if number in checked:
            differs = mine[(checked[number][row[mine]] != digests[mine]).any(axis=1)]
            digests[differs] = 0  # table and file disagree: the row fails the digest and its CRC
            crcs[differs] = ~crcs[differs]
            continue
        scan = scan_images(path, layouts[number], threads)
        digests[mine] = scan.digests[row[mine]]
        crcs[mine] = scan.crcs[row[mine]]
        flat = np.zeros(len(scan.crcs), bool)
        flat[scan.constant] = True
        constant[mine] = flat[row[mine]]
        finite = finite and scan.finite
        if len(mine) and scan.low is not None:
            low = scan.low if low is None else min(low, scan.low)
            high = scan.high if high is None else max(high, scan.high)
    digest = TreeDigest()
    digest.update(digests)
    return PixelScan(digest.hexdigest(), low, high, finite, digests, np.flatnonzero(constant).tolist(), crcs)
