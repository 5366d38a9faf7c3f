"""validate-report: prove that ``dataset.npz`` keeps the contract, and draw what is in it.

Each check records its name, whether it passed, the measured value, the threshold and its
severity in ``validation.json``. Images are streamed once (sha256, range, a 16-byte fingerprint and
a one-colour test per row); the path lists of the dataset, the failure file and the index are walked
together in their shared sorted order. Memory holds a few dozen bytes per image (labels,
fingerprints, the change catalogue's paths), never the pixels.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from img2npz import htmlreport, report
from img2npz.atomic import write_bytes_atomic
from img2npz.changes import Catalogue, ShardRecord, compare, write_changes
from img2npz.contract import DATASET_MEMBERS, FAILURE_HEADER, member_names, path_sort_key
from img2npz.hashing import BackgroundSha256
from img2npz.index import table_path
from img2npz.npzformat import array_layout, iter_chunks, read_array, read_rows
from img2npz.splits import group_function
from img2npz.tsv import iter_tsv

log = logging.getLogger(__name__)

REQUIRED_MEMBERS = member_names(DATASET_MEMBERS)
FLOAT_TOLERANCE = 1e-2


# These warn; validate.fail_on makes them fail. Every other check fails the run.
SOFT_CHECKS = ("class_counts", "duplicate_images", "constant_images", "split_fractions")
SPLIT_TOLERANCE = 0.01  # split fractions may drift this much (or 3 binomial sigmas, if more)
LISTED = 50  # duplicate groups (and paths per group) / constant images named in validation.json and the report


@dataclass
class Check:
    name: str
    passed: bool
    value: Any
    threshold: Any = None
    severity: str = "hard"


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


class ValidationFailed(Exception):
    """One or more checks failed; the message names them."""


def _iter_dataset_paths(npz: str, layout) -> Iterator[str]:
    for chunk in iter_chunks(npz, "paths", layout=layout):
        yield from chunk.tolist()


def _iter_failure_paths(failures: str) -> Iterator[str]:
    for path, _, _ in iter_tsv(failures, FAILURE_HEADER):
        yield path


def _iter_indexed_paths(images_table: str) -> Iterator[str]:
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(images_table).iter_batches(columns=["path"], batch_size=65536):
        yield from batch.column(0).to_pylist()


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


def _paths_unique_sorted(npz: str, layout) -> tuple[int, str | None]:
    previous, disorder, example = None, 0, None
    for path in _iter_dataset_paths(npz, layout):
        key = path_sort_key(path)
        if previous is not None and not previous < key:
            disorder += 1
            example = example or path
        previous = key
    return disorder, example


@dataclass
class ImageScan:
    sha256: str
    low: float | None
    high: float | None
    finite: bool
    fingerprints: np.ndarray  # (N, 2) uint64 per row: wrapping sum and xor of its 8-byte words
    constant: list[int]  # rows whose pixels are all one colour
    crcs: np.ndarray  # uint32 CRC-32 of each row's bytes


def _row_fingerprints(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: (sum, xor) of its 8-byte words, and whether it is one colour throughout.

    The fingerprint only proposes duplicates (they are confirmed byte for byte); a row of one colour
    repeats every 24 bytes (8 pixels' worth of any dtype), which the fingerprint tests for free.
    Rows whose size is not a multiple of 24 bytes take an exact, slower path.
    """
    count = len(rows)
    flat = rows.reshape(count, -1).view(np.uint8)
    if flat.shape[1] % 24 or not flat.shape[1]:
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
        constant[row] = bool((words[row].reshape(-1, 3) == period[row]).all())
    return prints, constant


