"""Incremental reruns through the real ``snakemake``: exactly the stale shards rerun, and the bytes
of ``dataset.npz`` never depend on cores, shard sizes or the order in which the tree grew."""

import hashlib
import os
import shutil

import pytest
from conftest import jobs_run, run_snakemake, save, shards_run, solid, write_config

pytestmark = pytest.mark.slow

TARGET, LOW, HIGH = 20, 5, 80


def make_tree(root, count=300):
    for i in range(count):
        save(solid((i % 256, (3 * i) % 256, 90), (10 + i % 5, 8)), root / f"class{i % 3}" / f"img{i:04d}.png")


def manifests(workdir):
    folder = workdir / "results" / "index" / "shards"
    return {path.stem: path.read_bytes() for path in folder.glob("*.tsv")}


def changed(before, after):
    return {name for name, content in after.items() if before.get(name) != content}


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def config_for(base, source, name="config.yaml", target=TARGET, low=LOW, high=HIGH, **extra):
    shards = {"target_images": target, "min_images": low, "max_images": high}
    return write_config(base / name, source=str(source), image={"size": [8, 8]}, shards=shards, **extra)


@pytest.fixture(scope="module")
def grown(tmp_path_factory):
    """One tree, built once, then changed step by step by the tests below (in file order)."""
    base = tmp_path_factory.mktemp("incremental")
    make_tree(base / "src")
    config = config_for(base, base / "src")
    run_snakemake(base / "work", config)
    return base, base / "src", config, base / "work"


def rerun(grown):
    _base, _, config, work = grown
    before = manifests(work)
    result = run_snakemake(work, config)
    return result, changed(before, manifests(work))


def test_a_new_folder_reruns_only_new_and_neighbouring_shards(grown):
    source = grown[1]
    for i in range(45):
        save(solid((i, 0, 0), (9, 9)), source / "class1b" / f"new{i:03d}.png")
    result, stale = rerun(grown)
    assert "index_images" in jobs_run(result)
    assert set(shards_run(result)) == stale
    assert 1 <= len(stale) <= 1 + 45 // LOW
    assert len(stale) < len(manifests(grown[3])) / 2


def test_scattered_additions_rerun_only_their_shards(grown):
    source = grown[1]
    for name in ["class0/img0031x.png", "class2/img0152x.png", "class1/img0280x.png"]:
        save(solid((1, 2, 3), (9, 9)), source / name)
    result, stale = rerun(grown)
    assert set(shards_run(result)) == stale
    assert 1 <= len(stale) <= 6


def test_replaced_content_reruns_its_shard_only(grown):
    path = grown[1] / "class2" / "img0101.png"
    save(solid((250, 250, 250), (10 + 101 % 5, 8)), path)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    result, stale = rerun(grown)
    assert len(stale) == 1 and shards_run(result) == list(stale)


def test_a_deleted_image_reruns_its_shard_and_at_most_one_neighbour(grown):
    os.remove(grown[1] / "class0" / "img0150.png")
    result, stale = rerun(grown)
    assert 1 <= len(shards_run(result)) <= 2 and set(shards_run(result)) == stale


def test_nothing_changed_nothing_runs(grown):
    result, stale = rerun(grown)
    assert jobs_run(result) == [] and not stale
    assert "Nothing to be done" in result.stdout + result.stderr


def test_the_tree_is_walked_once_per_invocation_by_the_main_process_only(grown, tmp_path):
    _base, source, config, work = grown
    walks = tmp_path / "walks.log"
    save(solid((4, 4, 4), (9, 9)), source / "class0" / "img0002x.png")
    result = run_snakemake(work, config, env={"IMG2NPZ_SCAN_LOG": str(walks)})
    assert "index_images" in jobs_run(result) and shards_run(result)
    lines = walks.read_text().splitlines()
    assert len(lines) == 1 and "snakemake" in lines[0] and ".snakemake/scripts" not in lines[0]
    assert "tree listing: results/index/listing/" in (work / "results" / "logs" / "index_images.log").read_text()


def test_incremental_equals_from_scratch_whatever_cores_and_shards(grown):
    base, source, _, work = grown
    incremental = sha(work / "results" / "dataset.npz")
    scratch = config_for(base, source, "scratch.yaml", target=7, low=1, high=9)
    run_snakemake(base / "scratch", scratch, cores=1)
    assert sha(base / "scratch" / "results" / "dataset.npz") == incremental
    assert sha(base / "scratch" / "results" / "failures.tsv") == sha(work / "results" / "failures.tsv")


def test_config_changes_rerun_what_they_shape(grown):
    base, source, _config, work = grown
    dataset = sha(work / "results" / "dataset.npz")
    total = len(manifests(work))

    resized = config_for(base, source, "sharding.yaml", target=11, low=2, high=30)
    before = manifests(work)
    result = run_snakemake(work, resized)
    ran = jobs_run(result)
    assert "index_images" in ran and set(shards_run(result)) == changed(before, manifests(work))
    assert sha(work / "results" / "dataset.npz") == dataset

    threshold = config_for(
        base, source, "threshold.yaml", target=11, low=2, high=30, validate={"max_failure_fraction": 0.5}
    )
    result = run_snakemake(work, threshold)
    assert [job for job in jobs_run(result) if job != "all"] == ["validate_report"]

    pixels = write_config(
        base / "pixels.yaml",
        source=str(source),
        image={"size": [6, 6]},
        shards={"target_images": 11, "min_images": 2, "max_images": 30},
    )
    result = run_snakemake(work, pixels)
    assert "index_images" not in jobs_run(result)
    assert len(shards_run(result)) == len(manifests(work)) and total > 1
    assert sha(work / "results" / "dataset.npz") != dataset
    shutil.rmtree(base / "scratch", ignore_errors=True)
