"""filters: each drop is a failure of stage filter naming its key; the validation accounts for it."""

import json

import numpy as np
import pytest
from conftest import build_dataset, run_validation, save, solid, with_orientation
from PIL import Image

from img2npz.decode import ImageFailure
from img2npz.filters import Filters
from img2npz.tsv import read_tsv


def noise(seed, size):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


@pytest.mark.parametrize(
    ("filters", "size", "key"),
    [
        (Filters(min_width=20), (19, 40), "filters.min_width"),
        (Filters(min_height=20), (40, 19), "filters.min_height"),
        (Filters(max_aspect=2), (41, 20), "filters.max_aspect"),
    ],
)
def test_size_filters_name_their_key(filters, size, key):
    with pytest.raises(ImageFailure, match=key) as caught:
        filters.admit_size(size)
    assert caught.value.stage == "filter" and f"{size[0]}x{size[1]}" in caught.value.reason
    Filters().admit_size(size)  # off by default


def test_constant_filter_sees_one_colour_only():
    counts = np.zeros((3, 256), np.int64)
    counts[:, 7] = 100
    with pytest.raises(ImageFailure, match="drop_constant"):
        Filters(drop_constant=True).admit_pixels(counts)
    counts[1, 8] = 1  # one pixel off
    Filters(drop_constant=True).admit_pixels(counts)


def test_from_config_takes_the_section():
    section = {"min_width": 3, "min_height": None, "max_aspect": 2.5, "drop_constant": True, "drop_duplicates": "near"}
    filters = Filters.from_config(section)
    assert filters == Filters(3, None, 2.5, True, "near")
    assert "drop_duplicates" not in filters.shard_key()  # the merge's, not the shard job's


def test_shard_jobs_drop_and_list_what_the_filters_leave_out(tmp_path):
    src = tmp_path / "src"
    for number in range(6):
        save(noise(number, (30, 24)), src / "a" / f"{number}.png")
    save(noise(10, (12, 24)), src / "a" / "narrow.png")
    save(noise(11, (90, 24)), src / "a" / "wide.png")
    save(solid((200, 10, 10), (30, 24)), src / "a" / "blank.png")
    stored, exif = with_orientation(noise(12, (24, 12)), 6)  # stored 12 wide, upright 24 wide: kept
    stored.save(src / "a" / "turned.png", exif=exif)
    filters = Filters(min_width=20, max_aspect=3, drop_constant=True)
    out, fail, _, _ = build_dataset(tmp_path, 4, "d", filters=filters)
    with np.load(out) as data:
        assert sorted(data["paths"].tolist()) == [*(f"a/{n}.png" for n in range(6)), "a/turned.png"]
    reasons = {path: (stage, error) for path, stage, error in read_tsv(fail, ["path", "stage", "error"])}
    assert {path: stage for path, (stage, _) in reasons.items()} == {
        "a/narrow.png": "filter",
        "a/wide.png": "filter",
        "a/blank.png": "filter",
    }
    assert "filters.min_width" in reasons["a/narrow.png"][1] and "filters.max_aspect" in reasons["a/wide.png"][1]
    assert "filters.drop_constant" in reasons["a/blank.png"][1]
    checks = {c.name: c for c in run_validation(tmp_path, out, fail, max_failure_fraction=0.0)}
    assert checks["failure_fraction"].passed and checks["failure_fraction"].value["filtered"] == 3
    assert checks["rows_plus_failures_equal_index"].passed
    assert json.loads((tmp_path / "v.json").read_text())["passed"]