def _scan_images(npz: str, layout) -> ImageScan:
    """One streaming pass: sha256 (in a second thread), per-row CRC-32s, fingerprints and one-colour
    rows, and for float dtypes finiteness and range (uint8 is 0..255 by type)."""
    digest = BackgroundSha256()
    low, high, finite = None, None, True
    count = layout.shape[0] if layout.shape else 0
    fingerprints = np.zeros((count, 2), np.uint64)
    crcs = np.zeros(count, np.uint32)
    constant: list[int] = []
    start = 0
    for chunk in iter_chunks(npz, "images", layout=layout, ring=BackgroundSha256.DEPTH + 2):
        digest.update(chunk)
        if not chunk.size:
            continue
        crcs[start : start + len(chunk)] = [zlib.crc32(row) for row in chunk.reshape(len(chunk), -1)]
        prints, one_colour = _row_fingerprints(chunk)
        fingerprints[start : start + len(chunk)] = prints
        constant.extend((np.flatnonzero(one_colour) + start).tolist())
        start += len(chunk)
        if chunk.dtype.kind == "f":
            finite = finite and bool(np.isfinite(chunk).all())
            values = np.nan_to_num(chunk)
            c_low, c_high = float(values.min()), float(values.max())
            low = c_low if low is None else min(low, c_low)
            high = c_high if high is None else max(high, c_high)
    if layout.dtype == np.uint8:
        low, high = 0.0, 255.0
    return ImageScan(digest.hexdigest(), low, high, finite, fingerprints, constant, crcs)


def duplicate_groups(npz: str, layout, fingerprints: np.ndarray) -> list[list[int]]:
    """Groups of rows with the same pixels: equal fingerprints, confirmed byte for byte."""
    if not len(fingerprints):
        return []
    _, inverse, counts = np.unique(fingerprints, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)])
    groups = []
    for key in np.flatnonzero(counts > 1):
        rows = sorted(order[starts[key] : starts[key + 1]].tolist())
        pixels = read_rows(npz, "images", rows, layout)
        by_bytes: dict[bytes, list[int]] = {}
        for row, image in zip(rows, pixels, strict=True):
            by_bytes.setdefault(image.tobytes(), []).append(row)
        groups.extend(group for group in by_bytes.values() if len(group) > 1)
    return sorted(groups)


def expected_range(pixel: dict) -> tuple[float, float]:
    if pixel["dtype"] == "uint8":
        return 0.0, 255.0
    norm = pixel["normalize"]
    if norm is None:
        return 0.0, 1.0
    lows = [(0 - m) / s for m, s in zip(norm["mean"], norm["std"], strict=True)]
    highs = [(1 - m) / s for m, s in zip(norm["mean"], norm["std"], strict=True)]
    return min(lows), max(highs)


@dataclass
class Thresholds:
    """The configurable limits (config ``validate``)."""

    max_failure_fraction: float = 0.05
    min_class_images: int = 1
    max_class_imbalance: float = 10.0
    fail_on: tuple[str, ...] = ()


@dataclass
class Findings:
    """What the checks learnt that the report shows."""

    meta: dict
    classes: list[str]
    labels: np.ndarray
    class_counts: list[int]
    duplicates: list[list[str]]
    constant: list[str]
    fingerprints: np.ndarray
    split_names: list[str] = field(default_factory=list)
    split: np.ndarray | None = None  # int8 per row, when the dataset has splits
    split_class_counts: list[list[int]] = field(default_factory=list)  # [split][class]


