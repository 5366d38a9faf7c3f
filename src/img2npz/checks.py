"""The validation's checks: one small function each, run in the order of :data:`CHECKS`.

A check takes the :class:`~img2npz.facts.Facts` and the :class:`Thresholds` and returns a
:class:`~img2npz.contract.Check` (or None where it does not apply, e.g. split checks without
splits). To add one: write the function, add it to :data:`CHECKS` (if it should only warn, also to
:data:`SOFT_CHECKS` and the schema's ``validate.fail_on`` values; if a config key sets its
threshold, to :data:`THRESHOLD_KEYS`), and list it in README's check table; tests compare them all.
The :data:`GATES` run first: when one of them fails, the file cannot be read as a dataset and
nothing else is checked.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from img2npz.contract import DATASET_MEMBERS, INDEX_MEMBERS, UNLABELLED_LABEL, Check, member_names
from img2npz.facts import LISTED, Facts
from img2npz.nearrule import NearRule
from img2npz.splits import group_function

FLOAT_TOLERANCE = 1e-2
SPLIT_TOLERANCE = 0.01  # split fractions may drift this much (or 3 binomial sigmas, if more)
# These warn; validate.fail_on makes them fail. Every other check fails the run.
SOFT_CHECKS = ("class_counts", "duplicate_images", "near_duplicates", "constant_images", "split_fractions")
# The config keys that set a check's threshold, named wherever a check fails (the error line, the
# log, the report); a check not listed has a fixed threshold.
NEAR_KEYS = (
    "validate.near_duplicate_bits",
    "validate.near_duplicate_crops",
    "validate.near_duplicate_crop_bits",
    "validate.min_hash_quality",
    "validate.min_field_quality",
)
THRESHOLD_KEYS: dict[str, tuple[str, ...]] = {
    "failure_fraction": ("validate.max_failure_fraction",),
    "class_counts": ("validate.min_class_images", "validate.max_class_imbalance"),
    "near_duplicates": NEAR_KEYS,
    "split_near_duplicates": NEAR_KEYS,
    "split_fractions": ("splits",),
}


@dataclass(frozen=True)
class Thresholds:
    """The configurable limits: the config's ``validate`` section (its defaults are the schema's)."""

    max_failure_fraction: float
    min_class_images: int
    max_class_imbalance: float | int
    near_duplicate_bits: int
    fail_on: tuple[str, ...]
    near_duplicate_crops: bool = False
    near_duplicate_crop_bits: int = 36
    min_hash_quality: int = 0
    min_field_quality: int = 0

    @property
    def near_threshold(self) -> dict:
        """The near-duplicate checks' threshold, as the report shows it."""
        return {
            "bits": self.near_duplicate_bits,
            "crop_bits": self.near_duplicate_crop_bits if self.near_duplicate_crops else None,
            "min_hash_quality": self.min_hash_quality,
            "min_field_quality": self.min_field_quality if self.near_duplicate_crops else None,
        }

    @property
    def near_rule(self) -> NearRule:
        crop_bits = self.near_duplicate_crop_bits if self.near_duplicate_crops else None
        return NearRule(self.near_duplicate_bits, crop_bits, self.min_hash_quality, self.min_field_quality)

    @classmethod
    def from_config(cls, validate: Mapping) -> Thresholds:
        """The values as the schema validated them (an integer stays one in ``validation.json``)."""
        return cls(
            max_failure_fraction=validate["max_failure_fraction"],
            min_class_images=validate["min_class_images"],
            max_class_imbalance=validate["max_class_imbalance"],
            near_duplicate_bits=validate["near_duplicate_bits"],
            fail_on=tuple(validate["fail_on"]),
            near_duplicate_crops=validate["near_duplicate_crops"],
            near_duplicate_crop_bits=validate["near_duplicate_crop_bits"],
            min_hash_quality=validate["min_hash_quality"],
            min_field_quality=validate["min_field_quality"],
        )


CheckFunction = Callable[[Facts, Thresholds], Check | None]


