import json

import numpy as np
import pytest
from conftest import DEFAULT_PIXEL, build_dataset, make_tree
from PIL import Image

from img2npz.npzformat import write_npz
from img2npz.validate import ValidationFailed, account_for_index, validate_dataset


def run(tmp_path, out, fail, **overrides):
    options = {"label_mode": "folder", "max_failure_fraction": 0.2, "samples": 9}
    options.update(overrides)
    return validate_dataset(
        str(out),
        str(fail),
        str(out.parent / "images.parquet"),
        DEFAULT_PIXEL,
        out_json=tmp_path / "v.json",
        out_samples=tmp_path / "s.png",
        **options,
    )


def test_a_good_dataset_passes_every_check(tmp_path):
    make_tree(tmp_path / "src")
    out, fail, _, _ = build_dataset(tmp_path, 4, "d")
    checks = run(tmp_path, out, fail)
    names = {check.name for check in checks}
    assert {
        "shapes_and_dtypes",
        "value_range",
        "labels_in_classes",
        "paths_unique_sorted",
        "rows_plus_failures_equal_index",
        "failure_fraction",
        "images_sha256",
    } <= names
    document = json.loads((tmp_path / "v.json").read_text())
    assert document["passed"] is True
    assert all({"name", "passed", "value", "threshold"} <= set(check) for check in document["checks"])
    grid = Image.open(tmp_path / "s.png")
    assert grid.size[0] > 3 * 128 and np.asarray(grid.convert("RGB")).std() > 10


def test_too_many_failures_fail_the_run_by_name(tmp_path):
    make_tree(tmp_path / "src")
    out, fail, _, _ = build_dataset(tmp_path, 4, "d")
    with pytest.raises(ValidationFailed, match="failure_fraction"):
        run(tmp_path, out, fail, max_failure_fraction=0.01)
    assert json.loads((tmp_path / "v.json").read_text())["passed"] is False


def test_tampered_images_fail_the_checksum(tmp_path):
    make_tree(tmp_path / "src")
    out, fail, _, _ = build_dataset(tmp_path, 4, "d")
    with np.load(out) as data:
        arrays = {key: data[key] for key in data}
    arrays["images"][0, 0, 0, 0] ^= 1
    with open(out, "wb") as handle:
        write_npz(handle, arrays)
    with pytest.raises(ValidationFailed) as caught:
        run(tmp_path, out, fail)
    assert "images_sha256" in str(caught.value) and "failure_fraction" not in str(caught.value)


def test_accounting_finds_missing_extra_and_doubled_paths():
    ok = account_for_index(iter(["a", "c"]), iter(["b"]), iter(["a", "b", "c"]))
    assert ok["problems"] == 0 and ok["indexed"] == 3
    bad = account_for_index(iter(["a", "b", "z"]), iter(["b"]), iter(["a", "b", "c"]))
    assert bad["in_both"] == ["b"] and bad["missing"] == ["c"] and bad["extra"] == ["z"]