def _split_checks(
    npz: str, layouts: dict, meta: dict, labels: np.ndarray, classes: int, groups: list[list[int]]
) -> tuple[list[Check], list[str], np.ndarray | None, list[list[int]]]:
    """Leakage between splits: the same pixels in two splits, or one group in two splits; and how
    close each split came to its fraction."""
    if "split" not in layouts:
        return [], [], None, []
    names = read_array(npz, "splits", layouts["splits"]).tolist()
    split = read_array(npz, "split", layouts["split"])
    config = meta.get("splits", {})
    checks = []
    bad = int(((split < 0) | (split >= len(names))).sum())
    checks.append(
        Check("split_values", bad == 0 and len(split) == len(labels), {"out_of_range": bad}, [0, len(names) - 1])
    )
    paths = layouts["paths"]
    leaks = [group for group in groups if len(set(split[group].tolist())) > 1]
    examples = [
        [
            f"{path} ({names[split[row]]})"
            for path, row in zip(_paths_of(npz, paths, group[:LISTED]), group, strict=False)
        ]
        for group in leaks[:LISTED]
    ]
    checks.append(Check("split_duplicates", not leaks, {"groups": len(leaks), "examples": examples}, 0))
    key = group_function(config.get("group_by", "path"))
    first_split: dict[str, int] = {}
    straddling: dict[str, set[int]] = {}
    for chunk_start, chunk in _path_chunks(npz, paths):
        for offset, path in enumerate(chunk):
            group, where = key(path), int(split[chunk_start + offset])
            if first_split.setdefault(group, where) != where:
                straddling.setdefault(group, {first_split[group]}).add(where)
    listed = {group: sorted(names[i] for i in where) for group, where in list(straddling.items())[:LISTED]}
    checks.append(
        Check(
            "split_groups",
            not straddling,
            {"groups": len(first_split), "in_two_or_more": len(straddling), "examples": listed},
            0,
        )
    )
    per_split = np.bincount(split[split >= 0], minlength=len(names))
    matrix = [
        np.bincount(labels[(split == number) & (labels >= 0)], minlength=classes).tolist()
        for number in range(len(names))
    ]
    total = max(int(per_split.sum()), 1)
    wanted = config.get("fractions", {})
    drift = {name: round(per_split[i] / total - wanted.get(name, 0.0), 4) for i, name in enumerate(names)}
    tolerance = max(SPLIT_TOLERANCE, 3 * max((f * (1 - f) / total) ** 0.5 for f in wanted.values()) if wanted else 0)
    checks.append(
        Check(
            "split_fractions",
            all(abs(d) <= tolerance for d in drift.values()),
            {"counts": dict(zip(names, per_split.tolist(), strict=True)), "drift": drift},
            {"fractions": wanted, "tolerance": round(tolerance, 4)},
        )
    )
    return checks, names, split, matrix


def _path_chunks(npz: str, layout):
    start = 0
    for chunk in iter_chunks(npz, "paths", layout=layout):
        yield start, chunk.tolist()
        start += len(chunk)


def _paths_of(npz: str, layout, rows: list[int]) -> list[str]:
    return read_rows(npz, "paths", rows, layout).tolist() if rows else []


def _class_check(names: list[str], labels: np.ndarray, label_mode: str, limits: Thresholds) -> tuple[Check, list[int]]:
    counts = np.bincount(labels[labels >= 0], minlength=len(names)).tolist() if names else []
    if label_mode == "none" or not names:
        return Check("class_counts", True, "unlabelled"), counts
    below = [name for name, n in zip(names, counts, strict=True) if n < limits.min_class_images]
    smallest, largest = min(counts), max(counts)
    imbalance = largest / smallest if smallest else None  # None: some class is empty
    passed = not below and imbalance is not None and imbalance <= limits.max_class_imbalance
    order = sorted(range(len(names)), key=lambda i: (counts[i], i))
    value = {
        "classes": len(names),
        "smallest": {names[i]: counts[i] for i in order[:5]},
        "largest": {names[i]: counts[i] for i in order[::-1][:5]},
        "empty": [name for name, n in zip(names, counts, strict=True) if n == 0][:LISTED],
        "below_min": below[:LISTED],
        "imbalance": round(imbalance, 3) if imbalance is not None else None,
    }
    threshold = {"min_class_images": limits.min_class_images, "max_class_imbalance": limits.max_class_imbalance}
    return Check("class_counts", passed, value, threshold), counts


