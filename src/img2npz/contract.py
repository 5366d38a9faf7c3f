"""The output contract: every file the workflow writes, what a reader may rely on in it, and which
modules write and read it. Every writer and reader imports its names from here.

The bytes of every ``.npz`` below (stored members, 64-byte alignment, fixed zip timestamps, member
order) are specified in :mod:`img2npz.npzformat`, the module that writes them. Text files are UTF-8
(file names that are not valid UTF-8 keep their bytes through ``surrogateescape``); JSON is written
by Python's ``json.dumps(..., sort_keys=True)``, ASCII-only, so equal content is equal bytes.

Row order
---------
Every per-image list of the dataset (``dataset.npz``, ``index.npz``, ``failures.tsv``,
``images.parquet``) is in the *index order*: relative POSIX paths sorted by their components
(:func:`path_sort_key`), so ``cat/x`` precedes ``cat-big/x`` as in torchvision's ``ImageFolder``.
Shards are not runs of it: a shard is written once and holds the images that were new when it was
written (:mod:`img2npz.allocation`), and ``images.parquet`` says which shard row holds each image.

``results/dataset.npz`` (format tag :data:`DATASET_FORMAT`)
-------------------------------------------------------------
Written by :mod:`img2npz.merge`. Its members, in this order (N images, K classes, S splits, H x W
the configured ``image.size``; every dtype little-endian):

===========  ==========================  ==========  =================================================
member       dtype                       shape       holds
===========  ==========================  ==========  =================================================
``images``   ``|u1``, ``<f2`` or ``<f4`` (N, H, W, 3) RGB pixels, C order, upright (EXIF applied)
``labels``   ``<i8``                     (N,)        index into ``classes``; -1 when unlabelled
``classes``  ``<Uk``                     (K,)        class names, sorted, unique
``paths``    ``<Uk``                     (N,)        path relative to ``source``, POSIX, index order
``crc32s``   ``<u4``                     (N,)        CRC-32 of row i's bytes, taken when decoded
``sha256s``  ``|u1``                     (N, 32)     sha256 of row i's bytes (the tree digest's leaves)
``phashes``  ``|u1``                     (N, 32)     256-bit perceptual hash of row i (below)
``mean_rgb`` ``|u1``                     (N, 3)      row i's mean R, G, B (0..255), rounded
``constant`` ``|b1``                     (N,)        row i is one colour throughout
``hash_quality`` ``|u1``                 (N,)        0..100: how far ``phashes[i]`` stands from noise
``field_quality`` ``|u1``                (N,)        0..100: how two-dimensional image i's full field is
``field_hashes`` ``|u1``                 (N, 36, 32) window hashes of image i's full field (below)
``source_size`` ``<u4``                  (N, 2)      width, height of image i's source as decoded
``split``    ``|i1``                     (N,)        only with ``splits``: index into ``splits``
``splits``   ``<Uk``                     (S,)        only with ``splits``: names, configured order
``meta``     ``<Uk``                     ()          one JSON document (below)
===========  ==========================  ==========  =================================================

(``<Uk``: UTF-32 text, ``k`` the longest string, at least 1.) Row ``i`` of every per-image member
describes the same image. ``images`` holds uint8 values 0..255, or floats: the uint8 values / 255,
then ``(x - mean) / std`` with ``image.normalize``. With ``merge.compress: true`` every member is
deflated (``np.load`` reads it; nothing can be memory-mapped); otherwise every member is stored.

``meta`` (:class:`DatasetMeta`) has the keys ``format`` (:data:`DATASET_FORMAT`), ``pixel`` (the
config that shapes pixels: ``size``, ``resize``, ``dtype``, ``background``, ``normalize``),
``images`` (N), ``classes`` (K), ``failures`` (rows of ``failures.tsv``), ``mean`` and ``std`` (3
floats each: per channel, on the 0..1 scale of the uint8 values, exact: computed from
``histogram``), ``histogram`` (3 lists of 256 counts: how many pixels of each channel have each
uint8 value), ``images_sha256`` and, with splits only, ``splits`` (``fractions``: name to
fraction; ``group_by``; ``counts``: name to images; with ``group_near_duplicates`` also the
rule the splits were joined under: ``near_duplicate_bits``, ``near_duplicate_crop_bits`` (null
without crops), ``min_hash_quality`` and ``min_field_quality``).

Digests, each checkable from this file alone: ``images_sha256`` is the hex tree digest of the
``images`` rows, ``sha256`` of the rows' sha256 digests (``sha256s``) concatenated in row order
(:mod:`img2npz.treedigest`, which any number of processes can verify; in ``img2npz/1`` files it was
the sha256 of the array's bytes in one stream, and nothing else differs), and ``crc32s[i]`` zlib's CRC-32 of row ``i``'s
``H * W * 3 * itemsize`` bytes, taken when the image was decoded and carried through every reuse
and copy since. The zip's own CRC-32 of each member is exact too.

Near-duplicates: ``phashes[i]`` is :mod:`img2npz.fingerprint`'s 256-bit perceptual hash of row
``i``'s uint8 pixels (before any float conversion), bit ``16 * u + v`` of the 16 x 16 DCT
coefficients in byte ``(16 * u + v) // 8``, most significant bit first; ``mean_rgb[i]`` the row's
mean R, G and B, rounded. Both are computed when the row is decoded and travel with it.
``field_hashes[i, k]`` is :mod:`img2npz.fieldhash`'s 256-bit hash of window ``k`` of the image's
full field (the upright source before the row's resize or crop): window ``k`` spans
``fieldhash.INTERVALS[k // 6]`` of the height and ``INTERVALS[k % 6]`` of the width, window 0 the
whole field; bits channel-major, then frequency ``8 * u + v``, packed most significant bit first.
A crop of a photo is found as a whole field near a window of its original. ``hash_quality[i]``
(0..100, :func:`img2npz.fingerprint.hashes_and_quality`) says how far row ``i``'s hash stands
from noise; near-duplicate searches leave out rows under ``validate.min_hash_quality``.
``field_quality[i]`` (0..100, :func:`img2npz.fieldhash.hashes_and_quality`) is the share of the
full field's energy in frequencies that vary along both axes: fields under
``validate.min_field_quality`` (a horizon, a gradient, stripes) are not searched for crops.
``source_size[i]`` is the upright source's width and height as decoded (JPEG draft decoding may
have shrunk it: the aspect, which the crops' check of the rows' pixels maps with, is kept).

Shards ``results/shards/{shard}.npz`` (format tag :data:`SHARD_FORMAT`)
-------------------------------------------------------------------------
Written by :mod:`img2npz.preprocess` once, never rewritten; always stored. Row ``i`` of every
per-row member is line ``i`` of the shard's manifest. Its members, in this order:

=================  ==============  ===============  ==============================================
member             dtype           shape            holds
=================  ==============  ===============  ==============================================
``images``         as the dataset  (rows, H, W, 3)  a row per manifest line; zeros where it failed
``paths``          ``<Uk``         (rows,)          path of each manifest line
``sizes``          ``<i8``         (rows,)          size of the file each row was decoded from
``mtimes_ns``      ``<i8``         (rows,)          that file's mtime in ns (with the path and
                                                    size: the key a row is copied under)
``ok``             ``|b1``         (rows,)          the row holds its image (else it failed)
``crc32s``         ``<u4``         (rows,)          CRC-32 of each row's bytes
``sha256s``        ``|u1``         (rows, 32)       sha256 of each row's bytes
``phashes``        ``|u1``         (rows, 32)       each row's perceptual hash
``mean_rgb``       ``|u1``         (rows, 3)        each row's mean R, G, B, rounded
``constant``       ``|b1``         (rows,)          the row is one colour throughout
``hash_quality``   ``|u1``         (rows,)          how far each row's hash stands from noise
``field_quality``  ``|u1``         (rows,)          how two-dimensional each image's full field is
``field_hashes``   ``|u1``         (rows, 36, 32)   window hashes of each image's full field
``source_size``    ``<u4``         (rows, 2)        width, height of each image's source as decoded
``histogram``      ``<i8``         (3, 256)         the ok rows' uint8 value counts per channel
``meta``           ``<Uk``         ()               JSON (:class:`ShardMeta`)
=================  ==============  ===============  ==============================================

The members from ``crc32s`` to ``source_size`` are the per-row members of :data:`ROW_MEMBERS`, the
one table the shard writer, the compaction's copy, the merge and the loader follow (zeros where a
row failed). ``meta`` has ``format``, ``pixel``, ``decoder`` (everything else that shapes a row's
bytes: the pixel config, ``max_image_pixels``, the filters, Pillow's version and the decoder's; a
compaction copies a row only under the same key, :mod:`img2npz.rowsource`), ``rows``, ``images``
(rows that hold their image) and ``failures``. Beside each shard: ``{shard}.failures.tsv`` (its
failed lines) and ``{shard}.stats.json`` (:class:`ShardStats`). Rows of images deleted or changed
since the shard was written stay in it; the dataset leaves them out.

The ``shards`` layout: ``results/dataset/`` (format tag :data:`SHARDED_DATASET_FORMAT`)
---------------------------------------------------------------------------------------
``results/dataset/index.npz``, written by :mod:`img2npz.merge`, is the row table; beside it,
``shards/{shard}.npz`` are the shard files it names (hard links to ``results/shards/``, or copies),
so the folder is whole on its own. Row ``i`` of the dataset is row ``row[i]`` of
``images`` in file ``shards[shard[i]]``; its other members are those of ``dataset.npz`` but
``images`` (the same values, in the same order):

===============  ==========  ==========  ====================================================
member           dtype       shape       holds
===============  ==========  ==========  ====================================================
``shard``        ``<i4``     (N,)        index into ``shards`` of the file holding row i
``row``          ``<i8``     (N,)        row i's number in that file's ``images``
``shards``       ``<Uk``     (F,)        shard files, relative to the folder
``labels``       ``<i8``     (N,)        as in dataset.npz
``classes``      ``<Uk``     (K,)        as in dataset.npz
``paths``        ``<Uk``     (N,)        as in dataset.npz
``crc32s``       ``<u4``     (N,)        as in dataset.npz
``sha256s``      ``|u1``     (N, 32)     as in dataset.npz
``phashes``      ``|u1``     (N, 32)     as in dataset.npz
``mean_rgb``     ``|u1``     (N, 3)      as in dataset.npz
``constant``     ``|b1``     (N,)        as in dataset.npz
``hash_quality`` ``|u1``   (N,)        as in dataset.npz
``field_quality`` ``|u1``  (N,)        as in dataset.npz
``field_hashes`` ``|u1``   (N, 36, 32) as in dataset.npz
``source_size`` ``<u4``    (N, 2)      as in dataset.npz
``split``        ``|i1``     (N,)        only with ``splits``: as in dataset.npz
``splits``       ``<Uk``     (S,)        only with ``splits``: as in dataset.npz
``meta``         ``<Uk``     ()          as dataset.npz's, with this layout's format tag
===============  ==========  ==========  ====================================================

``meta.images_sha256`` is defined on the rows in the index order, so it is the same in both
layouts and equal to a fresh build's. ``img2npz.NPZDataset("results/dataset")`` reads it.

Tables (tab-separated, a header line, then a line per row)
----------------------------------------------------------
A tab, newline, carriage return or backslash inside a field is written ``\\t``, ``\\n``, ``\\r``,
``\\\\`` (file names can hold them); :mod:`img2npz.tsv` reads and writes every one of them:

============================================  ========================  =====================
file                                          header                    written by
============================================  ========================  =====================
``results/index/shards/{shard}.tsv``          :data:`MANIFEST_HEADER`   index (never rewritten)
``results/index/classes.tsv``                 :data:`CLASSES_HEADER`    index
``results/failures.tsv``, shards' failures    :data:`FAILURE_HEADER`    preprocess, merge
``results/dataset.shards.tsv``                :data:`SHARD_TABLE_HEADER` merge (changes)
``results/report/changes.tsv``                :data:`CHANGES_HEADER`    validate (changes)
``results/report/near_duplicates.tsv``        :data:`NEAR_DUPLICATES_HEADER` validate (report)
============================================  ========================  =====================

A failure's ``stage`` is one of :data:`FAILURE_STAGES`. Every indexed file is in exactly one of
``dataset.npz:paths`` and ``failures.tsv``. ``results/index/images.parquet`` has one row per
indexed image: ``path``, ``size``, ``mtime_ns``, ``class``, ``label``, ``shard`` and ``row`` (the
shard row that holds it: its manifest line). A manifest line's ``from`` is empty, or, in a
compaction's new shard, ``{shard}:{row}``: the row to copy instead of decoding the file.

Other files
-----------
``results/validation.json``: ``{"passed": bool, "warnings": [names], "checks": [Check...]}``, each
check a :class:`Check`. ``results/dataset.verified.json``: a :class:`CopyCheck`, the merge's proof of
the pixels it copied into ``dataset.npz``. ``results/index/summary.json``: an :class:`IndexSummary` (the images
indexed, the shard bounds used, the files skipped by extension and the labels CSV's warnings).
``results/report/catalogue.npz`` (:data:`CATALOGUE_FORMAT`, written and read by
:mod:`img2npz.changes`), ``results/index/listing/*.npz`` (:mod:`img2npz.scan`) and
``results/index/keys/{shard}.npy`` (each manifest's keys as an array, :mod:`img2npz.manifests`) are
the workflow's own memory between runs; the first two's members are listed in
:data:`CATALOGUE_MEMBERS` and :data:`LISTING_MEMBERS`, and they may change with any version.

Who reads and writes what is :data:`FILES`; ``tests/test_contract.py`` holds the modules to it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, TypeVar

import numpy as np

from img2npz.atomic import write_bytes_atomic, write_if_changed
from img2npz.tsv import read_tsv

T = TypeVar("T")

DATASET_FORMAT = "img2npz/2"
# what the loader reads: img2npz/1 differs only in how meta.images_sha256 was computed
READABLE_DATASET_FORMATS = ("img2npz/1", DATASET_FORMAT)
SHARD_FORMAT = "img2npz-shard/9"
# results/dataset/index.npz of the shards layout: dataset.npz's members but images, and where each row is
SHARDED_DATASET_FORMAT = "img2npz-shards/1"
CATALOGUE_FORMAT = "img2npz-catalogue/5"
LISTING_FORMAT = "img2npz-listing/1"

UNLABELLED_LABEL = -1  # an image's label in dataset.npz when it has no class
UNLABELLED_CLASS = ""  # its class name in manifests, shards and images.parquet

FILTER_STAGE = "filter"  # an image left out by choice (the config's filters), not a failure to read it
FAILURE_STAGES = ("decode", "exif", "convert", "resize", FILTER_STAGE)


def path_sort_key(path: str) -> list[str]:
    """The index order: by path components, so ``cat/x`` precedes ``cat-big/x`` as in ImageFolder."""
    return path.split("/")


def table_path(path: str) -> str:
    """A path as ``images.parquet`` holds it (valid UTF-8): undecodable bytes of a file name become
    ``\\xNN``. Compare paths from the other lists through it."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class Member:
    """One npz member: ``dtype`` as numpy spells it (``unicode``: any ``<Un``; ``json``: a 0-d
    unicode array holding one JSON document), ``shape`` in the letters N (images), K (classes),
    S (splits), H and W (``image.size``)."""

    name: str
    dtype: str
    shape: str
    meaning: str


