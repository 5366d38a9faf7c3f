"""Each check of ``validation.json`` as short text a person reads: what it measured, its threshold and
the config keys that set it. The error line, the log and the report's Checks table all say it this way;
the JSON values stay as they are in ``validation.json``.

A check takes the dict form of :class:`~img2npz.contract.Check` (``name``, ``passed``, ``value``,
``threshold``, ``severity``). Every check of :mod:`img2npz.checks` has its own wording in
:data:`WORDING`; any other value is summarised by :func:`plain`, so no text is a JSON blob.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from img2npz.checks import SOFT_CHECKS, THRESHOLD_KEYS

LIMIT = 240  # the longest text; past it, an ellipsis
SHOWN = 2  # examples named in a text


def _clip(text: str, limit: int = LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def number(value: float) -> str:
    """``1,000``, ``0.5``, ``-2.11765``: integers in full, other numbers to six digits (enough that a
    measure just past its threshold does not read as equal to it)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int) or value.is_integer():
        return f"{int(value):,}"
    return f"{value:.6g}"


def percent(fraction: float) -> str:
    """``5.004%``: four digits, so 2,502 of 50,000 does not read as the 5% it exceeds."""
    return f"{fraction * 100:.4g}%"


def count(n: int, noun: str, nouns: str | None = None) -> str:
    """``1 image``, ``3 images``, ``2 classes``."""
    return f"{n:,} {noun if n == 1 else nouns or noun + 's'}"


def some(items: Iterable[Any], shown: int = SHOWN) -> str:
    """``a, b`` or ``a, b and 10 more``."""
    items = list(items)
    more = f" and {len(items) - shown:,} more" if len(items) > shown else ""
    return ", ".join(plain(item) for item in items[:shown]) + more


def plain(value: Any) -> str:
    """Any JSON value as words: ``key value`` pairs, lists summarised, ``none`` for null."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return number(value)
    if isinstance(value, Mapping):
        return _clip(", ".join(f"{str(key).replace('_', ' ')} {plain(item)}" for key, item in value.items()))
    if isinstance(value, list | tuple):
        flat = not any(isinstance(item, Mapping | list | tuple) for item in value)
        return _clip(some(value, len(value) if flat and len(value) <= 4 else SHOWN))  # a colour: all three
    return _clip(str(value))


def _examples(found: Mapping, key: str = "examples") -> str:
    """``, e.g. a, b`` of a check's first example (a group of paths, or a path)."""
    examples = found.get(key) or []
    if not examples:
        return ""
    first = examples[0]
    return f", e.g. {some(first) if isinstance(first, list) else plain(first)}"


def _shape(shape: list, dtype: str) -> str:
    return " x ".join(str(n) for n in shape) + f" {dtype}" if shape else dtype


def pixel_config(pixel: Mapping) -> str:
    """``256 x 256 uint8, center-crop, background 255, 255, 255``: the config that shapes the pixels."""
    height, width = pixel["size"]
    text = f"{height} x {width} {pixel['dtype']}, {pixel['resize']}, background {plain(pixel['background'])}"
    norm = pixel.get("normalize")
    return text + (f", normalized by mean {plain(norm['mean'])}, std {plain(norm['std'])}" if norm else "")


def _members(check: Mapping) -> str:
    found = check["value"]  # the file's members, or the missing ones
    if not check["passed"]:
        return f"missing {some(found, 4)}"
    return f"all present ({count(len(found), 'member')} in the file)"


def _shapes(check: Mapping) -> str:
    shapes = check["value"]
    if isinstance(shapes, str):
        return shapes
    shown = shapes if not check["passed"] else {"images": shapes["images"]} if "images" in shapes else shapes
    return "; ".join(f"{name} {_shape(*shape)}" for name, shape in shown.items())


def _class_counts(check: Mapping) -> str:
    found = check["value"]
    if not isinstance(found, Mapping):
        return "unlabelled (no classes)"
    smallest, largest = min(found["smallest"].values()), max(found["largest"].values())
    text = f"{count(found['classes'], 'class', 'classes')}, {number(smallest)} to {count(largest, 'image')} each"
    text += f", largest / smallest {number(found['imbalance'])}" if found["imbalance"] is not None else ""
    text += f"; empty: {some(found['empty'])}" if found["empty"] else ""
    return text + (f"; under the minimum: {some(found['below_min'])}" if found["below_min"] else "")


