"""validate: validation.json, the report outputs and the run's verdict, end to end of the step."""

import json
import logging

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


def test_a_failed_check_names_the_config_key_that_sets_its_threshold_in_the_error_and_the_log(tmp_path, caplog):
    make_tree(tmp_path / "src")  # 22 files, one unreadable
    out, fail, _, _ = build_dataset(tmp_path, 4, "d")
    with caplog.at_level(logging.INFO, logger="img2npz.validate"), pytest.raises(ValidationFailed) as caught:
        run_validation(tmp_path, out, fail, max_failure_fraction=0.01, fail_on=["constant_images"])
    message = str(caught.value)
    failures = (
        "failure_fraction (measured 1 of 22 files failed (4.546%), threshold at most 1%, "
        "set by validate.max_failure_fraction)"
    )
    assert message.startswith("validation failed: constant_images (measured 21 images, e.g. blue/00.png, ")
    assert "threshold none, fails the run by validate.fail_on); " + failures + "; report: " in message
    assert not any(mark in message for mark in '{}[]"')  # words, not JSON
    logged = [record.getMessage() for record in caplog.records]
    blank = message.removeprefix("validation failed: ").split("; failure_fraction")[0]
    assert f"FAIL {failures}" in logged and f"FAIL {blank}" in logged  # the log says what the error says
    assert any(text.startswith("PASS images_sha256 (measured ") for text in logged)
    assert any(text.startswith("WARN duplicate_images (measured ") for text in logged)


def test_a_dataset_without_images_gets_no_empty_samples_or_histograms_on_its_page(tmp_path):
    (tmp_path / "src" / "a").mkdir(parents=True)
    for i in range(3):
        (tmp_path / "src" / "a" / f"{i}.png").write_bytes(b"not an image")
    out, fail, _, _ = build_dataset(tmp_path, 4, "d")
    run_validation(tmp_path, out, fail, max_failure_fraction=1.0)
    page = (tmp_path / "r.html").read_text()
    assert 'id="samples"' not in page and 'id="pixel-values"' not in page and "data:image/png" in page
    assert 'id="images-per-class"' in page and "a/0.png" in page  # its class (none left) and the files left out
    assert (tmp_path / "s.png").is_file() and (tmp_path / "h.png").is_file()  # the rule's outputs, still written