def _members(*rows: tuple[str, str, str, str]) -> tuple[Member, ...]:
    return tuple(Member(*row) for row in rows)


@dataclass(frozen=True)
class RowMember:
    """A per-row member that is not pixels: produced in the shard job when the row is written
    (:mod:`img2npz.preprocess`), copied with the row by a compaction, gathered by the merge into
    ``dataset.npz`` or the sharded layout's ``index.npz``, and read by the loader and the
    validation. To add one: a row here, and its producer in the shard job."""

    name: str
    dtype: str  # numpy's spelling, little-endian where it matters
    shape: tuple[int, ...]  # of one row's value
    meaning: str
    # large per row: the merge streams it from the shards a block at a time instead of holding it
    streamed: bool = False

    def empty(self, rows: int) -> np.ndarray:
        return np.zeros((rows, *self.shape), self.dtype)


# The one table of per-row members besides ``images`` and ``paths``. Order is member order.
ROW_MEMBERS = (
    RowMember("crc32s", "<u4", (), "CRC-32 of the row's bytes, taken when its image was decoded"),
    RowMember("sha256s", "|u1", (32,), "sha256 of the row's bytes (img2npz.treedigest)"),
    RowMember("phashes", "|u1", (32,), "256-bit perceptual hash of the row, bits packed (near-duplicates)"),
    RowMember("mean_rgb", "|u1", (3,), "mean R, G, B of the row, rounded (near-duplicates share it)"),
    RowMember("constant", "|b1", (), "the row is one colour throughout"),
    RowMember("hash_quality", "|u1", (), "0..100: how far the row hash stands from noise (fingerprint)"),
    RowMember("field_quality", "|u1", (), "0..100: how two-dimensional the source's full field is (crops)"),
    RowMember(
        "field_hashes",
        "|u1",
        (36, 32),
        "256-bit hashes of 36 windows of the source's full field, window 0 the whole (crops)",
        streamed=True,
    ),
    RowMember("source_size", "<u4", (2,), "width and height of the upright source as decoded (crops)"),
)