def _class_limits(check: Mapping) -> str:
    limits = check["threshold"]
    if limits is None:
        return "none (no classes)"
    return (
        f"at least {count(limits['min_class_images'], 'image')} per class, "
        f"largest / smallest at most {number(limits['max_class_imbalance'])}"
    )


def _groups(check: Mapping) -> str:
    found = check["value"]
    if not found["groups"]:
        return "none"
    return f"{count(found['groups'], 'group')}, {count(found['images'], 'image')}{_examples(found)}"


def _images(check: Mapping) -> str:
    found = check["value"]
    return f"{count(found['images'], 'image')}{_examples(found)}" if found["images"] else "none"


def _order(check: Mapping) -> str:
    found = check["value"]
    wrong = found["out_of_order_or_duplicate"]
    if not wrong:
        return "every path unique, in order"
    return f"{count(wrong, 'path')} out of order or repeated" + _examples(found, "example")


def _accounting(check: Mapping) -> str:
    found = check["value"]
    text = f"{count(found['indexed'], 'file')} indexed, {number(found['problems'])} not in exactly one"
    for key, what in (("missing", "in neither"), ("extra", "not indexed"), ("in_both", "in both")):
        text += f"; {what}: {some(found[key])}" if found.get(key) else ""
    return text


def _failures(check: Mapping) -> str:
    found = check["value"]
    text = f"{number(found['failures'])} of {count(found['indexed'], 'file')} failed ({percent(found['fraction'])})"
    return text + (f"; {number(found['filtered'])} left out by the filters" if found.get("filtered") else "")


def _digest(value: Any) -> str:
    return f"{value[:16]}…" if isinstance(value, str) else "none recorded"


def _damaged(check: Mapping) -> str:
    found = check["value"]
    return f"{count(found['rows'], 'damaged row')}{_examples(found)}" if found["rows"] else "no damaged row"


def _split_duplicates(check: Mapping) -> str:
    found = check["value"]
    return f"{count(found['groups'], 'group')} in two splits{_examples(found)}" if found["groups"] else "none"


def _split_pairs(check: Mapping) -> str:
    found = check["value"]
    if not found["pairs"]:
        return "none"
    first, first_split, second, second_split, bits = found["examples"][0]
    example = f"{first} ({first_split}) and {second} ({second_split}), {count(bits, 'bit')} apart"
    return f"{count(found['pairs'], 'pair')} in two splits, e.g. {example}"


def _split_groups(check: Mapping) -> str:
    found = check["value"]
    text = f"{count(found['groups'], 'group')}, {number(found['in_two_or_more'])} in two or more splits"
    straddling = [f"{group} ({plain(where)})" for group, where in found["examples"].items()]
    return text + (f", e.g. {some(straddling)}" if straddling else "")


def _split_counts(check: Mapping) -> str:
    counts = check["value"]["counts"]
    total = sum(counts.values()) or 1
    return some((f"{name} {number(n)} ({percent(n / total)})" for name, n in counts.items()), 5)


def _split_wanted(check: Mapping) -> str:
    limits = check["threshold"]
    wanted = some((f"{name} {percent(fraction)}" for name, fraction in limits["fractions"].items()), 5)
    return f"{wanted}, each within {percent(limits['tolerance'])}"


def _range(check: Mapping) -> str:
    found = check["value"]
    if found["min"] is None:
        return "no new rows to read (the shards were verified by an earlier run)"
    return f"{number(found['min'])} to {number(found['max'])}" + ("" if found["finite"] else ", some not finite")


def _labels(check: Mapping) -> str:
    found = check["value"]
    return f"{number(found['out_of_range'])} out of range, {number(found['unlabelled'])} unlabelled"


def _between(check: Mapping) -> str:
    low, high = check["threshold"]
    return f"{number(low)} to {number(high)}"