def run_checks(
    npz: str, failures: str, images_table: str, pixel: dict, label_mode: str, limits: Thresholds
) -> tuple[list[Check], Findings | None]:
    layouts = array_layout(npz)
    missing_members = [key for key in REQUIRED_MEMBERS if key not in layouts]
    checks = [Check("members", not missing_members, missing_members or list(layouts), list(REQUIRED_MEMBERS))]
    if missing_members:
        return checks, None
    meta = json.loads(str(read_array(npz, "meta", layouts["meta"])))
    images, labels, paths, classes = (layouts[k] for k in ("images", "labels", "paths", "classes"))
    count = images.shape[0] if images.shape else -1
    height, width = pixel["size"]
    shape_ok = (
        images.shape == (count, height, width, 3)
        and images.dtype == np.dtype(pixel["dtype"])
        and labels.shape == (count,)
        and labels.dtype == np.int64
        and paths.shape == (count,)
        and paths.dtype.kind == "U"
        and len(classes.shape) == 1
        and classes.dtype.kind == "U"
    )
    shapes = {k: [list(v.shape), str(v.dtype)] for k, v in layouts.items()}
    checks.append(Check("shapes_and_dtypes", shape_ok, shapes, {"images": [["N", height, width, 3], pixel["dtype"]]}))
    if not shape_ok:
        return checks, None

    scan = _scan_images(npz, images)
    low, high = expected_range(pixel)
    tol = FLOAT_TOLERANCE * (high - low) if pixel["dtype"] != "uint8" else 0
    in_range = scan.finite and (count == 0 or (scan.low >= low - tol and scan.high <= high + tol))
    checks.append(
        Check("value_range", in_range, {"min": scan.low, "max": scan.high, "finite": scan.finite}, [low, high])
    )

    class_names = read_array(npz, "classes", classes).tolist()
    label_values = read_array(npz, "labels", labels)
    bad_labels = int(((label_values < -1) | (label_values >= len(class_names))).sum())
    if label_mode == "none":
        bad_labels += int((label_values != -1).sum())
    checks.append(
        Check(
            "labels_in_classes",
            bad_labels == 0,
            {"out_of_range": bad_labels, "unlabelled": int((label_values == -1).sum()), "classes": len(class_names)},
            [-1, len(class_names) - 1],
        )
    )
    checks.append(Check("classes_sorted_unique", class_names == sorted(set(class_names)), len(class_names)))
    class_check, class_counts = _class_check(
        class_names, label_values if bad_labels == 0 else label_values[:0], label_mode, limits
    )
    checks.append(class_check)

    groups = duplicate_groups(npz, images, scan.fingerprints)
    duplicates = [_paths_of(npz, paths, group[:LISTED]) for group in groups[:LISTED]]
    checks.append(
        Check(
            "duplicate_images",
            not groups,
            {"groups": len(groups), "images": sum(len(g) for g in groups), "examples": duplicates},
            0,
        )
    )
    constant = _paths_of(npz, paths, scan.constant[:LISTED])
    checks.append(Check("constant_images", not scan.constant, {"images": len(scan.constant), "examples": constant}, 0))

    disorder, example = _paths_unique_sorted(npz, paths)
    checks.append(
        Check("paths_unique_sorted", disorder == 0, {"out_of_order_or_duplicate": disorder, "example": example}, 0)
    )

    failure_paths = Counted(map(table_path, _iter_failure_paths(failures)))
    accounting = account_for_index(
        map(table_path, _iter_dataset_paths(npz, paths)), failure_paths, _iter_indexed_paths(images_table)
    )
    checks.append(Check("rows_plus_failures_equal_index", accounting["problems"] == 0, accounting, 0))

    failed = failure_paths.count  # account_for_index reads the failures to their end
    indexed = accounting["indexed"]
    fraction = failed / indexed if indexed else 0.0
    checks.append(
        Check(
            "failure_fraction",
            fraction <= limits.max_failure_fraction,
            {"failures": failed, "indexed": indexed, "fraction": round(fraction, 6)},
            limits.max_failure_fraction,
        )
    )

    checks.append(
        Check("images_sha256", scan.sha256 == meta.get("images_sha256"), scan.sha256, meta.get("images_sha256"))
    )
    recorded = read_array(npz, "crc32s", layouts["crc32s"])
    damaged = (
        np.flatnonzero(scan.crcs != recorded).tolist() if recorded.shape == scan.crcs.shape else list(range(count))
    )
    checks.append(
        Check(
            "images_crc32",
            not damaged,
            {"rows": len(damaged), "examples": _paths_of(npz, paths, damaged[:LISTED])},
            "every row's bytes have the CRC-32 they had when decoded",
        )
    )
    checks.append(
        Check(
            "meta_matches_config",
            meta.get("pixel") == pixel and meta.get("images") == count,
            {"pixel": meta.get("pixel"), "images": meta.get("images")},
            {"pixel": pixel},
        )
    )
    split_checks, split_names, split, split_matrix = _split_checks(
        npz, layouts, meta, label_values, len(class_names), groups
    )
    checks.extend(split_checks)
    for check in checks:
        check.severity = "soft" if check.name in SOFT_CHECKS and check.name not in limits.fail_on else "hard"
    findings = Findings(
        meta,
        class_names,
        label_values,
        class_counts,
        duplicates,
        constant,
        scan.fingerprints,
        split_names,
        split,
        split_matrix,
    )
    return checks, findings