def row_member(name: str) -> RowMember:
    return next(member for member in ROW_MEMBERS if member.name == name)


def _row_rows(members: Sequence[RowMember], count: str) -> tuple[tuple[str, str, str, str], ...]:
    def shape(member: RowMember) -> str:
        return f"({count}, {', '.join(map(str, member.shape))})" if member.shape else f"({count},)"

    return tuple((m.name, np.dtype(m.dtype).name, shape(m), m.meaning) for m in members)


# name, dtype, shape, meaning; the members of both layouts' row tables after the pixels' places
_LABELLED_ROWS = (
    ("labels", "int64", "(N,)", "index into `classes`; `-1` when unlabelled"),
    ("classes", "unicode", "(K,)", "class names, sorted"),
    ("paths", "unicode", "(N,)", "path relative to `source`, in the index order"),
)
DATASET_MEMBERS = _members(
    ("images", "uint8 | float16 | float32", "(N, H, W, 3)", "RGB pixels, upright (EXIF applied)"),
    *_LABELLED_ROWS,
    *_row_rows(ROW_MEMBERS, "N"),
    ("meta", "json", "()", "format, pixel config, counts, mean/std, histogram, sha256 tree digest of `images`"),
)
# Members added since img2npz/1's first release (additive: a reader that ignores them reads every
# img2npz file): an older dataset lacks them, and the loader does not need them.
ADDED_DATASET_MEMBERS = (
    "sha256s",
    "phashes",
    "mean_rgb",
    "constant",
    "hash_quality",
    "field_quality",
    "field_hashes",
    "source_size",
)
SPLIT_MEMBERS = _members(
    ("split", "int8", "(N,)", "each row's split, an index into `splits`"),
    ("splits", "unicode", "(S,)", "split names, in the configured order"),
)
SHARD_MEMBERS = _members(
    ("images", "uint8 | float16 | float32", "(rows, H, W, 3)", "a row per manifest line; zeros where it failed"),
    ("paths", "unicode", "(rows,)", "path of each manifest line"),
    ("sizes", "int64", "(rows,)", "size in bytes of the file each row was decoded from"),
    ("mtimes_ns", "int64", "(rows,)", "its mtime in ns (with the size and path: the key a row is copied under)"),
    ("ok", "bool", "(rows,)", "the row holds its image (False: the file failed, see the failures file)"),
    *_row_rows(ROW_MEMBERS, "rows"),
    ("histogram", "int64", "(3, 256)", "counts of the ok rows' uint8 values per channel"),
    ("meta", "json", "()", "ShardMeta"),
)
# ``results/dataset/index.npz``, the ``shards`` layout's row table: every member of dataset.npz but
# ``images``, each row's shard and row there instead.
INDEX_MEMBERS = _members(
    ("shard", "int32", "(N,)", "index into `shards` of the shard file holding the row"),
    ("row", "int64", "(N,)", "the row's number in that shard's `images`"),
    ("shards", "unicode", "(F,)", "shard files, relative to the dataset folder"),
    *_LABELLED_ROWS,
    *_row_rows(ROW_MEMBERS, "N"),
    ("meta", "json", "()", "as dataset.npz's, with format img2npz-shards/1"),
)