def members(facts: Facts, limits: Thresholds) -> Check:
    required = member_names(INDEX_MEMBERS if facts.sharded else DATASET_MEMBERS)
    missing = [key for key in required if key not in facts.layouts]
    return Check("members", not missing, missing or list(facts.layouts), list(required))


def shapes_and_dtypes(facts: Facts, limits: Thresholds) -> Check:
    layouts, pixel = facts.layouts, facts.pixel
    labels, paths, classes = (layouts[k] for k in ("labels", "paths", "classes"))
    count = facts.count
    height, width = pixel["size"]
    try:
        images = facts.image_layouts
    except (OSError, ValueError, KeyError) as error:  # a shard file of the shards layout
        return Check("shapes_and_dtypes", False, f"shard files: {error}", {"images": [["N", height, width, 3]]})
    rows = (count,) if not facts.sharded else None
    placed = not facts.sharded or all(layouts[k].shape == (count,) for k in ("shard", "row"))
    passed = (
        all(image.shape[1:] == (height, width, 3) and (rows is None or image.shape[:1] == rows) for image in images)
        and all(image.dtype == np.dtype(pixel["dtype"]) for image in images)
        and placed
        and labels.shape == (count,)
        and labels.dtype == np.int64
        and paths.shape == (count,)
        and paths.dtype.kind == "U"
        and len(classes.shape) == 1
        and classes.dtype.kind == "U"
    )
    shapes = {k: [list(v.shape), str(v.dtype)] for k, v in layouts.items()}
    if facts.sharded:
        shapes["images"] = [["N", height, width, 3], str(images[0].dtype) if images else pixel["dtype"]]
    return Check("shapes_and_dtypes", passed, shapes, {"images": [["N", height, width, 3], pixel["dtype"]]})


def expected_range(pixel: dict) -> tuple[float, float]:
    if pixel["dtype"] == "uint8":
        return 0.0, 255.0
    norm = pixel["normalize"]
    if norm is None:
        return 0.0, 1.0
    lows = [(0 - m) / s for m, s in zip(norm["mean"], norm["std"], strict=True)]
    highs = [(1 - m) / s for m, s in zip(norm["mean"], norm["std"], strict=True)]
    return min(lows), max(highs)


def value_range(facts: Facts, limits: Thresholds) -> Check:
    scan, pixel = facts.pixels, facts.pixel
    low, high = expected_range(pixel)
    tolerance = FLOAT_TOLERANCE * (high - low) if pixel["dtype"] != "uint8" else 0
    # None: no row was measured (a rerun measures only the rows no earlier validation verified)
    measured = scan.low is not None and facts.count > 0
    passed = scan.finite and (not measured or (scan.low >= low - tolerance and scan.high <= high + tolerance))
    return Check("value_range", passed, {"min": scan.low, "max": scan.high, "finite": scan.finite}, [low, high])


def labels_in_classes(facts: Facts, limits: Thresholds) -> Check:
    classes = len(facts.classes)
    value = {
        "out_of_range": facts.bad_labels,
        "unlabelled": int((facts.labels == UNLABELLED_LABEL).sum()),
        "classes": classes,
    }
    return Check("labels_in_classes", facts.bad_labels == 0, value, [UNLABELLED_LABEL, classes - 1])


def classes_sorted_unique(facts: Facts, limits: Thresholds) -> Check:
    names = facts.classes
    return Check("classes_sorted_unique", names == sorted(set(names)), len(names))


def class_counts(facts: Facts, limits: Thresholds) -> Check:
    names, counts = facts.classes, facts.class_counts
    if facts.label_mode == "none" or not names:
        return Check("class_counts", True, "unlabelled")
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
    return Check("class_counts", passed, value, threshold)


def duplicate_images(facts: Facts, limits: Thresholds) -> Check:
    groups = facts.duplicates
    value = {"groups": len(groups), "images": sum(len(g) for g in groups), "examples": facts.duplicate_paths}
    return Check("duplicate_images", not groups, value, 0)