def _none_within(check: Mapping) -> str:
    limits = check["threshold"]
    if not isinstance(limits, Mapping):  # a validation.json from before crops and hash quality
        return f"none within {count(limits, 'bit')}"
    said = f"none within {count(limits['bits'], 'bit')}"
    if limits["crop_bits"] is not None:
        said += f", no crop within {count(limits['crop_bits'], 'bit')}"
        if limits.get("min_field_quality"):
            said += f" among fields of quality {limits['min_field_quality']} or more"
    if limits["min_hash_quality"]:
        said += f" (hashes of quality under {limits['min_hash_quality']}: exact copies only)"
    return said


def _required(check: Mapping) -> str:
    return f"{count(len(check['threshold']), 'member')}: {some(check['threshold'], 3)}"


def _shape_required(check: Mapping) -> str:
    return f"images {_shape(*check['threshold']['images'])}; N labels (int64) and paths"


def _meta(check: Mapping) -> str:
    return f"{pixel_config(check['value']['pixel'])}; {count(check['value']['images'], 'image')}"


def _split_values(check: Mapping) -> str:
    return f"{number(check['value']['out_of_range'])} out of range"


Text = Callable[[Mapping], str]
# Each check's wording: (what it measured, what it allows: a function of the check, or fixed words).
WORDING: dict[str, tuple[Text, Text | str]] = {
    "members": (_members, _required),
    "shapes_and_dtypes": (_shapes, _shape_required),
    "value_range": (_range, _between),
    "labels_in_classes": (_labels, _between),
    "classes_sorted_unique": (lambda check: count(check["value"], "class", "classes"), "sorted, no name twice"),
    "class_counts": (_class_counts, _class_limits),
    "duplicate_images": (_groups, "none"),
    "near_duplicates": (_groups, _none_within),
    "constant_images": (_images, "none"),
    "paths_unique_sorted": (_order, "none out of order"),
    "rows_plus_failures_equal_index": (_accounting, "each indexed file in dataset.npz or failures.tsv, not both"),
    "failure_fraction": (_failures, lambda check: f"at most {percent(check['threshold'])}"),
    "images_sha256": (lambda check: _digest(check["value"]), lambda check: f"{_digest(check['threshold'])} (meta)"),
    "images_crc32": (_damaged, "the CRC-32 of each row when decoded"),
    "meta_matches_config": (_meta, lambda check: f"{pixel_config(check['threshold']['pixel'])}; N images"),
    "split_values": (_split_values, _between),
    "split_duplicates": (_split_duplicates, "none"),
    "split_near_duplicates": (_split_pairs, _none_within),
    "split_groups": (_split_groups, "none in two splits"),
    "split_fractions": (_split_counts, _split_wanted),
}


def _worded(check: Mapping, part: int, key: str) -> str:
    """The check's own wording; :func:`plain` of ``check[key]`` for a check without one, or for a value
    of a shape the wording does not know (words must never stop the report)."""
    wording = WORDING.get(check["name"], (None, None))[part]
    if isinstance(wording, str):
        return wording
    try:
        return _clip(wording(check)) if wording else plain(check[key])
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        return plain(check[key])


def measured(check: Mapping) -> str:
    """What the check found, e.g. ``2 of 30 files failed (6.667%)``."""
    return _worded(check, 0, "value")


def _listed(words: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return " and ".join([", ".join(words[:-1]), words[-1]] if len(words) > 2 else words)


def threshold(check: Mapping) -> str:
    """What it allows, e.g. ``at most 5%``."""
    return _worded(check, 1, "threshold")


def set_by(check: Mapping) -> str:
    """The config keys behind the verdict, e.g. ``set by validate.max_failure_fraction``; a soft
    check made to fail the run also names ``validate.fail_on``. Empty for a fixed threshold, or none
    (``class_counts`` of unlabelled data)."""
    keys = THRESHOLD_KEYS.get(check["name"]) if check["threshold"] is not None else None  # no threshold applied
    said = [f"set by {_listed(keys)}"] if keys else []
    if check["name"] in SOFT_CHECKS and check["severity"] == "hard":
        said.append("fails the run by validate.fail_on")
    return ", ".join(said)


def line(check: Mapping) -> str:
    """``failure_fraction (measured ..., threshold ..., set by validate.max_failure_fraction)``."""
    keys = set_by(check)
    return f"{check['name']} (measured {measured(check)}, threshold {threshold(check)}{', ' + keys if keys else ''})"