CATALOGUE_MEMBERS = _members(
    ("format", "unicode", "()", "CATALOGUE_FORMAT"),
    ("images_sha256", "unicode", "()", "the catalogued dataset's images_sha256"),
    ("count", "int64", "()", "images"),
    ("paths", "uint8", "(bytes,)", "NUL-joined paths in the index order (npzformat.strings_blob)"),
    ("path_keys", "uint64", "(N,)", "each path's key (pathkeys.path_keys): the next run matches its rows by them"),
    ("class_names", "uint8", "(bytes,)", 'NUL-joined class names ("": unlabelled)'),
    ("labels", "int32", "(N,)", "each image's index into class_names"),
    ("split_names", "uint8", "(bytes,)", 'NUL-joined split names ("" without splits)'),
    ("splits", "int32", "(N,)", "each image's index into split_names"),
    ("fingerprints", "uint64", "(N, 4)", "each image's row sha256, as four words"),
    ("shard_ids", "uint8", "(bytes,)", "NUL-joined shard ids"),
    ("shard_mtimes", "int64", "(shards,)", "each shard npz's mtime_ns"),
    ("rows", "uint8", "(bytes,)", "the last change report, tab-joined rows"),
    ("examples", "uint8", "(bytes,)", "its example paths, `what<TAB>path`"),
    ("verified_ids", "uint8", "(bytes,)", "NUL-joined ids of the shards a passed validation read"),
    ("verified_mtimes", "int64", "(verified,)", "each one's npz mtime_ns then"),
    ("near_bits", "int64", "()", "the key of the rule near_pairs were found under, nearrule.NearRule.key (-1: none)"),
    ("near_pairs", "int64", "(M, 2)", "near-duplicate pairs of rows, as the validation found them"),
    ("passed", "bool", "()", "the validation that wrote it passed (else no row of it counts as verified)"),
)
LISTING_MEMBERS = _members(
    ("format", "unicode", "()", "LISTING_FORMAT"),
    ("paths", "uint8", "(bytes,)", "NUL-joined paths in index order"),
    ("sizes", "int64", "(N,)", "file sizes"),
    ("mtimes", "int64", "(N,)", "mtimes in ns"),
    ("hashes", "uint64", "(N,)", "sharding.path_hash of each path (optional: the index computes them)"),
    ("skipped", "unicode", "()", "JSON: files left out by extension, extension -> count"),
)


