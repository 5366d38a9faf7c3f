"""checks: each check fails on what it exists to find, and warns or fails by its severity."""

import json
import re
from dataclasses import fields

import numpy as np
import pytest
from conftest import DEFAULT_PIXEL, REPO, build_dataset, make_tree, run_validation, save, thresholds
from PIL import Image

from img2npz.checks import CHECKS, GATES, SOFT_CHECKS, THRESHOLD_KEYS, Thresholds, run_checks
from img2npz.config import load_schema
from img2npz.facts import Facts
from img2npz.npzformat import write_npz
from img2npz.splits import assign
from img2npz.validate import ValidationFailed

FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}


def test_a_duplicate_in_two_splits_fails_validation(tmp_path):
    names = [f"a/{i:03d}.png" for i in range(200)]
    split = assign(names, FRACTIONS).tolist()
    first = names[split.index(0)]
    second = names[split.index(1)]  # a train path and a val path
    for i in range(12):
        save(noise(100 + i), tmp_path / "src" / "a" / f"x{i:02d}.png")
    save(noise(7), tmp_path / "src" / first)
    save(noise(7), tmp_path / "src" / second)  # the same pixels under a val name
    out, fail, _, _ = build_dataset(tmp_path, 6, "d", splits=FRACTIONS)
    with pytest.raises(ValidationFailed, match="split_duplicates") as caught:
        run_validation(tmp_path, out, fail)
    assert first in str(caught.value) and second in str(caught.value)


def noise(seed, size=(12, 10)):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def test_duplicates_blank_images_and_class_balance_are_reported_as_warnings(tmp_path):
    src = tmp_path / "src"
    for i in range(12):
        save(noise(i), src / "many" / f"{i:02d}.png")
    save(noise(0), src / "many" / "zz_copy_of_00.png")  # same pixels as many/00.png
    save(Image.new("RGB", (12, 10), (40, 90, 160)), src / "few" / "blank.png")
    (src / "gone").mkdir()
    (src / "gone" / "broken.png").write_bytes(b"not an image")  # a class whose only file fails
    out, fail, _, _ = build_dataset(tmp_path, 4, "d")
    checks = {check.name: check for check in run_validation(tmp_path, out, fail, max_failure_fraction=0.5)}
    assert checks["duplicate_images"].value["examples"] == [["many/00.png", "many/zz_copy_of_00.png"]]
    assert checks["constant_images"].value == {"images": 1, "examples": ["few/blank.png"]}
    assert checks["class_counts"].value["empty"] == ["gone"] and checks["class_counts"].value["imbalance"] is None
    assert {name for name, check in checks.items() if not check.passed} == {
        "duplicate_images",
        "near_duplicates",  # an exact duplicate is a near one too
        "constant_images",
        "class_counts",
    }
    assert checks["near_duplicates"].value["examples"] == [["many/00.png", "many/zz_copy_of_00.png"]]
    document = json.loads((tmp_path / "v.json").read_text())
    assert document["passed"] is True
    assert set(document["warnings"]) == {"duplicate_images", "near_duplicates", "constant_images", "class_counts"}
    page = (tmp_path / "r.html").read_text()
    assert "many/zz_copy_of_00.png" in page and "few/blank.png" in page and "gone/broken.png" in page
    with pytest.raises(ValidationFailed, match="duplicate_images") as caught:
        run_validation(tmp_path, out, fail, max_failure_fraction=0.5, fail_on=("duplicate_images",))
    assert "constant_images" not in str(caught.value) and "log.html" in str(caught.value)
    assert "Validation failed: duplicate_images" in (tmp_path / "log.html").read_text()


