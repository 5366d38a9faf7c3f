"""End-to-end: planted near-duplicates across splits fail the run by name, and are all listed."""

import json

import numpy as np
import pytest
from conftest import run_snakemake, write_config
from scenes import VARIANTS, crop, scene

from img2npz.dataset import NPZDataset
from img2npz.tsv import read_tsv

pytestmark = pytest.mark.slow

PLANTED = ("jpeg60", "half", "contrast-15")
CROPS = (("crop8_side", (0.92, 1.0, 0.0, 0.0)), ("crop10_corner", (0.9, 0.9, 1.0, 1.0)))  # scenes.crop's


def test_near_duplicates_in_two_splits_fail_the_run_naming_the_pairs(tmp_path):
    source = tmp_path / "src"
    for number in range(24):
        folder = source / ("park" if number % 2 else "street")
        folder.mkdir(parents=True, exist_ok=True)
        original = scene(np.random.default_rng([5, number]), (320, 240))
        original.save(folder / f"scene{number:02d}_original.jpg", quality=90)
        if number < 8:  # eight scenes with three near-duplicates each
            for name in PLANTED:
                VARIANTS[name](original).save(folder / f"scene{number:02d}_{name}.jpg", quality=90)
    shards = {"target_images": 12, "min_images": 2, "max_images": 24}
    splits = {"train": 0.5, "val": 0.25, "test": 0.25}
    common = {"source": str(source), "image": {"size": [64, 64]}, "shards": shards, "splits": splits}

    work = tmp_path / "work"
    result = run_snakemake(work, write_config(tmp_path / "by_path.yaml", **common), check=False)
    assert result.returncode != 0 and "split_near_duplicates" in result.stdout + result.stderr
    groups = {}
    for group, path, split in read_tsv(work / "results" / "logs" / "near_duplicates.tsv", ["group", "path", "split"]):
        groups.setdefault(group, []).append((path.split("/")[1].split("_")[0], split))
    scenes = sorted(sorted({scene_id for scene_id, _ in group}) for group in groups.values())
    assert scenes == [[f"scene{n:02d}"] for n in range(8)]  # a group per planted scene, nothing else
    assert all(len(group) == 4 for group in groups.values())
    page = (work / "results" / "logs" / "validate_report.html").read_text()
    assert "split_near_duplicates" in page and 'id="picture-near_duplicates"' in page  # the pairs, side by side

    # the same tree with each scene's images kept together passes, and still reports the groups
    grouped = write_config(tmp_path / "grouped.yaml", **common, group_by=r"^[^/]+/(scene\d+)_")
    run_snakemake(work, grouped)
    validation = json.loads((work / "results" / "validation.json").read_text())
    checks = {check["name"]: check for check in validation["checks"]}
    assert checks["split_near_duplicates"]["passed"] and checks["near_duplicates"]["value"]["groups"] == 8
    assert validation["warnings"] == ["near_duplicates"]
    lines = read_tsv(work / "results" / "report" / "near_duplicates.tsv", ["group", "path", "split"])
    assert len(lines) == 32 and all(split for _, _, split in lines)

    # by path again, but with group_near_duplicates: the merge keeps each group in one split
    joined = write_config(tmp_path / "joined.yaml", **common, group_near_duplicates=True)
    result = run_snakemake(work, joined)
    assert "localrule merge_npz" in result.stdout + result.stderr or "rule merge_npz" in result.stdout + result.stderr
    lines = read_tsv(work / "results" / "report" / "near_duplicates.tsv", ["group", "path", "split"])
    in_splits = {}
    for group, _, split in lines:
        in_splits.setdefault(group, set()).add(split)
    assert len(in_splits) == 8 and all(len(where) == 1 for where in in_splits.values())
    merged = NPZDataset(work / "results" / "dataset.npz", split="val").samples
    run_snakemake(
        work, write_config(tmp_path / "joined-shards.yaml", **common, group_near_duplicates=True, layout="shards")
    )
    assert NPZDataset(work / "results" / "dataset", split="val").samples == merged and merged  # the other layout

    # the filters: copies after the first dropped, a small image too, each listed; the run passes
    small = source / "park" / "tiny.jpg"
    scene(np.random.default_rng(99), (40, 30)).save(small, quality=90)
    filters = {"drop_duplicates": "near", "min_width": 64}
    run_snakemake(work, write_config(tmp_path / "filtered.yaml", **common, filters=filters))
    failures = read_tsv(work / "results" / "failures.tsv", ["path", "stage", "error"])
    assert {stage for _, stage, _ in failures} == {"filter"} and len(failures) == 8 * 3 + 1
    assert any(path == "park/tiny.jpg" and "filters.min_width" in error for path, _, error in failures)
    with np.load(work / "results" / "dataset.npz") as data:
        kept = [path.split("/")[1].split("_")[0] for path in data["paths"].tolist()]
    assert sorted(kept) == [f"scene{n:02d}" for n in range(24)]  # one image of each scene: its first
    validation = json.loads((work / "results" / "validation.json").read_text())
    assert validation["passed"] and validation["warnings"] == []
    merged = NPZDataset(work / "results" / "dataset.npz", split="train").samples
    run_snakemake(work, write_config(tmp_path / "filtered-shards.yaml", **common, filters=filters, layout="shards"))
    assert NPZDataset(work / "results" / "dataset", split="train").samples == merged and merged