def member_names(members: Sequence[Member]) -> tuple[str, ...]:
    return tuple(member.name for member in members)


def _from_document(cls: type[T], text: str, what: str, strict: bool = True) -> T:
    """``cls`` from a JSON object; a missing key raises, or with ``strict=False`` becomes None."""
    document = json.loads(text)
    if not isinstance(document, dict):
        raise ValueError(f"{what} is not a JSON object")
    missing = [field.name for field in fields(cls) if field.name not in document and field.default is not None]
    if missing and strict:
        raise ValueError(f"{what} lacks {', '.join(missing)}")
    return cls(**{field.name: document.get(field.name) for field in fields(cls)})


@dataclass(frozen=True)
class DatasetMeta:
    """``dataset.npz``'s ``meta`` (see the module docstring)."""

    format: str
    pixel: dict
    images: int
    classes: int
    failures: int
    mean: list[float]
    std: list[float]
    histogram: list[list[int]]
    images_sha256: str
    # {"fractions": {name: f}, "group_by": str, "counts": {name: n}[, "near_duplicate_bits": int]}
    splits: dict | None = None

    def to_json(self) -> str:
        document = asdict(self)
        if self.splits is None:
            del document["splits"]
        return json.dumps(document, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, strict: bool = True) -> DatasetMeta:
        """Raises ``ValueError`` on another format or a missing key; ``strict=False`` (for the
        validation, which reports what is wrong instead) leaves a missing key None."""
        meta = _from_document(cls, text, "meta", strict)
        if strict and meta.format != DATASET_FORMAT:
            raise ValueError(f"format {meta.format!r}, expected {DATASET_FORMAT!r}")
        return meta


