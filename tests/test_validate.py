"""validate: validation.json, the report outputs and the run's verdict, end to end of the step."""

import json

import pytest
from conftest import build_dataset, make_tree, run_validation

from img2npz.validate import ValidationFailed


def test_a_good_dataset_passes_every_check(tmp_path):
    make_tree(tmp_path / "src")
    out, fail, _, _ = build_dataset(tmp_path, 4, "d")
    checks = run_validation(tmp_path, out, fail)
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
    assert {c["name"] for c in document["checks"]} == names and document["warnings"] == [
        "duplicate_images",
        "near_duplicates",
        "constant_images",
    ]
    assert all((tmp_path / name).is_file() for name in ("s.png", "c.png", "h.png", "r.html"))


def test_too_many_failures_fail_the_run_by_name(tmp_path):
    make_tree(tmp_path / "src")
    out, fail, _, _ = build_dataset(tmp_path, 4, "d")
    with pytest.raises(ValidationFailed, match="failure_fraction"):
        run_validation(tmp_path, out, fail, max_failure_fraction=0.01)
    assert json.loads((tmp_path / "v.json").read_text())["passed"] is False


def test_html_report_is_self_contained_and_shows_what_was_left_out(tmp_path):
    make_tree(tmp_path / "src")
    out, fail, _, _ = build_dataset(tmp_path, 4, "d")
    run_validation(tmp_path, out, fail)
    page = (tmp_path / "r.html").read_text()
    assert page.count("data:image/png;base64,") == 3
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert "red/zz_broken.png" in page and "UnidentifiedImageError" in page
    assert "Every hard check passed" in page
    assert "This run passed" in (tmp_path / "log.html").read_text()


def test_soft_checks_warn_in_the_document_and_fail_the_run_when_named_in_fail_on(tmp_path):
    make_tree(tmp_path / "src")  # solid colours: duplicates and blank images, soft by default
    out, fail, _, _ = build_dataset(tmp_path, 4, "d")
    run_validation(tmp_path, out, fail)
    document = json.loads((tmp_path / "v.json").read_text())
    assert document["passed"] is True and document["warnings"] == [
        "duplicate_images",
        "near_duplicates",
        "constant_images",
    ]
    with pytest.raises(ValidationFailed, match=r"^validation failed: constant_images .*; report: .*log\.html$"):
        run_validation(tmp_path, out, fail, fail_on=["constant_images"])
    assert json.loads((tmp_path / "v.json").read_text())["warnings"] == ["duplicate_images", "near_duplicates"]
    assert "Validation failed: constant_images" in (tmp_path / "log.html").read_text()
