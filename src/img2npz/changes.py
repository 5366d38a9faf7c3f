"""What a run changed in the dataset: images added, removed and changed, shards written, and the
images their jobs decoded and the rows they copied (a compaction).

Snakemake deletes a job's outputs before it runs, so the previous ``dataset.npz`` is gone when its
successor is checked. validate-report therefore keeps a small catalogue of the dataset it last
passed (``results/report/catalogue.npz``, a Snakemake ``update()`` output: kept across runs, and
restored when a run fails): per image its path, class, split and its row's sha256 (in arrays, about
50 bytes an image; matched with the new dataset by path, then compared as arrays); per shard the
npz's mtime; and the change rows of the last run that changed the dataset, so a rerun that only
re-checks (a ``validate.*`` edit) reports the same changes instead of "nothing".
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from img2npz.atomic import atomic_output
from img2npz.contract import CATALOGUE_FORMAT, CHANGES_HEADER, SHARD_TABLE_HEADER, ShardStats
from img2npz.npzformat import blob_strings, iter_blob, streamed_blob, strings_blob, write_npz
from img2npz.pathkeys import first_rows, keys_of_strings
from img2npz.tsv import TAB, escape_field, read_tsv, unescape_field, write_tsv

EXAMPLES = 10


def _line(fields) -> str:
    """A row as one tab-separated line, escaped as in the TSVs (class names may hold tabs)."""
    return TAB.join(escape_field(field) for field in fields)


def _fields(line: str) -> list[str]:
    return [unescape_field(field) for field in line.split(TAB)]


def _codes(names: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Per-image names as (the distinct names, each image's index into them)."""
    unique, inverse = np.unique(np.array(names, dtype=str), return_inverse=True) if names else ([], [])
    return list(unique), np.asarray(inverse, np.int32).reshape(-1)


