"""What makes two images near-duplicates, in one place: the validation, the splits' grouping and
the ``near`` filter all ask here, so they agree on every pair.

Two rows are near-duplicates when

* their row hashes (``phashes``) are at most ``bits`` apart and their mean colours alike
  (:func:`img2npz.neardup.near_duplicate_pairs`), or
* with crops on, one row's whole field is at most ``crop_bits`` from a window of the other's
  (``field_hashes``, :mod:`img2npz.cropsearch`), their mean colours are alike
  (:data:`CROP_COLOUR_TOLERANCE`: a crop's mean colour moves a little with what it cut) and both
  fields' ``field_quality`` is ``min_field_quality`` or more (a field whose structure runs along
  one axis, a horizon, is told from its kind by too few numbers to tell a crop from a look-alike),
  and their rows' pixels agree where they show the same part of the picture
  (:mod:`img2npz.cropcheck`: the field hashes see a 32 x 32 layout, which look-alikes share);

and neither row's ``hash_quality`` is under ``min_quality`` - except that rows with the same row
hash and mean colour are always joined (copies: a blank picture and its copy hash alike, their
bits all ties). A low-quality hash is driven by noise or ties, and its bits flip under a
re-encoding: matched, it gives pairs that come and go, and false ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from img2npz import cropcheck, cropsearch, neardup

# Threads for the near-duplicate search: two take 35% less time at 10^6 images (17 s, not 26 s),
# but 30 MB more each, and the search is validate's peak: one keeps its memory within 2x of 10^5's.
SEARCH_THREADS = 1
# Chromaticity apart, at most, for a crop pair: what a crop cut off moves the mean colour by (10%
# at a corner: 0.031 at the 95th percentile), far less than the row hashes' tolerance. Among
# 23,000 edited images of 1,000 scenes there were 60 pairs of two scenes at 0.1, 11 at 0.06 and
# none at 0.035, and every crop up to 10% was still found 92% of the time (bench/neardup.py); on
# 1,000 held-out scenes (--first 20000) 21 pairs at 0.035 and 26 at 0.06, from 3 pairs of scenes.
CROP_COLOUR_TOLERANCE = 0.035
# The version of what the rule reads besides the row hashes (the hash quality, the field hashes and
# their quality) and of the crops' check of pixels (img2npz.cropcheck): a release that changes any
# of them bumps it (and the shard format, where the shards' members change).
SCORES_VERSION = 2  # 2: the pixel check reads grey levels whatever the dtype, keeps what it cannot check


@dataclass(frozen=True)
class NearRule:
    """The thresholds: ``bits`` for the row hashes, ``crop_bits`` for crops (None: crops are not
    searched), ``min_quality`` below which a row is matched only to its exact hash copies,
    ``min_field_quality`` below which a field is not searched for crops."""

    bits: int
    crop_bits: int | None = None
    min_quality: int = 0
    min_field_quality: int = 0

    def key(self) -> int:
        """One integer for the catalogue's ``near_bits``: ``bits`` alone for the rule of old
        (no crops, no quality floor), so a catalogue written before them still counts. A rerun
        keeps the pairs of rows whose pixels did not change, so the key also holds what else the
        pairs follow: the crops' colour tolerance and :data:`SCORES_VERSION`."""
        crops = 0 if self.crop_bits is None else self.crop_bits + 1 + 1000 * self.min_field_quality
        key = self.bits + 1000 * crops + 10**9 * self.min_quality
        if self.crop_bits is not None or self.min_quality:
            tolerance = round(1000 * CROP_COLOUR_TOLERANCE) if self.crop_bits is not None else 0
            key += 10**12 * (tolerance + 1000 * SCORES_VERSION)
        return key


