"""What a run changed in the dataset: images added, removed and changed, shards rebuilt, and the
images their jobs decoded and reused.

Snakemake deletes a job's outputs before it runs, so the previous ``dataset.npz`` is gone when its
successor is checked. validate-report therefore keeps a small catalogue of the dataset it last
passed (``results/report/catalogue.npz``, a Snakemake ``update()`` output: kept across runs, and
restored when a run fails): per image its path, class, split and a pixel fingerprint; per shard the
npz's mtime; and the change rows of the last run that changed the dataset, so a rerun that only
re-checks (a ``validate.*`` edit) reports the same changes instead of "nothing".
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from img2npz.atomic import atomic_output
from img2npz.contract import CATALOGUE_FORMAT, CHANGES_HEADER, SHARD_TABLE_HEADER, ShardStats
from img2npz.npzformat import blob_strings, strings_blob, write_npz
from img2npz.tsv import TAB, escape_field, read_tsv, unescape_field, write_tsv

EXAMPLES = 10


def _line(fields) -> str:
    """A row as one tab-separated line, escaped as in the TSVs (class names may hold tabs)."""
    return TAB.join(escape_field(field) for field in fields)


def _fields(line: str) -> list[str]:
    return [unescape_field(field) for field in line.split(TAB)]


@dataclass
class Catalogue:
    images_sha256: str
    paths: list[str]
    classes: list[str]  # per image: its class name ("" when unlabelled)
    splits: list[str]  # per image: its split name ("" without splits)
    fingerprints: np.ndarray  # (N, 2) uint64
    shards: dict[str, int]  # shard id -> npz mtime_ns
    rows: list[tuple[str, str, str, int]] = field(default_factory=list)  # the change report it carries
    examples: dict[str, list[str]] = field(default_factory=dict)

    def save(self, path: str | os.PathLike) -> None:
        blob = strings_blob
        arrays = {
            "format": np.array(CATALOGUE_FORMAT),
            "images_sha256": np.array(self.images_sha256),
            "count": np.array(len(self.paths)),
            "paths": blob(self.paths),
            "classes": blob(self.classes),
            "splits": blob(self.splits),
            "fingerprints": self.fingerprints,
            "shard_ids": blob(list(self.shards)),
            "shard_mtimes": np.array(list(self.shards.values()), np.int64),
            "rows": blob([_line(row) for row in self.rows]),
            "examples": blob([_line((what, path)) for what, paths in self.examples.items() for path in paths]),
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

            def items(name: str, per_image: bool = False) -> list[str]:
                return blob_strings(data[name], count if per_image else None)

            ids = items("shard_ids")
            rows = [_fields(line) for line in items("rows")]
            examples: dict[str, list[str]] = {}
            for line in items("examples"):
                what, example = _fields(line)
                examples.setdefault(what, []).append(example)
            return cls(
                str(data["images_sha256"]),
                items("paths", True),
                items("classes", True),
                items("splits", True),
                data["fingerprints"],
                dict(zip(ids, data["shard_mtimes"].tolist(), strict=True)) if ids else {},
                [(a, b, c, int(d)) for a, b, c, d in rows],
                examples,
            )


@dataclass(frozen=True)
class ShardRecord:
    """One row of ``dataset.shards.tsv``: the npz's mtime, and the rows its job reused and decoded."""

    mtime_ns: int
    reused: int
    decoded: int


def write_shard_table(shard_npzs: list[str], stats: Mapping[str, ShardStats], path: str | os.PathLike) -> None:
    """Per shard, noted by the merge: its npz's mtime (a shard rebuilt since the last check has a
    new one) and how its job got its rows. The merge notes it so validate-report need not list every
    shard npz as an input (with 10^3 inputs, Snakemake's job selection hung on SIGTERM now and then)."""
    rows = []
    for npz in shard_npzs:
        shard = os.path.basename(npz).removesuffix(".npz")
        rows.append((shard, os.stat(npz).st_mtime_ns, stats[shard].reused, stats[shard].decoded))
    write_tsv(path, SHARD_TABLE_HEADER, sorted(rows))


def read_shard_table(path: str | os.PathLike) -> dict[str, ShardRecord]:
    return {shard: ShardRecord(*map(int, rest)) for shard, *rest in read_tsv(path, SHARD_TABLE_HEADER)}


def compare(previous: Catalogue | None, current: Catalogue, work: Mapping[str, ShardRecord] | None = None) -> Catalogue:
    """``current`` carrying the change rows against ``previous`` (everything added on a first run;
    the previous rows again when the dataset is the same bytes). ``work``: the shard table, whose
    rebuilt shards' rows reused and decoded are the run's totals."""
    if previous is not None and previous.images_sha256 == current.images_sha256:
        current.rows, current.examples = previous.rows, previous.examples
        return current
    before = {}
    if previous is not None:
        for number, path in enumerate(previous.paths):
            before[path] = (previous.classes[number], previous.splits[number], previous.fingerprints[number].tobytes())
    counts: Counter = Counter()
    examples: dict[str, list[str]] = {}

    def note(what: str, path: str, name: str, split: str) -> None:
        counts[(what, name, split)] += 1
        if len(examples.setdefault(what, [])) < EXAMPLES:
            examples[what].append(path)

    for number, path in enumerate(current.paths):
        now = (current.classes[number], current.splits[number], current.fingerprints[number].tobytes())
        old = before.pop(path, None)
        if old is None:
            note("added", path, now[0], now[1])
        elif old != now:
            note("changed", path, now[0], now[1])
    for path, (name, split, _) in before.items():
        note("removed", path, name, split)
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
        ("shards rebuilt", "", "", len(rebuilt)),
        ("shards in total", "", "", len(current.shards)),
        ("images decoded", "", "", sum(work[shard].decoded for shard in rebuilt if shard in work)),
        ("images reused", "", "", sum(work[shard].reused for shard in rebuilt if shard in work)),
    ]
    current.examples = examples
    return current


def write_changes(path: str | os.PathLike, catalogue: Catalogue) -> None:
    write_tsv(path, CHANGES_HEADER, catalogue.rows)