def near_duplicates(facts: Facts, limits: Thresholds) -> Check:
    """Near-duplicates (:mod:`img2npz.nearrule`: exact duplicates, edits, crops), and how many
    images' hashes are under ``min_hash_quality`` (matched to exact copies only) and, with crops,
    how many fields are under ``min_field_quality`` (not searched for crops)."""
    groups = facts.near_duplicates(limits.near_rule).groups
    examples = [facts.paths_of(group[:LISTED]) for group in groups[:LISTED]]
    value = {"groups": len(groups), "images": sum(len(g) for g in groups), "examples": examples}
    value["low_quality_hashes"] = facts.low_quality("hash_quality", limits.min_hash_quality)
    if limits.near_duplicate_crops:
        value["low_quality_fields"] = facts.low_quality("field_quality", limits.min_field_quality)
    return Check("near_duplicates", not groups, value, limits.near_threshold)


def constant_images(facts: Facts, limits: Thresholds) -> Check:
    constant = facts.pixels.constant
    return Check("constant_images", not constant, {"images": len(constant), "examples": facts.constant_paths}, 0)


def paths_unique_sorted(facts: Facts, limits: Thresholds) -> Check:
    disorder, example = facts.path_order
    return Check("paths_unique_sorted", disorder == 0, {"out_of_order_or_duplicate": disorder, "example": example}, 0)


def rows_plus_failures_equal_index(facts: Facts, limits: Thresholds) -> Check:
    value = {key: found for key, found in facts.accounting.items() if key not in ("failures", "filtered")}
    return Check("rows_plus_failures_equal_index", value["problems"] == 0, value, 0)


def failure_fraction(facts: Facts, limits: Thresholds) -> Check:
    failed, indexed = facts.accounting["failures"], facts.accounting["indexed"]
    fraction = failed / indexed if indexed else 0.0  # what the filters left out is no failure
    value = {"failures": failed, "indexed": indexed, "fraction": round(fraction, 6)}
    if facts.accounting["filtered"]:
        value["filtered"] = facts.accounting["filtered"]
    return Check("failure_fraction", fraction <= limits.max_failure_fraction, value, limits.max_failure_fraction)


def images_sha256(facts: Facts, limits: Thresholds) -> Check:
    found, recorded = facts.pixels.sha256, facts.meta.images_sha256
    return Check("images_sha256", found == recorded, found, recorded)


def images_crc32(facts: Facts, limits: Thresholds) -> Check:
    found, recorded = facts.pixels.crcs, facts.member("crc32s")
    damaged = np.flatnonzero(found != recorded).tolist() if recorded.shape == found.shape else range(facts.count)
    value = {"rows": len(damaged), "examples": facts.paths_of(damaged[:LISTED])}
    return Check("images_crc32", not damaged, value, "every row's bytes have the CRC-32 they had when decoded")


def meta_matches_config(facts: Facts, limits: Thresholds) -> Check:
    meta = facts.meta
    passed = meta.pixel == facts.pixel and meta.images == facts.count
    return Check("meta_matches_config", passed, {"pixel": meta.pixel, "images": meta.images}, {"pixel": facts.pixel})


def split_values(facts: Facts, limits: Thresholds) -> Check | None:
    split, names = facts.split, facts.split_names
    if split is None:
        return None
    bad = int(((split < 0) | (split >= len(names))).sum())
    passed = bad == 0 and len(split) == len(facts.labels)
    return Check("split_values", passed, {"out_of_range": bad}, [0, len(names) - 1])


def split_duplicates(facts: Facts, limits: Thresholds) -> Check | None:
    """The same pixels in two splits: a model is validated on what it trained on."""
    split, names = facts.split, facts.split_names
    if split is None:
        return None
    leaks = [group for group in facts.duplicates if len(set(split[group].tolist())) > 1]
    examples = [
        [f"{path} ({names[split[row]]})" for path, row in zip(facts.paths_of(group[:LISTED]), group, strict=False)]
        for group in leaks[:LISTED]
    ]
    return Check("split_duplicates", not leaks, {"groups": len(leaks), "examples": examples}, 0)