@dataclass
class HashColumns:
    """The per-row members a search reads: row hashes, mean colours, hash and field qualities in
    memory; the field hashes through ``fields`` (:data:`img2npz.cropsearch.Windows`), a block at
    a time. ``dataset_rows``: the rows of the dataset these are of (a subset keeps its whole's),
    which the crop search's chunks follow. With ``sizes`` (``source_size``), ``pixels`` (the rows'
    pixels, a batch at a time) and ``placement`` (the rows' (width, height) and resize mode), crop
    pairs are checked in their pixels (:mod:`img2npz.cropcheck`)."""

    hashes: np.ndarray
    colours: np.ndarray
    quality: np.ndarray
    field_quality: np.ndarray
    fields: cropsearch.Windows | None = None
    dataset_rows: int | None = None
    sizes: np.ndarray | None = None
    pixels: cropcheck.Pixels | None = None
    placement: tuple[tuple[int, int], str] | None = None

    def layout_rows(self) -> int:
        return len(self.hashes) if self.dataset_rows is None else self.dataset_rows

    def wholes(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Window 0 (the whole field) of each row, or of ``rows`` (ascending), read in blocks."""
        rows = np.arange(len(self.hashes)) if rows is None else np.asarray(rows, np.int64)
        out = np.zeros((len(rows), cropsearch.BYTES), np.uint8)
        for start in range(0, len(rows), cropsearch.BLOCK_ROWS):
            part = rows[start : start + cropsearch.BLOCK_ROWS]
            out[start : start + len(part)] = self.fields(part)[:, 0]
        return out

    def subset(self, rows: np.ndarray) -> HashColumns:
        """The columns of ``rows`` (ascending) only, numbered 0.. in their order."""
        rows = np.asarray(rows, np.int64)
        fields, pixels = self.fields, self.pixels
        return HashColumns(
            self.hashes[rows],
            self.colours[rows],
            self.quality[rows],
            self.field_quality[rows],
            None if fields is None else (lambda part: cropsearch.read_runs(fields, rows[part])),
            self.layout_rows(),
            None if self.sizes is None else self.sizes[rows],
            None if pixels is None else (lambda part: pixels(rows[part])),
            self.placement,
        )


def pairs(
    rule: NearRule, columns: HashColumns, threads: int = 1, queries: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first, second, distance), first < second, sorted by pair, unique: every near-duplicate pair
    under ``rule`` (``queries``: only those with one of these rows). ``distance`` is the row
    hashes' where they are within ``rule.bits``, else the crop's (whole field to window)."""
    hashes, colours = columns.hashes, columns.colours
    if queries is None:
        first, second = neardup.near_duplicate_pairs(hashes, colours, rule.bits, threads)
    else:
        first, second = neardup.pairs_involving(hashes, colours, rule.bits, queries, threads)
    usable = _usable(columns, rule.min_quality)
    copies = (hashes[first] == hashes[second]).all(axis=1) & (colours[first] == colours[second]).all(axis=1)
    keep = (usable[first] & usable[second]) | copies
    first, second = first[keep], second[keep]
    distance = neardup.distances(hashes[first], hashes[second])
    if rule.crop_bits is not None and len(hashes) > 1:
        crops = _crop_pairs(rule, columns, usable, queries)
        first, second, distance = _union((first, second, distance), crops, len(hashes))
    return first, second, distance


def _crop_pairs(
    rule: NearRule, columns: HashColumns, usable: np.ndarray, queries: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first, second, distance) of the crop pairs: found by the field hashes among fields of
    quality, of like colour, and (where the columns hold the pixels) agreeing in their rows."""
    searched = usable & (columns.field_quality >= rule.min_field_quality)
    more = cropsearch.crop_matches(
        columns.wholes(), columns.fields, rule.crop_bits, searched, queries, columns.layout_rows()
    )
    alike = neardup.colour_apart(columns.colours[more[0]], columns.colours[more[1]]) <= CROP_COLOUR_TOLERANCE
    first, second, distance, whole, window = (part[alike] for part in more)
    if columns.sizes is not None and columns.pixels is not None and columns.placement is not None:
        other = np.where(whole == first, second, first)
        agree = cropcheck.agree(whole, other, window, columns.sizes, columns.pixels, *columns.placement)
        first, second, distance = first[agree], second[agree], distance[agree]
    return first, second, distance


def _usable(columns: HashColumns, floor: int) -> np.ndarray:
    """Rows whose hash quality is ``floor`` or more, a set of copies (same hash and colour) all
    as its best: the searches pair a set through whichever of its rows they meet first (a whole
    search its first row, a rerun's its new one), so the floor must not depend on which."""
    usable = columns.quality >= floor
    if usable.all():
        return usable
    owner = neardup.copy_owners(columns.hashes, columns.colours)
    best = np.zeros(len(owner), np.int64)
    np.maximum.at(best, owner, columns.quality)
    return best[owner] >= floor


def _union(rows: tuple, crops: tuple, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pairs of both, each once: a pair of both keeps its row-hash distance."""
    keys = np.concatenate([rows[0] * count + rows[1], crops[0] * count + crops[1]]).astype(np.int64)
    distance = np.concatenate([rows[2], crops[2]]).astype(np.int64)
    order = np.argsort(keys, kind="stable")  # row-hash pairs first among equal keys
    keys, distance = keys[order], distance[order]
    first_of = np.concatenate(([True], keys[1:] != keys[:-1])) if len(keys) else np.zeros(0, bool)
    keys, distance = keys[first_of], distance[first_of]
    return keys // count, keys % count, distance