@dataclass(frozen=True)
class ShardMeta:
    """A shard's ``meta``: ``rows`` manifest lines, ``images`` of them hold their image and
    ``failures`` failed; ``decoder`` is the key a compaction copies its rows under (everything
    besides the file that shapes a row's bytes)."""

    format: str
    pixel: dict
    decoder: dict
    rows: int
    images: int
    failures: int

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ShardMeta:
        """Raises ``ValueError`` when it is not an img2npz shard of this version."""
        meta = _from_document(cls, text, "meta")
        if meta.format != SHARD_FORMAT:
            raise ValueError(f"not an img2npz shard of this version (format {meta.format!r}, not {SHARD_FORMAT!r})")
        return meta


@dataclass(frozen=True)
class CopyCheck:
    """The merge's proof of the pixels it copied (``results/dataset.verified.json``): ``rows`` of
    ``dataset.npz`` read back from the page cache as the copy was made, in the file of that ``size``
    and ``inode``. With ``hashed`` true, every row read back had the sha256, CRC-32 and one-colour
    test its shard recorded when it was decoded (the validation's own per-row pass,
    :mod:`img2npz.readback`): here, or at an earlier merge for the rows of ``shards`` still as
    recorded (id -> that shard file's [mtime_ns, size, inode] and a digest of the rows the dataset
    takes from it), their ranges' CRC-32s read back here; ``finite``, ``low``
    and ``high`` are the pixels' (floats; None for uint8): validate-report then reads no pixel.
    Otherwise (``merge_shards(hash_rows=False)``, or a proof of an earlier release) each range's
    CRC-32 was its shard's, and validate-report reads only the rows it hashes. A file
    changed since is read whole: another size or inode, or a modification or change time later than
    the proof file's (Snakemake touches a job's outputs after it, in their order: the dataset before
    the proof; a change time cannot be set back, so a file put back with its old mtime counts as
    changed). Damage that changes neither, on the disk itself, is not seen. ``rows`` is 0 where
    nothing was proven: the ``shards`` layout (no copy), a compressed member, ``merge.streams``
    above 1, a file system without kernel copies. ``written``: the proof file's (mtime, ctime) in
    ns, when loaded (not in the file)."""

    rows: int
    size: int = 0
    inode: int = 0
    written: tuple[int, int] | None = None
    hashed: bool | None = None
    finite: bool | None = None
    low: float | None = None
    high: float | None = None
    shards: dict[str, list] | None = None

    @classmethod
    def of(cls, path: str | os.PathLike, rows: int, **read_back) -> CopyCheck:
        stat = os.stat(path)
        return cls(rows, stat.st_size, stat.st_ino, **read_back)

    def holds_for(self, path: str | os.PathLike, rows: int) -> bool:
        """Whether this proves every one of ``rows`` rows of the file at ``path`` as it is now."""
        stat = os.stat(path)
        return (
            rows > 0
            and self.rows == rows
            and (stat.st_size, stat.st_ino) == (self.size, self.inode)
            and self.written is not None
            and stat.st_mtime_ns <= self.written[0]
            and stat.st_ctime_ns <= self.written[1]
        )

    def save(self, path: str | os.PathLike) -> None:
        document = {key: value for key, value in asdict(self).items() if key != "written"}
        write_bytes_atomic(path, json.dumps(document, sort_keys=True).encode() + b"\n", durable=False)

    @classmethod
    def load(cls, path: str | os.PathLike) -> CopyCheck:
        with open(path, encoding="utf-8") as handle:
            check = _from_document(cls, handle.read(), os.fspath(path))
            stat = os.fstat(handle.fileno())
            return replace(check, written=(stat.st_mtime_ns, stat.st_ctime_ns))