def split_near_duplicates(facts: Facts, limits: Thresholds) -> Check | None:
    """A near-duplicate pair in two splits: a model is validated on a copy of what it trained on."""
    split, names = facts.split, facts.split_names
    if split is None:
        return None
    found = facts.near_duplicates(limits.near_rule)
    across = np.flatnonzero(split[found.first] != split[found.second])
    shown = across[:LISTED]
    first, second = facts.paths_of(found.first[shown]), facts.paths_of(found.second[shown])
    examples = [
        [a, names[split[found.first[n]]], b, names[split[found.second[n]]], int(found.distance[n])]
        for n, a, b in zip(shown, first, second, strict=True)
    ]
    value = {"pairs": len(across), "examples": examples}
    return Check("split_near_duplicates", not len(across), value, limits.near_threshold)


def split_groups(facts: Facts, limits: Thresholds) -> Check | None:
    """One group (``group_by``) in two splits."""
    split, names = facts.split, facts.split_names
    if split is None:
        return None
    key = group_function((facts.meta.splits or {}).get("group_by", "path"))
    first_split: dict[str, int] = {}
    straddling: dict[str, set[int]] = {}
    for row, path in enumerate(facts.iter_paths()):
        group, where = key(path), int(split[row])
        if first_split.setdefault(group, where) != where:
            straddling.setdefault(group, {first_split[group]}).add(where)
    listed = {group: sorted(names[i] for i in where) for group, where in list(straddling.items())[:LISTED]}
    value = {"groups": len(first_split), "in_two_or_more": len(straddling), "examples": listed}
    return Check("split_groups", not straddling, value, 0)


def split_fractions(facts: Facts, limits: Thresholds) -> Check | None:
    """How close each split came to its fraction (within 1%, or 3 binomial sigmas if more)."""
    split, names = facts.split, facts.split_names
    if split is None:
        return None
    per_split = np.bincount(split[split >= 0], minlength=len(names))
    total = max(int(per_split.sum()), 1)
    wanted = (facts.meta.splits or {}).get("fractions", {})
    drift = {name: round(per_split[i] / total - wanted.get(name, 0.0), 4) for i, name in enumerate(names)}
    tolerance = max(SPLIT_TOLERANCE, 3 * max((f * (1 - f) / total) ** 0.5 for f in wanted.values()) if wanted else 0)
    return Check(
        "split_fractions",
        all(abs(d) <= tolerance for d in drift.values()),
        {"counts": dict(zip(names, per_split.tolist(), strict=True)), "drift": drift},
        {"fractions": wanted, "tolerance": round(tolerance, 4)},
    )


GATES: tuple[CheckFunction, ...] = (members, shapes_and_dtypes)
CHECKS: tuple[CheckFunction, ...] = (
    value_range,
    labels_in_classes,
    classes_sorted_unique,
    class_counts,
    duplicate_images,
    near_duplicates,
    constant_images,
    paths_unique_sorted,
    rows_plus_failures_equal_index,
    failure_fraction,
    images_sha256,
    images_crc32,
    meta_matches_config,
    split_values,
    split_duplicates,
    split_near_duplicates,
    split_groups,
    split_fractions,
)


def run_checks(facts: Facts, limits: Thresholds) -> tuple[list[Check], bool]:
    """Every check that applies, with its severity; and whether the gates passed (the dataset
    could be read at all)."""
    checks: list[Check] = []
    readable = True
    for check in GATES:
        checks.append(check(facts, limits))
        if not checks[-1].passed:
            readable = False
            break
    if readable:
        # the near-duplicate search needs the hashes, not the pixels (a rerun's, the pixel pass's
        # fingerprints too): it runs beside the checks that read the pixels
        with ThreadPoolExecutor(1, thread_name_prefix="near-duplicates") as ahead:
            ahead.submit(facts.near_duplicates, limits.near_rule)
            checks.extend(found for check in CHECKS if (found := check(facts, limits)) is not None)
    for check in checks:
        check.severity = "soft" if check.name in SOFT_CHECKS and check.name not in limits.fail_on else "hard"
    return checks, readable
