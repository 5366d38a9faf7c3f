"""Reruns through the real ``snakemake`` decode only what changed: a rebuilt shard copies the rows it
already had (counted from the shard jobs' logs), and the bytes equal a build from scratch."""

import hashlib
import os
import re
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest
from conftest import run_snakemake, save, shards_run, snakemake_command, snakemake_env, write_config
from PIL import Image

from img2npz.dataset import NPZDataset, ShardedNPZDataset
from img2npz.kept import kept_dir
from img2npz.tsv import read_tsv

pytestmark = pytest.mark.slow

CLASSES = 5
SHARD_LOG = re.compile(r": (\d+) images \((\d+) reused, (\d+) decoded\), (\d+) failures")


def noise(name, size=(30, 22)):
    rng = np.random.default_rng(list(name.encode()))
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), np.uint8))


def add(source, names, **kind):
    for name in names:
        save(noise(name, **kind), source / name)


def config_for(base, source, name="config.yaml", target=40, size=16, **extra):
    shards = {"target_images": target, "min_images": max(1, target // 4), "max_images": 2 * target}
    return write_config(base / name, source=str(source), image={"size": [size, size]}, shards=shards, **extra)


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def work_done(work, result):
    """(reused, decoded) summed over the shard jobs this run executed, from their logs."""
    reused = decoded = 0
    for shard in shards_run(result):
        match = SHARD_LOG.search((work / "results" / "logs" / "preprocess_shard" / f"{shard}.log").read_text())
        reused += int(match.group(2))
        decoded += int(match.group(3))
    return reused, decoded


def changes(work):
    rows = read_tsv(work / "results" / "report" / "changes.tsv", ["what", "class", "split", "count"])
    return {what: int(count) for what, _, _, count in rows if what.startswith(("images", "shards"))}


def same_as_fresh(work, config):
    fresh = work.parent / "fresh"
    shutil.rmtree(fresh, ignore_errors=True)
    run_snakemake(fresh, config)
    for output in ("dataset.npz", "failures.tsv"):
        assert sha(fresh / "results" / output) == sha(work / "results" / output), output


@pytest.fixture(scope="module")
def grown(tmp_path_factory):
    """One tree, built once, then changed step by step by the tests below (in file order)."""
    base = tmp_path_factory.mktemp("reuse")
    source = base / "src"
    add(source, [f"c{k}/img{i:03d}.png" for k in range(CLASSES) for i in range(0, 80, 2)])
    config = config_for(base, source)
    run_snakemake(base / "work", config)
    return base, source, config, base / "work"


def test_scattered_additions_decode_only_the_new_images(grown):
    _base, source, config, work = grown
    added = [f"c{k}/img{i:03d}.png" for k in range(CLASSES) for i in (11, 47)]  # between the old names
    add(source, added)
    result = run_snakemake(work, config)
    reused, decoded = work_done(work, result)
    assert decoded == len(added) and reused > 100
    assert len(shards_run(result)) > 2  # the additions touched most shards, yet only they were decoded
    for shard in shards_run(result):  # the kept rows' bytes come from the previous dataset.npz
        log = (work / "results" / "logs" / "preprocess_shard" / f"{shard}.log").read_text()
        assert re.search(r"kept rows in (\d+) kept shards \(\1 read from results/dataset.npz\)", log), log
    report = changes(work)
    assert report["images decoded"] == decoded and report["images reused"] == reused
    assert report["shards rebuilt"] == len(shards_run(result))
    same_as_fresh(work, config)


def test_replaced_deleted_and_renamed_images(grown):
    _base, source, config, work = grown
    replaced = source / "c1/img010.png"
    save(noise("another picture"), replaced)
    os.utime(replaced, ns=(1, 2 * 10**18))
    os.remove(source / "c2/img020.png")
    os.rename(source / "c3/img030.png", source / "c3/img031.png")
    result = run_snakemake(work, config)
    assert work_done(work, result)[1] == 2  # the replaced and the renamed one
    with np.load(work / "results" / "dataset.npz") as data:
        paths = set(data["paths"].tolist())
    assert "c2/img020.png" not in paths and "c3/img031.png" in paths and "c3/img030.png" not in paths
    same_as_fresh(work, config)


def test_a_new_cut_reuses_every_row_and_leaves_no_stale_shard_file(grown):
    base, source, _, work = grown
    recut = config_for(base, source, "recut.yaml", target=15)
    result = run_snakemake(work, recut)
    assert work_done(work, result)[1] == 0 and len(shards_run(result)) > 5
    shards = work / "results" / "shards"
    ids = {path.stem for path in (work / "results" / "index" / "shards").glob("*.tsv")}
    files = {path.name for path in shards.iterdir() if path.is_file()}
    assert files == {f"{shard}.{kind}" for shard in ids for kind in ("npz", "failures.tsv", "stats.json")}
    kept = sorted(path.name.split(".")[0] for path in kept_dir(shards).glob("*.npz"))
    assert kept == sorted(ids)  # one version of each shard, nothing of the old cut
    merged = NPZDataset(work / "results" / "dataset.npz")
    assert ShardedNPZDataset(shards).samples == merged.samples
    same_as_fresh(work, recut)


def test_a_corrupt_previous_shard_is_decoded_again(grown):
    base, source, _, work = grown
    config = config_for(base, source, "recut.yaml", target=15)
    shards = work / "results" / "shards"
    manifests = sorted((work / "results" / "index" / "shards").glob("*.tsv"))
    victim = manifests[len(manifests) // 2].stem
    [kept] = kept_dir(shards).glob(f"{victim}.*.npz")
    kept.unlink()
    kept.write_bytes(b"PK\x03\x04" + os.urandom(3000))  # garbage under the kept name
    first = read_tsv(manifests[len(manifests) // 2], ["path", "size", "mtime_ns", "class"])[0][0]
    add(source, [first.replace(".png", "a.png")])  # a new image right after the shard's first one
    result = run_snakemake(work, config)
    assert victim in shards_run(result)
    rows = len(read_tsv(work / "results" / "index" / "shards" / f"{victim}.tsv", ["path", "size", "mtime_ns", "class"]))
    assert work_done(work, result)[1] == rows  # the whole shard, decoded again, and no error
    same_as_fresh(work, config)


def test_a_pixel_config_change_decodes_everything(grown):
    base, source, _, work = grown
    resized = config_for(base, source, "resized.yaml", target=15, size=12)
    result = run_snakemake(work, resized)
    reused, decoded = work_done(work, result)
    with np.load(work / "results" / "dataset.npz") as data:
        assert reused == 0 and decoded == len(data["paths"])


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
    result = run_snakemake(work, config)
    reused, decoded = work_done(work, result)
    assert decoded <= len(added) and reused > 0
    same_as_fresh(work, config)