def failure_groups(failures: str, examples: int = 3) -> list[dict]:
    """Failures grouped by stage and reason (the exception's type), largest group first."""
    groups: dict[tuple[str, str], dict] = {}
    for path, stage, error in iter_tsv(failures, FAILURE_HEADER):
        head = error.split(":", 1)[0]
        reason = head if head and " " not in head else error[:80]
        group = groups.setdefault(
            (stage, reason), {"stage": stage, "reason": reason, "count": 0, "examples": [], "message": error}
        )
        group["count"] += 1
        if len(group["examples"]) < examples:
            group["examples"].append(path)
    return sorted(groups.values(), key=lambda g: (-g["count"], g["stage"], g["reason"]))


@dataclass
class ReportFiles:
    """Where the pictures and pages go (the rule's outputs)."""

    samples: str | os.PathLike
    class_counts: str | os.PathLike
    histograms: str | os.PathLike
    html: str | os.PathLike
    failed_html: str | os.PathLike | None = None  # a copy kept where a failed job's outputs are not deleted
    changes: str | os.PathLike | None = None  # changes.tsv, against the catalogue of the last checked dataset
    catalogue: str | os.PathLike | None = None


def _change_report(npz: str, findings: Findings, files: ReportFiles, shards: dict[str, ShardRecord]) -> Catalogue:
    layouts = array_layout(npz)
    paths = read_array(npz, "paths", layouts["paths"]).tolist()
    names = [findings.classes[label] if label >= 0 else "" for label in findings.labels.tolist()]
    splits = (
        [findings.split_names[i] for i in findings.split.tolist()] if findings.split is not None else [""] * len(paths)
    )
    mtimes = {shard: record.mtime_ns for shard, record in shards.items()}
    current = Catalogue(findings.meta.get("images_sha256", ""), paths, names, splits, findings.fingerprints, mtimes)
    catalogue = compare(Catalogue.load(files.catalogue), current, shards)
    write_changes(files.changes, catalogue)
    catalogue.save(files.catalogue)
    return catalogue


def draw_pictures(npz: str, pixel: dict, samples: int, findings: Findings, files: ReportFiles) -> None:
    layouts = array_layout(npz)
    picked = report.rows_per_class(findings.labels, len(findings.classes), samples)
    wanted = sorted({row for rows in picked.values() for row in rows})
    pixels = report.to_display(read_rows(npz, "images", wanted, layouts["images"]), pixel["normalize"])
    by_row = dict(zip(wanted, pixels, strict=True))
    rows = [
        (
            findings.classes[label] if label >= 0 else "(all images)",
            [by_row[r] for r in members],
            findings.class_counts[label] if label >= 0 else len(findings.labels),
        )
        for label, members in picked.items()
    ]
    report.save_png(report.class_grid(rows), files.samples)
    report.save_png(report.class_bar_chart(findings.classes, findings.class_counts), files.class_counts)
    meta = findings.meta
    report.save_png(
        report.channel_histograms(np.asarray(meta["histogram"]), meta["mean"], meta["std"]), files.histograms
    )


