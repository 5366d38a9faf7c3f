"""Reruns through the real ``snakemake`` cost what changed: exactly the shards whose manifest changed
are rebuilt, a rebuilt shard decodes only its new and changed images (counted from the shard jobs'
logs) and copies the rest, and ``dataset.npz`` is byte for byte a build from scratch, whatever the
cores, the shard sizes or the order in which the tree grew.

One tree is built once, then changed step by step by the tests below, in file order."""

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest
from conftest import jobs_run, run_snakemake, save, shards_run, snakemake_command, snakemake_env, write_config
from PIL import Image

from img2npz.contract import CHANGES_HEADER, MANIFEST_HEADER
from img2npz.dataset import NPZDataset, ShardedNPZDataset
from img2npz.kept import kept_dir
from img2npz.tsv import read_tsv

pytestmark = pytest.mark.slow

CLASSES = 5
TARGET = 20
SHARD_LOG = re.compile(r": (\d+) images \((\d+) reused, (\d+) decoded\), (\d+) failures")


def noise(name, size=(30, 22)):
    rng = np.random.default_rng(list(name.encode()))
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), np.uint8))


def add(source, names, **kind):
    for name in names:
        save(noise(name, **kind), source / name)


def config_for(base, source, name="config.yaml", target=TARGET, size=16, **extra):
    shards = {"target_images": target, "min_images": max(1, target // 4), "max_images": 4 * target}
    return write_config(base / name, source=str(source), image={"size": [size, size]}, shards=shards, **extra)


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifests(work):
    return {path.stem: path.read_bytes() for path in (work / "results" / "index" / "shards").glob("*.tsv")}


class Rerun:
    """One run of the workflow: its result, the shards whose manifest it changed, and the rows its
    shard jobs reused and decoded (from their logs)."""

    def __init__(self, work, config, **options):
        before = manifests(work)
        self.result = run_snakemake(work, config, **options)
        after = manifests(work)
        self.stale = {name for name, content in after.items() if before.get(name) != content}
        self.shards = shards_run(self.result)
        self.reused = self.decoded = 0
        for shard in self.shards:
            match = SHARD_LOG.search((work / "results" / "logs" / "preprocess_shard" / f"{shard}.log").read_text())
            self.reused += int(match.group(2))
            self.decoded += int(match.group(3))


def changes(work):
    rows = read_tsv(work / "results" / "report" / "changes.tsv", CHANGES_HEADER)
    return {what: int(count) for what, _, _, count in rows if what.startswith(("images", "shards"))}


def same_as_fresh(work, config, cores=2):
    fresh = work.parent / "fresh"
    shutil.rmtree(fresh, ignore_errors=True)
    run_snakemake(fresh, config, cores=cores)
    for output in ("dataset.npz", "failures.tsv"):
        assert sha(fresh / "results" / output) == sha(work / "results" / output), output


@pytest.fixture(scope="module")
def grown(tmp_path_factory):
    base = tmp_path_factory.mktemp("rerun")
    source = base / "src"
    add(source, [f"c{k}/img{i:03d}.png" for k in range(CLASSES) for i in range(0, 80, 2)])
    config = config_for(base, source)
    run_snakemake(base / "work", config)
    return base, source, config, base / "work"


def test_nothing_changed_nothing_runs(grown):
    _base, _, config, work = grown
    idle = Rerun(work, config)
    assert jobs_run(idle.result) == [] and not idle.stale
    assert "Nothing to be done" in idle.result.stdout + idle.result.stderr


def test_a_deleted_dataset_comes_back_from_its_shards(grown):
    _base, _, config, work = grown
    results = work / "results"
    before = sha(results / "dataset.npz")
    (results / "dataset.npz").unlink()
    run = Rerun(work, config)
    assert set(jobs_run(run.result)) == {"merge_npz", "validate_report", "all"} and not run.shards
    assert sha(results / "dataset.npz") == before


def test_any_deleted_output_comes_back_with_a_plain_rerun(grown):
    _base, _, config, work = grown
    results = work / "results"
    shard = sorted((results / "shards").glob("*.npz"))[1]
    gone = [
        results / "failures.tsv",
        shard,
        shard.with_suffix(".stats.json"),
        results / "index" / "images.parquet",
        results / "index" / "shards" / f"{shard.stem}.tsv",
        results / "validation.json",
        results / "report" / "index.html",
    ]
    before = {path: sha(path) for path in gone if path.suffix not in (".json", ".html")}
    dataset = sha(results / "dataset.npz")
    for path in gone:
        path.unlink()
    run = Rerun(work, config)
    assert run.shards == [shard.stem] and run.decoded == 0  # its rows copied from the kept shard
    assert [path for path in gone if not path.exists()] == []
    assert {path: sha(path) for path in before} == before and sha(results / "dataset.npz") == dataset
    assert json.loads((results / "validation.json").read_text())["passed"]
    assert "Nothing to be done" in run_snakemake(work, config).stderr


def test_scattered_additions_rebuild_their_shards_and_decode_only_the_new_images(grown):
    _base, source, config, work = grown
    added = [f"c{k}/img{i:03d}.png" for k in range(CLASSES) for i in (11, 47)]  # between the old names
    add(source, added)
    run = Rerun(work, config)
    assert "index_images" in jobs_run(run.result) and set(run.shards) == run.stale
    assert len(run.shards) > 2  # the additions touched most shards, yet only they were decoded
    assert run.decoded == len(added) and run.reused > 100
    for shard in run.shards:  # the kept rows' bytes come from the previous dataset.npz
        log = (work / "results" / "logs" / "preprocess_shard" / f"{shard}.log").read_text()
        assert re.search(r"kept rows in (\d+) kept shards \(\1 read from results/dataset.npz\)", log), log
    report = changes(work)
    assert report["images decoded"] == run.decoded and report["images reused"] == run.reused
    assert report["shards rebuilt"] == len(run.shards)
    same_as_fresh(work, config)


def test_a_new_folder_rebuilds_only_its_shards_and_a_neighbour(grown):
    _base, source, config, work = grown
    add(source, [f"c1b/new{i:03d}.png" for i in range(45)])
    run = Rerun(work, config)
    assert set(run.shards) == run.stale and 1 <= len(run.stale) <= 1 + 45 // (TARGET // 4)
    assert len(run.stale) < len(manifests(work)) / 2 and run.decoded == 45


def test_replaced_deleted_and_renamed_images(grown):
    _base, source, config, work = grown
    replaced = source / "c1/img010.png"
    save(noise("another picture"), replaced)
    os.utime(replaced, ns=(1, 2 * 10**18))
    os.remove(source / "c2/img020.png")
    os.rename(source / "c3/img030.png", source / "c3/img031.png")
    run = Rerun(work, config)
    assert set(run.shards) == run.stale and len(run.stale) <= 5
    assert run.decoded == 2  # the replaced and the renamed one
    with np.load(work / "results" / "dataset.npz") as data:
        paths = set(data["paths"].tolist())
    assert "c2/img020.png" not in paths and "c3/img031.png" in paths and "c3/img030.png" not in paths
    same_as_fresh(work, config)


def test_the_tree_is_walked_once_per_invocation_by_the_main_process_only(grown, tmp_path):
    _base, source, config, work = grown
    walks = tmp_path / "walks.log"
    add(source, ["c0/img002x.png"])
    run = Rerun(work, config, env={"IMG2NPZ_SCAN_LOG": str(walks)})
    assert "index_images" in jobs_run(run.result) and run.shards
    lines = walks.read_text().splitlines()
    assert len(lines) == 1 and "snakemake" in lines[0] and ".snakemake/scripts" not in lines[0]
    assert "tree listing: results/index/listing/" in (work / "results" / "logs" / "index_images.log").read_text()


def test_a_new_cut_reuses_every_row_and_leaves_no_stale_shard_file(grown):
    base, source, _, work = grown
    dataset = sha(work / "results" / "dataset.npz")
    recut = config_for(base, source, "recut.yaml", target=15)
    run = Rerun(work, recut)
    assert "index_images" in jobs_run(run.result) and set(run.shards) == run.stale and len(run.shards) > 5
    assert run.decoded == 0 and sha(work / "results" / "dataset.npz") == dataset
    shards = work / "results" / "shards"
    ids = set(manifests(work))
    files = {path.name for path in shards.iterdir() if path.is_file()}
    assert files == {f"{shard}.{kind}" for shard in ids for kind in ("npz", "failures.tsv", "stats.json")}
    kept = sorted(path.name.split(".")[0] for path in kept_dir(shards).glob("*.npz"))
    assert kept == sorted(ids)  # one version of each shard, nothing of the old cut
    assert ShardedNPZDataset(shards).samples == NPZDataset(work / "results" / "dataset.npz").samples


def test_a_corrupt_previous_shard_is_decoded_again(grown):
    base, source, _, work = grown
    config = config_for(base, source, "recut.yaml", target=15)
    shards = work / "results" / "shards"
    listed = sorted((work / "results" / "index" / "shards").glob("*.tsv"))
    victim = listed[len(listed) // 2].stem
    [kept] = kept_dir(shards).glob(f"{victim}.*.npz")
    kept.unlink()
    kept.write_bytes(b"PK\x03\x04" + os.urandom(3000))  # garbage under the kept name
    first = read_tsv(listed[len(listed) // 2], MANIFEST_HEADER)[0][0]
    add(source, [first.replace(".png", "a.png")])  # a new image right after the shard's first one
    run = Rerun(work, config)
    assert victim in run.shards
    rows = len(read_tsv(work / "results" / "index" / "shards" / f"{victim}.tsv", MANIFEST_HEADER))
    assert run.decoded == rows  # the whole shard, decoded again, and no error
    same_as_fresh(work, config)


def test_a_validate_change_reruns_only_the_validation(grown):
    base, source, _, work = grown
    dataset = sha(work / "results" / "dataset.npz")
    threshold = config_for(base, source, "recut.yaml", target=15, validate={"max_failure_fraction": 0.5})
    run = Rerun(work, threshold)
    assert [job for job in jobs_run(run.result) if job != "all"] == ["validate_report"]
    assert sha(work / "results" / "dataset.npz") == dataset


def test_a_pixel_config_change_decodes_everything(grown):
    base, source, _, work = grown
    dataset = sha(work / "results" / "dataset.npz")
    resized = config_for(base, source, "resized.yaml", target=15, size=12)
    run = Rerun(work, resized)
    assert "index_images" not in jobs_run(run.result) and len(run.shards) == len(manifests(work))
    with np.load(work / "results" / "dataset.npz") as data:
        assert run.reused == 0 and run.decoded == len(data["paths"])
    assert sha(work / "results" / "dataset.npz") != dataset


def test_kill_9_inside_a_reusing_shard_job_then_recover(grown):
    """The kill lands while a rebuilt shard is being written (a large new PNG takes a while to
    decode there); the documented recovery ends with the bytes of a build from scratch, and only
    the images that were never stored are decoded."""
    base, source, _, work = grown
    config = config_for(base, source, "resized.yaml", target=15, size=12)
    added = [f"c{k}/img{i:03d}.png" for k in range(CLASSES) for i in (23, 61)]
    add(source, added, size=(1800, 1500))
    shards = work / "results" / "shards"
    with open(base / "killed.log", "w") as log:
        proc = subprocess.Popen(
            snakemake_command(work, config), stdout=log, stderr=log, env=snakemake_env(), start_new_session=True
        )
        while not any(shards.glob(".*.npz.*.tmp")):  # poll until a shard job is writing its npz
            assert proc.poll() is None, (base / "killed.log").read_text()[-3000:]
            time.sleep(0.002)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    run_snakemake(work, config, "--unlock")
    run = Rerun(work, config)
    assert run.decoded <= len(added) and run.reused > 0
    same_as_fresh(work, config)


def test_the_grown_dataset_equals_one_built_at_once_with_other_shards_and_cores(grown):
    base, source, _, work = grown
    other = config_for(base, source, "other.yaml", target=7, size=12)
    same_as_fresh(work, other, cores=1)


def test_a_shards_only_build_reads_as_the_merged_rows_and_leaves_no_stale_shard(tmp_path):
    """`snakemake shards` stops before the merge (ShardedNPZDataset reads the shards); after a
    folder goes, its shards go too, and the rows equal those a merge of the same tree holds."""
    source = tmp_path / "src"
    add(source, [f"c{k}/{n:03d}.png" for k in range(CLASSES) for n in range(12)])
    config = config_for(tmp_path, source)
    shards_work, merged_work = tmp_path / "shards-only", tmp_path / "merged"
    run_snakemake(shards_work, config, "shards")
    results = shards_work / "results"
    assert not (results / "dataset.npz").exists() and (results / "shard_table.tsv").exists()
    stale = results / "shards" / "0123456789abcdef.npz"  # a shard of a tree that is gone
    shutil.copy(next((results / "shards").glob("*.npz")), stale)
    shutil.rmtree(source / "c0")
    run_snakemake(shards_work, config, "shards")
    left = {path.stem for path in (results / "shards").glob("*.npz")}
    assert not stale.exists() and left == set(manifests(shards_work)), "only the index's shards are left"
    run_snakemake(merged_work, config)
    shards, merged = ShardedNPZDataset(results / "shards"), NPZDataset(merged_work / "results" / "dataset.npz")
    assert shards.samples == merged.samples and len(shards) == (CLASSES - 1) * 12
    assert all((shards[i][0] == merged[i][0]).all() for i in range(0, len(shards), 7))