@dataclass(frozen=True)
class ShardStats:
    """A shard job's account of its shard (``{shard}.stats.json``): ``images`` rows that hold their
    image, ``failures``, how many rows it ``copied`` from other shards (a compaction) and how many
    files it ``decoded`` (failures included)."""

    images: int
    failures: int
    copied: int
    decoded: int

    def save(self, path: str | os.PathLike) -> None:
        write_bytes_atomic(path, json.dumps(asdict(self), sort_keys=True).encode() + b"\n", durable=False)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ShardStats:
        with open(path, encoding="utf-8") as handle:
            return _from_document(cls, handle.read(), os.fspath(path))


@dataclass(frozen=True)
class IndexSummary:
    """The index job's account of the tree (``results/index/summary.json``): ``images`` indexed,
    ``shards`` on its manifests, and the shard bounds new shards are cut with (``shards.*`` of the config, nulls
    resolved by the tree's size, :func:`img2npz.sharding.resolve_bounds`). The workflow sizes its
    jobs' resources from it without reading a manifest. ``skipped`` counts the files that
    ``extensions`` left out, by extension (lower case, ``""`` for none), and ``warnings`` says,
    a line each, what was wrong with the labels CSV; the report shows both (None in files of
    versions before them)."""

    images: int
    shards: int
    target_images: int
    min_images: int
    max_images: int
    skipped: dict | None = None
    warnings: list | None = None
    # this run's new shards, and the rows that went into them: {"shards", "decode", "copy"}
    written: dict | None = None
    # what a compaction rewrote and why (img2npz.allocation.Compaction), None when none ran
    compaction: dict | None = None

    def save(self, path: str | os.PathLike) -> bool:
        """Write it unless the file already says exactly this (an unchanged file keeps its mtime)."""
        return write_if_changed(path, json.dumps(asdict(self), sort_keys=True).encode() + b"\n", durable=False)

    @classmethod
    def load(cls, path: str | os.PathLike) -> IndexSummary:
        with open(path, encoding="utf-8") as handle:
            return _from_document(cls, handle.read(), os.fspath(path))