@dataclass
class Catalogue:
    """What the last checked dataset held, per image in the index order: its path (in one blob, and
    its key: :func:`img2npz.pathkeys.path_keys`), class and split (as codes into ``class_names``
    and ``split_names``) and its row's sha256 (``fingerprints``: four uint64 words).
    About 60 bytes an image, in arrays."""

    images_sha256: str
    paths: np.ndarray  # uint8 NUL-joined blob
    count: int
    path_keys: np.ndarray  # uint64 per image
    class_names: list[str]
    labels: np.ndarray  # int32 per image: index into class_names
    split_names: list[str]
    splits: np.ndarray  # int32 per image: index into split_names
    fingerprints: np.ndarray  # (N, 2) uint64
    shards: dict[str, int]  # shard id -> npz mtime_ns
    rows: list[tuple[str, str, str, int]] = field(default_factory=list)  # the change report it carries
    examples: dict[str, list[str]] = field(default_factory=dict)
    # shard id -> npz mtime_ns of the shards whose rows a passed validation read (the shards layout
    # reads only the others)
    verified: dict[str, int] = field(default_factory=dict)
    # the near-duplicate pairs found among these images (rows), and the threshold they were found
    # under (-1: none searched), so the next run looks up only its new rows
    near_bits: int = -1
    near_pairs: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))
    # whether the validation that wrote it passed: only then does the next run take its
    # fingerprints as verified (Snakemake restores the last one when a validation fails)
    passed: bool = True

    @classmethod
    def of(
        cls,
        images_sha256: str,
        paths: Iterable[str],
        classes: Sequence[str],
        splits: Sequence[str],
        fingerprints: np.ndarray,
        shards: dict[str, int],
        rows: list | None = None,
        examples: dict | None = None,
    ) -> Catalogue:
        """From per-image class and split names (small catalogues, tests)."""
        paths = list(paths)
        blob, count = streamed_blob(paths)
        class_names, labels = _codes(classes)
        split_names, split_codes = _codes(splits)
        return cls(
            images_sha256, blob, count, keys_of_strings(paths), class_names, labels, split_names, split_codes,
            fingerprints, shards, list(rows or []), dict(examples or {}),
        )  # fmt: skip

    def iter_paths(self) -> Iterator[str]:
        return iter_blob(self.paths, self.count)

    def save(self, path: str | os.PathLike) -> None:
        blob = strings_blob
        arrays = {
            "format": np.array(CATALOGUE_FORMAT),
            "images_sha256": np.array(self.images_sha256),
            "count": np.array(self.count),
            "paths": self.paths,
            "path_keys": np.asarray(self.path_keys, np.uint64),
            "class_names": blob(self.class_names),
            "labels": np.asarray(self.labels, np.int32),
            "split_names": blob(self.split_names),
            "splits": np.asarray(self.splits, np.int32),
            "fingerprints": self.fingerprints,
            "shard_ids": blob(list(self.shards)),
            "shard_mtimes": np.array(list(self.shards.values()), np.int64),
            "rows": blob([_line(row) for row in self.rows]),
            "examples": blob([_line((what, path)) for what, paths in self.examples.items() for path in paths]),
            "verified_ids": blob(list(self.verified)),
            "verified_mtimes": np.array(list(self.verified.values()), np.int64),
            "near_bits": np.array(self.near_bits, np.int64),
            "near_pairs": np.asarray(self.near_pairs, np.int64).reshape(-1, 2),
            "passed": np.array(self.passed),
        }
        with atomic_output(path, durable=False) as handle:
            write_npz(handle, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Catalogue | None:
        """The saved catalogue, or None when there is none (first run) or it is not one of ours."""
        try:
            data = np.load(path)
        except (OSError, ValueError):
            return None
        with data:
            if "format" not in data or str(data["format"]) != CATALOGUE_FORMAT:
                return None
            count = int(data["count"])
            names = {name: blob_strings(data[name], None) for name in ("class_names", "split_names", "shard_ids")}
            for name in ("class_names", "split_names"):  # one empty name is a blob of no bytes
                names[name] = names[name] or ([""] if count else [])
            rows = [_fields(line) for line in blob_strings(data["rows"])]
            examples: dict[str, list[str]] = {}
            for line in blob_strings(data["examples"]):
                what, example = _fields(line)
                examples.setdefault(what, []).append(example)
            ids = names["shard_ids"]
            verified = blob_strings(data["verified_ids"], None)
            return cls(
                str(data["images_sha256"]),
                data["paths"],
                count,
                data["path_keys"],
                names["class_names"],
                data["labels"],
                names["split_names"],
                data["splits"],
                data["fingerprints"],
                dict(zip(ids, data["shard_mtimes"].tolist(), strict=True)) if ids else {},
                [(a, b, c, int(d)) for a, b, c, d in rows],
                examples,
                dict(zip(verified, data["verified_mtimes"].tolist(), strict=True)) if verified else {},
                int(data["near_bits"]) if "near_bits" in data else -1,
                data["near_pairs"] if "near_pairs" in data else np.zeros((0, 2), np.int64),
                bool(data["passed"]),
            )


@dataclass(frozen=True)
class ShardRecord:
    """One row of ``dataset.shards.tsv``: the npz's mtime, and the rows its job copied and decoded."""

    mtime_ns: int
    copied: int
    decoded: int


def write_shard_table(shard_npzs: list[str], stats: Mapping[str, ShardStats], path: str | os.PathLike) -> None:
    """Per shard, noted by the merge: its npz's mtime (a shard rebuilt since the last check has a
    new one) and how its job got its rows. The merge notes it so validate-report need not list every
    shard npz as an input (with 10^3 inputs, Snakemake's job selection hung on SIGTERM now and then)."""
    rows = []
    for npz in shard_npzs:
        shard = os.path.basename(npz).removesuffix(".npz")
        rows.append((shard, os.stat(npz).st_mtime_ns, stats[shard].copied, stats[shard].decoded))
    write_tsv(path, SHARD_TABLE_HEADER, sorted(rows))


def read_shard_table(path: str | os.PathLike) -> dict[str, ShardRecord]:
    return {shard: ShardRecord(*map(int, rest)) for shard, *rest in read_tsv(path, SHARD_TABLE_HEADER)}


COMPACTION = "compaction"  # the examples' key for what a compaction did, in words


def previous_rows(previous: Catalogue | None, path_keys: np.ndarray) -> np.ndarray:
    """The row in ``previous`` of each path (by its key), -1 where it has none (int64)."""
    if previous is None:
        return np.full(len(path_keys), -1, np.int64)
    return first_rows(path_keys, previous.path_keys)


def _row_changes(previous: Catalogue | None, current: Catalogue, old_of: np.ndarray) -> tuple[Counter, dict]:
    """The images added, removed and changed (class, split or pixels) by (what, class, split), and
    the first :data:`EXAMPLES` paths of each, in the index order; counted in arrays."""
    matched = old_of >= 0
    kinds = {"added": (current, np.flatnonzero(~matched))}
    if previous is not None:
        removed = np.ones(previous.count, bool)
        removed[old_of[matched]] = False
        kinds["removed"] = (previous, np.flatnonzero(removed))
        mine, theirs = np.flatnonzero(matched), old_of[matched]

        def renamed(names: list[str], to: list[str]) -> np.ndarray:
            index = {name: number for number, name in enumerate(to)}
            return np.array([index.get(name, -1) for name in names] or [-1], np.int64)

        differs = (
            (renamed(previous.class_names, current.class_names)[previous.labels[theirs]] != current.labels[mine])
            | (renamed(previous.split_names, current.split_names)[previous.splits[theirs]] != current.splits[mine])
            | (previous.fingerprints[theirs] != current.fingerprints[mine]).any(axis=1)
        )
        kinds["changed"] = (current, mine[differs])
    counts: Counter = Counter()
    examples: dict[str, list[str]] = {}
    for what, (catalogue, rows) in kinds.items():
        codes = np.stack([catalogue.labels[rows], catalogue.splits[rows]], axis=1).reshape(-1, 2)
        pairs, numbers = np.unique(codes, axis=0, return_counts=True)
        for (label, split), number in zip(pairs.tolist(), numbers.tolist(), strict=True):
            counts[(what, catalogue.class_names[label], catalogue.split_names[split])] += number
        if len(rows):
            wanted = set(rows[:EXAMPLES].tolist())
            last = max(wanted)
            examples[what] = [
                path for row, path in zip(range(last + 1), catalogue.iter_paths(), strict=False) if row in wanted
            ]
    return counts, examples


def compare(
    previous: Catalogue | None,
    current: Catalogue,
    work: Mapping[str, ShardRecord] | None = None,
    compaction: Mapping | None = None,
    old_of: np.ndarray | None = None,
) -> Catalogue:
    """``current`` carrying the change rows against ``previous`` (everything added on a first run;
    the previous rows again when the dataset is the same bytes from the same shards). ``work``:
    the shard table, whose new shards' rows copied and decoded are the run's totals; ``compaction``: the index's account
    of one (:class:`img2npz.allocation.Compaction` as a dict), or None. ``old_of``: each current
    row's row in ``previous`` (:func:`previous_rows`), when the caller has it."""
    same = previous is not None and previous.images_sha256 == current.images_sha256
    if same and previous.shards == current.shards:
        current.rows, current.examples = previous.rows, previous.examples
        return current
    old_of = previous_rows(previous, current.path_keys) if old_of is None else old_of
    counts, examples = _row_changes(previous, current, np.asarray(old_of, np.int64))
    rebuilt = [
        shard for shard, mtime in current.shards.items() if previous is None or previous.shards.get(shard) != mtime
    ]
    work = work or {}
    order = {"added": 0, "removed": 1, "changed": 2}
    current.rows = [
        (what, name, split, n)
        for (what, name, split), n in sorted(counts.items(), key=lambda item: (order[item[0][0]], item[0][1:]))
    ]
    current.rows += [
        ("shards written", "", "", len(rebuilt)),
        ("shards in total", "", "", len(current.shards)),
        ("images decoded", "", "", sum(work[shard].decoded for shard in rebuilt if shard in work)),
        ("rows copied", "", "", sum(work[shard].copied for shard in rebuilt if shard in work)),
    ]
    if compaction:
        current.rows.append(("shards compacted", "", "", compaction["shards"]))
        examples[COMPACTION] = [
            f"{compaction['shards']} shards rewritten into {compaction['into']}, copying {compaction['rows']:,} rows,"
            f" because {'; '.join(compaction['reasons'])}"
        ]
    current.examples = examples
    return current


def write_changes(path: str | os.PathLike, catalogue: Catalogue) -> None:
    write_tsv(path, CHANGES_HEADER, catalogue.rows)