def test_class_imbalance_threshold(tmp_path):
    src = tmp_path / "src"
    for i in range(6):
        save(noise(i), src / "big" / f"{i}.png")
    for i in range(2):
        save(noise(100 + i), src / "small" / f"{i}.png")
    out, fail, _, _ = build_dataset(tmp_path, 4, "d")
    checks = {c.name: c for c in run_validation(tmp_path, out, fail, max_class_imbalance=3)}
    assert checks["class_counts"].passed and checks["class_counts"].value["imbalance"] == 3.0
    checks = {c.name: c for c in run_validation(tmp_path, out, fail, max_class_imbalance=2.5)}
    assert not checks["class_counts"].passed
    checks = {c.name: c for c in run_validation(tmp_path, out, fail, min_class_images=3)}
    assert checks["class_counts"].value["below_min"] == ["small"]


def test_tampered_images_fail_the_checksum(tmp_path):
    make_tree(tmp_path / "src")
    out, fail, _, _ = build_dataset(tmp_path, 4, "d")
    with np.load(out) as data:
        arrays = {key: data[key] for key in data}
    arrays["images"][0, 0, 0, 0] ^= 1
    with open(out, "wb") as handle:
        write_npz(handle, arrays)
    with pytest.raises(ValidationFailed) as caught:
        run_validation(tmp_path, out, fail)
    assert "images_sha256" in str(caught.value) and "failure_fraction" not in str(caught.value)


def checks_of(tmp_path, out, fail, **limits):
    facts = Facts(str(out), str(fail), str(out.parent / "images.parquet"), DEFAULT_PIXEL, "folder")
    return run_checks(facts, thresholds(**limits))


def test_each_check_is_named_after_its_function_and_listed_in_the_readme(tmp_path):
    for i in range(30):
        save(noise(i), tmp_path / "src" / ("a" if i % 2 else "b") / f"{i:02d}.png")
    out, fail, _, _ = build_dataset(tmp_path, 6, "d", splits=FRACTIONS)
    found, readable = checks_of(tmp_path, out, fail)
    functions = [check.__name__ for check in GATES + CHECKS]
    assert readable and [check.name for check in found] == functions  # every check applies with splits
    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("| check | kind |") :]
    table = table[: table.index("\n\n")]
    listed = [name for row in table.splitlines()[2:] for name in re.findall(r"`(\w+)`", row.split("|")[1])]
    assert sorted(listed) == sorted(functions)
    kinds = {
        name: row.split("|")[2].strip()
        for row in table.splitlines()[2:]
        for name in re.findall(r"`(\w+)`", row.split("|")[1])
    }
    assert {name for name, kind in kinds.items() if kind == "soft"} == set(SOFT_CHECKS)


def test_a_file_without_a_member_is_checked_no_further(tmp_path):
    make_tree(tmp_path / "src")
    out, fail, _, _ = build_dataset(tmp_path, 4, "d")
    with np.load(out) as data:
        arrays = {key: data[key] for key in data if key != "crc32s"}
    with open(out, "wb") as handle:
        write_npz(handle, arrays)
    found, readable = checks_of(tmp_path, out, fail)
    assert not readable and [(c.name, c.passed) for c in found] == [("members", False)]
    assert found[0].value == ["crc32s"]


def test_a_meta_without_its_digest_fails_the_checks_that_need_it(tmp_path):
    make_tree(tmp_path / "src")
    out, fail, _, _ = build_dataset(tmp_path, 4, "d")
    with np.load(out) as data:
        arrays = {key: data[key] for key in data}
    meta = json.loads(str(arrays["meta"]))
    del meta["images_sha256"]
    arrays["meta"] = np.array(json.dumps(meta))
    with open(out, "wb") as handle:
        write_npz(handle, arrays)
    failed = {c.name: c for c in checks_of(tmp_path, out, fail)[0] if not c.passed and c.severity == "hard"}
    assert set(failed) == {"images_sha256"} and failed["images_sha256"].threshold is None