def _summary(npz: str, failures: str, pixel: dict, findings: Findings, checks: list[Check]) -> list[tuple[str, Any]]:
    meta = findings.meta
    failed = next((c.value["failures"] for c in checks if c.name == "failure_fraction"), 0)
    indexed = next((c.value["indexed"] for c in checks if c.name == "failure_fraction"), 0)
    size = os.path.getsize(npz)
    return [
        ("images in the dataset", f"{len(findings.labels):,}"),
        ("files indexed", f"{indexed:,}"),
        ("files left out (unreadable)", f"{failed:,}"),
        ("classes", f"{len(findings.classes):,}" if findings.classes else "none (unlabelled)"),
        ("image shape and type", f"{pixel['size'][0]} x {pixel['size'][1]} x 3, {pixel['dtype']}"),
        ("pixel config", json.dumps(pixel, sort_keys=True)),
        ("channel mean (0..1)", ", ".join(f"{v:.4f}" for v in meta.get("mean", []))),
        ("channel std (0..1)", ", ".join(f"{v:.4f}" for v in meta.get("std", []))),
        ("dataset.npz", f"{os.fspath(npz)}: {size / 2**20:,.1f} MiB"),
        ("failures.tsv", f"{os.fspath(failures)}: {os.path.getsize(failures) / 2**10:,.1f} KiB"),
        ("sha256 of images", meta.get("images_sha256", "")),
    ]


def _clip(text: str, limit: int = 240) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def validate_dataset(
    npz: str,
    failures: str,
    images_table: str,
    pixel: dict,
    label_mode: str,
    limits: Thresholds,
    samples: int,
    out_json: str | os.PathLike,
    files: ReportFiles,
    shards: dict[str, ShardRecord] | None = None,
) -> list[Check]:
    """Run every check, write the JSON, pictures and HTML page; raise :class:`ValidationFailed` at the
    end when a hard check failed (soft ones only warn)."""
    checks, findings = run_checks(npz, failures, images_table, pixel, label_mode, limits)
    hard = [check for check in checks if not check.passed and check.severity == "hard"]
    for check in checks:
        status = "PASS" if check.passed else ("FAIL" if check.severity == "hard" else "WARN")
        log.info("%s %s: %s (threshold %s)", status, check.name, json.dumps(check.value), json.dumps(check.threshold))
    document = {
        "passed": not hard,
        "warnings": [c.name for c in checks if not c.passed and c.severity == "soft"],
        "checks": [asdict(check) for check in checks],
    }
    write_bytes_atomic(out_json, (json.dumps(document, indent=2, sort_keys=True) + "\n").encode())
    if findings is not None:
        draw_pictures(npz, pixel, samples, findings, files)
        changes = _change_report(npz, findings, files, shards or {}) if files.changes is not None else None
        split_table = [
            (name, sum(row), *row) for name, row in zip(findings.split_names, findings.split_class_counts, strict=True)
        ]
        page = htmlreport.render(
            _summary(npz, failures, pixel, findings, checks),
            document["checks"],
            {"samples": files.samples, "class_counts": files.class_counts, "histograms": files.histograms},
            list(zip(findings.classes, findings.class_counts, strict=True)),
            failure_groups(failures),
            {"duplicate_images": findings.duplicates, "constant_images": [[p] for p in findings.constant]},
            splits=(["split", "images", *findings.classes], split_table) if split_table else None,
            changes=changes,
        )
    else:
        page = htmlreport.render([], document["checks"], {}, [], [], {})
    htmlreport.write_html(files.html, page)
    if files.failed_html is not None:
        note = f"<!DOCTYPE html><p>This run passed; the report is {os.fspath(files.html)}</p>\n"
        htmlreport.write_html(files.failed_html, page if hard else note)
    if hard:
        details = "; ".join(
            f"{c.name} (measured {_clip(json.dumps(c.value))}, threshold {_clip(json.dumps(c.threshold))})"
            for c in hard
        )
        where = f"; report: {os.fspath(files.failed_html)}" if files.failed_html is not None else ""
        raise ValidationFailed(f"validation failed: {details}{where}")
    return checks