def test_a_crop_in_another_split_than_its_photo_fails_the_run_and_grouping_joins_them(tmp_path):
    """Crops of 10% at a corner and 8% at a side, each named so that by path it lands in another
    split than its photo: the run fails naming both paths (and passes without crops searched,
    which is how it failed before); ``group_near_duplicates`` puts each crop with its photo."""
    splits = {"train": 0.5, "val": 0.5}
    source = tmp_path / "src"
    crops = []
    for number in range(20):
        original = scene(np.random.default_rng([9, number]), (360, 270))
        photo = f"photos/scene{number:02d}.jpg"
        original.save(_folder(source / photo), quality=90)
        if number < 4:
            name, keep = CROPS[number % 2]
            crops.append((photo, _other_split_name(photo, f"crops/scene{number:02d}_{name}", splits)))
            crop(original, *keep).save(_folder(source / crops[-1][1]), quality=90)
    common = {"source": str(source), "image": {"size": [64, 64]}, "splits": splits}

    work = tmp_path / "work"
    result = run_snakemake(work, write_config(tmp_path / "by_path.yaml", **common), check=False)
    said = result.stdout + result.stderr
    assert result.returncode != 0 and "split_near_duplicates (measured 4 pairs in two splits" in said
    assert any(f"{photo} (" in said and f"{cropped} (" in said for photo, cropped in crops)  # both paths named
    groups = {}
    for group, path, _ in read_tsv(work / "results" / "logs" / "near_duplicates.tsv", ["group", "path", "split"]):
        groups.setdefault(group, set()).add(path)
    assert sorted(map(sorted, groups.values())) == sorted(map(sorted, crops))  # each crop with its photo only

    no_crops = {**common, "validate": {"near_duplicate_crops": False}}
    run_snakemake(work, write_config(tmp_path / "no_crops.yaml", **no_crops))  # the row hashes miss them

    run_snakemake(work, write_config(tmp_path / "joined.yaml", **common, group_near_duplicates=True))
    with np.load(work / "results" / "dataset.npz") as data:
        split_of = dict(zip(data["paths"].tolist(), data["split"].tolist(), strict=True))
    assert all(split_of[photo] == split_of[cropped] for photo, cropped in crops)
    assert len(set(split_of.values())) == 2


def _folder(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _other_split_name(photo: str, stem: str, splits: dict) -> str:
    """``stem`` with the first suffix that puts it in another split than ``photo`` by path."""
    from img2npz.splits import key_values, split_of

    for suffix in range(100):
        name = f"{stem}_{suffix}.jpg"
        if len(set(split_of(key_values([photo, name]), splits).tolist())) == 2:
            return name
    raise AssertionError("no name in another split")