@dataclass
class Check:
    """One entry of ``validation.json``: ``value`` is what was measured, ``severity`` ``hard``
    (a failure fails the run) or ``soft`` (it warns)."""

    name: str
    passed: bool
    value: Any
    threshold: Any = None
    severity: str = "hard"


MANIFEST_HEADER = ("path", "size", "mtime_ns", "from")  # from: "" (decode) or "{shard}:{row}" (copy)
NEAR_DUPLICATES_HEADER = ("group", "path", "split")
CLASSES_HEADER = ("index", "class", "images")
FAILURE_HEADER = ("path", "stage", "error")
SHARD_TABLE_HEADER = ("shard", "npz_mtime_ns", "copied", "decoded")
CHANGES_HEADER = ("what", "class", "split", "count")


def read_classes(path: str | os.PathLike) -> list[str]:
    """The class names of ``classes.tsv``, in label order."""
    return [name for _, name, _ in read_tsv(path, CLASSES_HEADER)]


@dataclass(frozen=True)
class FileSpec:
    """Where a file lies (relative to the working directory), and the modules of
    ``img2npz`` that write and read it."""

    path: str
    writer: str
    readers: tuple[str, ...]
    members: tuple[Member, ...] = ()
    header: tuple[str, ...] = ()


FILES = (
    FileSpec("results/index/shards/{shard}.tsv", "manifests", ("manifests", "preprocess"), header=MANIFEST_HEADER),
    FileSpec("results/index/keys/{shard}.npy", "manifests", ("manifests",)),
    FileSpec("results/index/classes.tsv", "index", ("dataset",), header=CLASSES_HEADER),
    FileSpec("results/index/images.parquet", "index", ("facts", "merge")),
    # read by the workflow's resource functions, and by the report for its notes
    FileSpec("results/index/summary.json", "index", ("validate", "report")),
    FileSpec("results/index/listing/{fingerprint}.npz", "scan", ("scan",), members=LISTING_MEMBERS),
    FileSpec(
        "results/shards/{shard}.npz",
        "preprocess",
        ("merge", "rowsource", "dataset", "facts"),
        members=SHARD_MEMBERS,
    ),
    FileSpec("results/shards/{shard}.failures.tsv", "preprocess", ("merge", "rowsource"), header=FAILURE_HEADER),
    FileSpec("results/shards/{shard}.stats.json", "preprocess", ("changes",)),
    FileSpec(
        "results/dataset.npz",
        "merge",
        ("facts", "checks", "dataset"),
        members=DATASET_MEMBERS + SPLIT_MEMBERS,
    ),
    FileSpec(
        "results/dataset/index.npz",
        "merge",
        ("facts", "checks", "dataset"),
        members=INDEX_MEMBERS + SPLIT_MEMBERS,
    ),
    FileSpec("results/failures.tsv", "merge", ("facts", "report"), header=FAILURE_HEADER),
    FileSpec("results/dataset.shards.tsv", "changes", ("changes",), header=SHARD_TABLE_HEADER),
    FileSpec("results/dataset.verified.json", "merge", ("facts",)),
    FileSpec("results/validation.json", "validate", ()),
    FileSpec("results/report/changes.tsv", "changes", ("htmlreport",), header=CHANGES_HEADER),
    FileSpec("results/report/near_duplicates.tsv", "report", (), header=NEAR_DUPLICATES_HEADER),
    FileSpec("results/report/catalogue.npz", "changes", ("changes",), members=CATALOGUE_MEMBERS),
)


def member_modules() -> dict[str, set[str]]:
    """Member name -> the modules that may name it (the writers and readers of a file holding it)."""
    known: dict[str, set[str]] = {}
    for spec in FILES:
        for member in spec.members:
            known.setdefault(member.name, set()).update({spec.writer, *spec.readers})
    return known
