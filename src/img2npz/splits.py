"""Train / validation / test splits that never move an image when other images come or go.

An image's split is a pure function of its *group key*: blake2b of the key (personalised, so it is
independent of the shard cuts), read as a number in [0, 1), falls into the configured fractions
taken in their configured order. No seed, no ranking among the other images, no memory of earlier
runs: adding or removing images never moves one, a dataset built in one go equals one grown run by
run, and the images of one group (a subject, a video, a folder) always share a split.

The group key is the relative path (``group_by: path``), its parent folder (``parent``), or the
first group of a regular expression searched in the path (a path it does not match is its own
group). The class never enters the hash, so every class is split in the configured proportions in
expectation; with n images (or groups) in a class its fractions are within binomial noise,
about 2 * sqrt(f * (1 - f) / n): 0.6% at 10^4 for f = 0.1. Exact per-class quotas would have to
move old images when new ones arrive, which is what this module exists to avoid.

With ``group_near_duplicates``, near-duplicates (:func:`img2npz.neardup.near_duplicate_pairs`,
exact duplicates among them) join each other's groups: every set of groups linked by a pair takes
the split of its member with the smallest hash value, so no copy of a picture is in two splits. An
image then moves only when an image added later is a near-duplicate of its group's and has a smaller
value (or links its group to one that has): the split of a picture with no near-duplicate never
changes, and one with copies changes at most when a copy arrives.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from img2npz import neardup

_HASH = hashlib.blake2b(digest_size=8, person=b"img2npz-split")


def group_function(group_by: str) -> Callable[[str], str]:
    """``path``, ``parent`` or a regex with a capturing group -> path to group key."""
    if group_by == "path":
        return lambda path: path
    if group_by == "parent":
        return lambda path: path.rsplit("/", 1)[0] if "/" in path else ""
    pattern = re.compile(group_by)
    if pattern.groups < 1:
        raise ValueError(f"group_by regex {group_by!r} needs a capturing group (the group's name)")

    def key(path: str) -> str:
        match = pattern.search(path)
        return match.group(1) if match and match.group(1) is not None else path

    return key


def unit_values(keys: Sequence[str]) -> np.ndarray:
    """Each key's fixed point in [0, 1) (float64 from the hash's top 53 bits)."""
    digests = []
    for key in keys:
        hasher = _HASH.copy()
        hasher.update(key.encode("utf-8", "surrogateescape"))
        digests.append(hasher.digest())
    if not digests:
        return np.zeros(0)
    values = np.frombuffer(b"".join(digests), dtype=">u8").astype(np.uint64) >> np.uint64(11)
    return values.astype(np.float64) / float(1 << 53)


def key_values(paths: Sequence[str], group_by: str = "path") -> np.ndarray:
    """Each path's group key's point in [0, 1)."""
    key = group_function(group_by)
    return unit_values([key(path) for path in paths])


def joined(values: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """``values`` with every set of rows joined by the pairs (``first[i]``, ``second[i]``), and by
    sharing a value (one group key), given the smallest value among them: so they share a split,
    and it is the split one of them would have alone."""
    order = np.argsort(values, kind="stable")
    same = np.flatnonzero(values[order][1:] == values[order][:-1])
    roots = neardup.groups(len(values), np.concatenate([first, order[same]]), np.concatenate([second, order[same + 1]]))
    smallest = values.copy()
    np.minimum.at(smallest, roots, values)
    return smallest[roots]


def split_of(values: np.ndarray, fractions: Mapping[str, float]) -> np.ndarray:
    """int8 split index (into ``list(fractions)``) of each point in [0, 1)."""
    bounds = np.cumsum(list(fractions.values()))
    bounds[-1] = 1.0  # fractions sum to 1 up to float error; the last split takes the rest
    return np.searchsorted(bounds, values, side="right").astype(np.int8)


def assign(
    paths: Sequence[str],
    fractions: Mapping[str, float],
    group_by: str = "path",
    pairs: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """int8 split index (into ``list(fractions)``) of every path; ``pairs`` (rows of ``paths``):
    near-duplicates to keep in one split (:func:`joined`)."""
    values = key_values(paths, group_by)
    return split_of(joined(values, *pairs) if pairs is not None else values, fractions)


def check_fractions(fractions: Mapping[str, float]) -> str | None:
    """What is wrong with a ``splits`` mapping, or None."""
    total = sum(fractions.values())
    if abs(total - 1) > 1e-6:
        return f"split fractions add up to {total:g}, not 1"
    return None