def test_soft_checks_warn_unless_named_in_fail_on(tmp_path):
    make_tree(tmp_path / "src")
    save(Image.new("RGB", (12, 10), (40, 90, 160)), tmp_path / "src" / "blue" / "zz_blank.png")
    out, fail, _, _ = build_dataset(tmp_path, 4, "d")
    severity = {c.name: c.severity for c in checks_of(tmp_path, out, fail)[0]}
    assert severity["constant_images"] == "soft" and severity["images_sha256"] == "hard"
    failing = {c.name: c for c in checks_of(tmp_path, out, fail, fail_on=["constant_images"])[0]}
    assert failing["constant_images"].severity == "hard" and not failing["constant_images"].passed


def test_the_config_may_fail_on_exactly_the_soft_checks():
    fail_on = load_schema()["properties"]["validate"]["properties"]["fail_on"]["items"]["enum"]
    assert fail_on == list(SOFT_CHECKS)


def schema_has(key: str) -> bool:
    node = load_schema()
    for part in key.split("."):
        node = node.get("properties", {}).get(part)
        if node is None:
            return False
    return True


def test_every_configurable_threshold_names_the_config_keys_that_set_it(tmp_path):
    for i in range(30):
        save(noise(i), tmp_path / "src" / ("a" if i % 2 else "b") / f"{i:02d}.png")
    out, fail, _, _ = build_dataset(tmp_path, 6, "d", splits=FRACTIONS)
    default = {c.name: c.threshold for c in checks_of(tmp_path, out, fail)[0]}
    changed = {
        "max_failure_fraction": 0.5,
        "min_class_images": 5,
        "max_class_imbalance": 3,
        "near_duplicate_bits": 8,
        "near_duplicate_crops": False,
        "near_duplicate_crop_bits": 30,
        "min_hash_quality": 50,
        "min_field_quality": 10,
    }
    assert set(changed) == {field.name for field in fields(Thresholds)} - {"fail_on"}  # every limit is tried
    for key, value in changed.items():
        moved = {c.name for c in checks_of(tmp_path, out, fail, **{key: value})[0] if c.threshold != default[c.name]}
        assert moved and moved == {name for name, keys in THRESHOLD_KEYS.items() if f"validate.{key}" in keys}
    assert default["split_fractions"]["fractions"] == FRACTIONS and THRESHOLD_KEYS["split_fractions"] == ("splits",)
    assert set(THRESHOLD_KEYS) <= {check.__name__ for check in CHECKS}
    assert all(schema_has(key) for keys in THRESHOLD_KEYS.values() for key in keys)
    assert not schema_has("validate.no_such_key")


def test_the_near_duplicate_search_runs_beside_the_pixel_checks_and_once(tmp_path, monkeypatch):
    """run_checks asks for the near-duplicates in a thread of their own as the checks start (the
    search needs the hashes, not the pixels); the check then takes that search's result."""
    import threading

    from img2npz import facts as facts_module

    make_tree(tmp_path / "src")
    out, fail, _, _ = build_dataset(tmp_path, 4, "d")
    searches, started = [], threading.Event()
    real = facts_module.near_duplicates_of

    def near_duplicates_of(*args, **kwargs):
        searches.append(threading.current_thread().name)
        started.set()
        return real(*args, **kwargs)

    monkeypatch.setattr(facts_module, "near_duplicates_of", near_duplicates_of)
    seen = []
    real_scan = facts_module.scan_images

    def scan_images(*args, **kwargs):  # the pixel pass, in the main thread, waits for the search to start
        seen.append(started.wait(timeout=30))
        return real_scan(*args, **kwargs)

    monkeypatch.setattr(facts_module, "scan_images", scan_images)
    facts = Facts(str(out), str(fail), str(out.parent / "images.parquet"), DEFAULT_PIXEL, "folder")
    checks, readable = run_checks(facts, thresholds())
    assert readable and seen == [True] and len(searches) == 1 and searches[0].startswith("near-duplicates")
    assert {check.name for check in checks} >= {"near_duplicates", "images_sha256"}
