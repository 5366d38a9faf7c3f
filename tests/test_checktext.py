"""checktext: every check reads as short text (never JSON), and names the config keys behind its verdict."""

from dataclasses import asdict

import numpy as np
from conftest import DEFAULT_PIXEL, build_dataset, save, thresholds
from PIL import Image

from img2npz.checks import CHECKS, GATES, run_checks
from img2npz.checktext import LIMIT, WORDING, line, measured, plain, set_by, threshold
from img2npz.facts import Facts
from img2npz.splits import assign

FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}
JSON_MARKS = '{}[]"'


def noise(seed):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (10, 12, 3), dtype=np.uint8))


def checks_of_a_flawed_dataset(tmp_path) -> list[dict]:
    """Every check, several failing: a duplicate in two splits, a blank image, an unreadable file."""
    names = [f"a/{i:03d}.png" for i in range(60)]
    split = assign(names, FRACTIONS).tolist()
    for i, name in enumerate(names[:30]):
        save(noise(i), tmp_path / "src" / name)
    train = names[split.index(0)]
    copy = next(name for name, where in zip(names[30:], split[30:], strict=True) if where == 1)
    save(noise(names.index(train)), tmp_path / "src" / copy)  # a val copy of a train image
    save(Image.new("RGB", (12, 10), (40, 90, 160)), tmp_path / "src" / "b" / "blank.png")
    (tmp_path / "src" / "b" / "broken.png").write_bytes(b"not an image")
    out, fail, _, _ = build_dataset(tmp_path, 6, "d", splits=FRACTIONS)
    facts = Facts(str(out), str(fail), str(out.parent / "images.parquet"), DEFAULT_PIXEL, "folder")
    checks = [asdict(check) for check in run_checks(facts, thresholds(fail_on=["constant_images"]))[0]]
    return checks, train, copy


def test_every_check_has_its_own_words_and_none_of_them_is_json(tmp_path):
    checks, train, copy = checks_of_a_flawed_dataset(tmp_path)
    assert set(WORDING) == {check.__name__ for check in GATES + CHECKS} == {c["name"] for c in checks}
    failed = {c["name"] for c in checks if not c["passed"]}
    assert {"duplicate_images", "constant_images", "split_duplicates", "split_near_duplicates"} <= failed
    for check in checks:
        found, allowed = WORDING[check["name"]]
        assert found(check) == measured(check)  # its own words, not the fallback
        assert isinstance(allowed, str) or allowed(check) == threshold(check)
        for text in (measured(check), threshold(check), line(check)):
            assert text and len(text) <= 2 * LIMIT and not any(mark in text for mark in JSON_MARKS), text
    words = {c["name"]: line(c) for c in checks}
    assert f"1 group in two splits, e.g. {train} (train), {copy} (val)" in words["split_duplicates"]
    assert words["constant_images"].startswith("constant_images (measured 1 image, e.g. b/blank.png, threshold none")


def test_a_failed_check_reads_as_what_was_found_against_what_is_allowed():
    failures = {
        "name": "failure_fraction",
        "passed": False,
        "value": {"failures": 3, "indexed": 1500, "fraction": 0.002, "filtered": 7},
        "threshold": 0.001,
        "severity": "hard",
    }
    assert measured(failures) == "3 of 1,500 files failed (0.2%); 7 left out by the filters"
    assert threshold(failures) == "at most 0.1%"
    classes = {
        "name": "class_counts",
        "passed": False,
        "value": {
            "classes": 3,
            "smallest": {"gone": 0, "few": 1, "many": 40},
            "largest": {"many": 40, "few": 1, "gone": 0},
            "empty": ["gone"],
            "below_min": ["gone", "few"],
            "imbalance": None,
        },
        "threshold": {"min_class_images": 2, "max_class_imbalance": 10},
        "severity": "soft",
    }
    assert measured(classes) == "3 classes, 0 to 40 images each; empty: gone; under the minimum: gone, few"
    assert threshold(classes) == "at least 2 images per class, largest / smallest at most 10"
    fractions = {
        "name": "split_fractions",
        "passed": False,
        "value": {"counts": {"train": 70, "val": 30}, "drift": {"train": -0.1, "val": 0.1}},
        "threshold": {"fractions": {"train": 0.8, "val": 0.2}, "tolerance": 0.01},
        "severity": "soft",
    }
    assert measured(fractions) == "train 70 (70%), val 30 (30%)"
    assert threshold(fractions) == "train 80%, val 20%, each within 1%"


def test_the_near_duplicate_threshold_says_what_is_matched():
    def near(limits):
        return threshold({"name": "near_duplicates", "threshold": limits, "severity": "soft"})

    assert near({"bits": 24, "crop_bits": 36, "min_hash_quality": 20, "min_field_quality": 40}) == (
        "none within 24 bits, no crop within 36 bits among fields of quality 40 or more"
        " (hashes of quality under 20: exact copies only)"
    )
    assert near({"bits": 1, "crop_bits": None, "min_hash_quality": 0}) == "none within 1 bit"
    assert near(16) == "none within 16 bits"  # a report from before crops


def test_the_keys_behind_a_verdict_are_named_and_fail_on_when_it_made_a_warning_fail():
    def check(name, severity="hard"):
        return {"name": name, "passed": False, "value": 0, "threshold": 0, "severity": severity}

    assert set_by(check("failure_fraction")) == "set by validate.max_failure_fraction"
    assert set_by(check("near_duplicates", "soft")) == (
        "set by validate.near_duplicate_bits, validate.near_duplicate_crops, validate.near_duplicate_crop_bits"
        ", validate.min_hash_quality and validate.min_field_quality"
    )
    assert set_by(check("class_counts")) == (
        "set by validate.min_class_images and validate.max_class_imbalance, fails the run by validate.fail_on"
    )
    assert set_by(check("constant_images")) == "fails the run by validate.fail_on"
    assert set_by(check("constant_images", "soft")) == set_by(check("images_sha256")) == ""
    assert line(check("images_sha256")) == "images_sha256 (measured none recorded, threshold none recorded (meta))"
    unlabelled = {**check("class_counts", "soft"), "passed": True, "value": "unlabelled", "threshold": None}
    assert line(unlabelled) == "class_counts (measured unlabelled (no classes), threshold none (no classes))"


def test_values_of_other_shapes_are_summarised_not_dumped():
    nested = {"first_key": {"a": 1}, "paths": [f"p{n}" for n in range(12)], "ok": True, "none": None}
    assert plain(nested) == "first key a 1, paths p0, p1 and 10 more, ok yes, none none"
    unknown = {"name": "some_new_check", "passed": True, "value": nested, "threshold": [0.5, 1], "severity": "hard"}
    assert measured(unknown) == plain(nested) and threshold(unknown) == "0.5, 1"
    odd = {"name": "failure_fraction", "passed": True, "value": 0.25, "threshold": 0.5, "severity": "hard"}
    assert measured(odd) == "0.25"  # a shape its words do not know: summarised, the page still renders
    assert len(plain(list(range(10_000)))) <= LIMIT and len(plain({str(n): n for n in range(10_000)})) <= LIMIT
