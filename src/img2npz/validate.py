"""validate-report: prove that ``dataset.npz`` keeps the contract, and draw what is in it.

Each check records its name, whether it passed, the measured value and the threshold in
``validation.json``. Images are streamed (sha256 and value range in one pass); the path lists of the
dataset, the failure file and the index are walked together in their shared sorted order, so memory
stays bounded by a chunk, never by the number of images.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from img2npz import report
from img2npz.atomic import write_bytes_atomic
from img2npz.hashing import BackgroundSha256
from img2npz.index import table_path
from img2npz.npzformat import array_layout, iter_chunks, read_array, read_rows
from img2npz.preprocess import FAILURE_HEADER
from img2npz.sharding import path_sort_key
from img2npz.tsv import unescape_field

log = logging.getLogger(__name__)

REQUIRED_MEMBERS = ("images", "labels", "classes", "paths", "meta")
FLOAT_TOLERANCE = 1e-2


@dataclass
class Check:
    name: str
    passed: bool
    value: Any
    threshold: Any = None


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
    with open(failures, "rb") as handle:
        header = handle.readline().decode().rstrip("\n").split("\t")
        if header != list(FAILURE_HEADER):
            raise ValueError(f"{failures}: bad header {header}")
        for line in handle:
            yield unescape_field(line.decode("utf-8", "surrogateescape").rstrip("\n").split("\t", 1)[0])


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


def _scan_images(npz: str, layout) -> dict:
    """sha256 (in a second thread) and, for float dtypes, finiteness and range; uint8 is 0..255 by type."""
    digest = BackgroundSha256()
    low, high, finite = None, None, True
    for chunk in iter_chunks(npz, "images", layout=layout, ring=BackgroundSha256.DEPTH + 2):
        digest.update(chunk)
        if chunk.size and chunk.dtype.kind == "f":
            finite = finite and bool(np.isfinite(chunk).all())
            values = np.nan_to_num(chunk)
            c_low, c_high = float(values.min()), float(values.max())
            low = c_low if low is None else min(low, c_low)
            high = c_high if high is None else max(high, c_high)
    if layout.dtype == np.uint8:
        low, high = 0.0, 255.0
    return {"sha256": digest.hexdigest(), "min": low, "max": high, "finite": finite}


def expected_range(pixel: dict) -> tuple[float, float]:
    if pixel["dtype"] == "uint8":
        return 0.0, 255.0
    norm = pixel["normalize"]
    if norm is None:
        return 0.0, 1.0
    lows = [(0 - m) / s for m, s in zip(norm["mean"], norm["std"], strict=True)]
    highs = [(1 - m) / s for m, s in zip(norm["mean"], norm["std"], strict=True)]
    return min(lows), max(highs)


def run_checks(
    npz: str, failures: str, images_table: str, pixel: dict, label_mode: str, max_failure_fraction: float
) -> tuple[list[Check], dict]:
    layouts = array_layout(npz)
    missing_members = [key for key in REQUIRED_MEMBERS if key not in layouts]
    checks = [Check("members", not missing_members, missing_members or list(layouts), list(REQUIRED_MEMBERS))]
    if missing_members:
        return checks, {}
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

    scan = _scan_images(npz, images)
    low, high = expected_range(pixel)
    tol = FLOAT_TOLERANCE * (high - low) if pixel["dtype"] != "uint8" else 0
    in_range = scan["finite"] and (count == 0 or (scan["min"] >= low - tol and scan["max"] <= high + tol))
    checks.append(
        Check("value_range", in_range, {"min": scan["min"], "max": scan["max"], "finite": scan["finite"]}, [low, high])
    )

    class_names = read_array(npz, "classes", classes).tolist()
    label_values = read_array(npz, "labels", labels)
    allowed_low = -1
    bad_labels = int(((label_values < allowed_low) | (label_values >= len(class_names))).sum())
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
            fraction <= max_failure_fraction,
            {"failures": failed, "indexed": indexed, "fraction": round(fraction, 6)},
            max_failure_fraction,
        )
    )

    checks.append(
        Check("images_sha256", scan["sha256"] == meta.get("images_sha256"), scan["sha256"], meta.get("images_sha256"))
    )
    checks.append(
        Check(
            "meta_matches_config",
            meta.get("pixel") == pixel and meta.get("images") == count,
            {"pixel": meta.get("pixel"), "images": meta.get("images")},
            {"pixel": pixel},
        )
    )
    return checks, meta


def draw_samples(npz: str, pixel: dict, samples: int, out_png: str | os.PathLike) -> int:
    layouts = array_layout(npz)
    count = layouts["images"].shape[0]
    rows = report.sample_rows(count, samples)
    classes = read_array(npz, "classes", layouts["classes"]).tolist()
    labels = read_array(npz, "labels", layouts["labels"])
    pixels = report.to_display(read_rows(npz, "images", rows, layouts["images"]), pixel["normalize"])
    captions = [classes[labels[row]] if labels[row] >= 0 else "(unlabelled)" for row in rows]
    report.save_png(report.sample_grid(pixels, captions), out_png)
    return len(rows)


def validate_dataset(
    npz: str,
    failures: str,
    images_table: str,
    pixel: dict,
    label_mode: str,
    max_failure_fraction: float,
    samples: int,
    out_json: str | os.PathLike,
    out_samples: str | os.PathLike,
) -> list[Check]:
    """Run every check, write the JSON and the sample grid; raise :class:`ValidationFailed` at the end."""
    checks, _meta = run_checks(npz, failures, images_table, pixel, label_mode, max_failure_fraction)
    passed = all(check.passed for check in checks)
    for check in checks:
        log.info(
            "%s %s: %s (threshold %s)",
            "PASS" if check.passed else "FAIL",
            check.name,
            json.dumps(check.value),
            json.dumps(check.threshold),
        )
    document = {"passed": passed, "checks": [asdict(check) for check in checks]}
    write_bytes_atomic(out_json, (json.dumps(document, indent=2, sort_keys=True) + "\n").encode())
    if "images" in array_layout(npz):
        draw_samples(npz, pixel, samples, out_samples)
    failed = [check for check in checks if not check.passed]
    if failed:
        details = "; ".join(
            f"{c.name} (measured {json.dumps(c.value)}, threshold {json.dumps(c.threshold)})" for c in failed
        )
        raise ValidationFailed(f"validation failed: {details}")
    return checks
