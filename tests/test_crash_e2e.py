"""Kill the real ``snakemake`` at random moments, and at chosen ones of a rerun and of a compaction:
no partial file ever sits under a final name, and the documented recovery (``snakemake --unlock``
after a hard kill, then the same command, with ``rerun-incomplete`` from profiles/default) ends with
the dataset of an uninterrupted build from scratch (the same bytes in the ``file`` layout, the same
rows in the ``shards`` layout)."""

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import time
import zipfile

import numpy as np
import pytest
from conftest import run_snakemake, save, snakemake_command, snakemake_env, write_config
from PIL import Image

from img2npz.contract import FAILURE_HEADER, MANIFEST_HEADER, ShardStats
from img2npz.dataset import NPZDataset
from img2npz.tsv import read_tsv

pytestmark = pytest.mark.slow

SHARDS = {"target_images": 12, "min_images": 4, "max_images": 30}
COMPACTING = {**SHARDS, "compact_dropped": 0.05, "compact_small": 0}  # any dropped row or small shard


def picture(seed):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (120, 160, 3), dtype=np.uint8))


def make_tree(root):
    for i in range(160):
        save(picture([7, i]), root / f"c{i % 4}" / f"{i:03d}.jpg", quality=85)
    (root / "c0" / "broken.jpg").write_bytes(b"not a jpeg")


def change_tree(root):
    """What a rerun meets: new images between the old ones, two deleted, one replaced."""
    for i in range(3, 160, 13):
        save(picture([8, i]), root / f"c{i % 4}" / f"{i:03d}a.jpg", quality=85)
    (root / "c1" / "021.jpg").unlink()
    (root / "c2" / "098.jpg").unlink()
    save(picture(9), root / "c3" / "063.jpg", quality=85)


def delete_some(root):
    """What a compaction follows: images deleted from four shards, nothing added."""
    for name in ("c0/000.jpg", "c1/045.jpg", "c2/090.jpg", "c3/139.jpg"):
        (root / name).unlink()


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def config_for(base, source, name, layout="file", shards=SHARDS):
    return write_config(base / name, source=str(source), layout=layout, image={"size": [32, 32]}, shards=shards)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("crash")
    make_tree(base / "src")
    config = config_for(base, base / "src", "config.yaml")
    run_snakemake(base / "reference", config)
    reference = {name: sha(base / "reference" / "results" / name) for name in ("dataset.npz", "failures.tsv")}
    return base, config, reference


@pytest.fixture(scope="module")
def fresh(setup):
    """The results folder of a build from scratch of the tree as ``change`` leaves it (one per change)."""
    base = setup[0]
    built = {}

    def of(change):
        if change not in built:
            source = base / f"fresh-{change.__name__}-src"
            shutil.copytree(base / "src", source)
            change(source)
            work = base / f"fresh-{change.__name__}"
            run_snakemake(work, config_for(base, source, f"fresh-{change.__name__}.yaml"))
            built[change] = work / "results"
        return built[change]

    return of


def _default_sigint() -> None:
    """In the child: SIGINT as a terminal gives it. A suite started in the background by a shell
    without job control inherits SIGINT ignored, and so would Snakemake and its jobs (Ctrl-C then
    does nothing: the run finished with exit 0 after one)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(workdir, config):
    log = open(workdir.parent / f"{workdir.name}.log", "w")  # noqa: SIM115 - closed by the caller via proc
    proc = subprocess.Popen(
        snakemake_command(workdir, config),
        stdout=log,
        stderr=subprocess.STDOUT,
        env=snakemake_env(),
        start_new_session=True,
        preexec_fn=_default_sigint,
    )
    proc.log = log
    return proc


def wait_until(proc, condition, limit=180.0):
    """Poll for an observable state of the run (not a fixed delay); False if the run ended first."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if condition():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.005)
    raise AssertionError("the run neither reached the state nor ended")


def assert_no_partial_outputs(results):
    """Every file under a final name is whole: a zip that tests clean, a row per manifest line."""
    for npz in [*results.glob("shards/*.npz"), *results.glob("dataset.npz"), *results.glob("dataset/shards/*.npz")]:
        with zipfile.ZipFile(npz) as archive:
            assert archive.testzip() is None, npz
        with np.load(npz) as data:
            rows = json.loads(str(data["meta"]))["rows"] if npz.parent.name == "shards" else len(data["paths"])
            assert len(data["paths"]) == len(data["images"]) == rows, npz
    if (results / "dataset" / "index.npz").exists():
        with np.load(results / "dataset" / "index.npz") as table:
            assert len(table["paths"]) == len(table["shard"]) == len(table["row"])
    for tsv in [*results.glob("shards/*.failures.tsv"), *results.glob("failures.tsv")]:
        read_tsv(tsv, FAILURE_HEADER)


def recover(workdir, config):
    run_snakemake(workdir, config, "--unlock")
    result = run_snakemake(workdir, config)
    assert "IncompleteFilesException" not in result.stdout + result.stderr
    return result


def recover_and_compare(workdir, config, reference):
    recover(workdir, config)
    for name, digest in reference.items():
        assert sha(workdir / "results" / name) == digest, name


def assert_same_as_fresh(results, fresh):
    """The file layout: the bytes of the build from scratch; the shards layout: its rows."""
    assert sha(results / "failures.tsv") == sha(fresh / "failures.tsv")
    if (results / "dataset.npz").exists():
        assert sha(results / "dataset.npz") == sha(fresh / "dataset.npz")
        return
    sharded, merged = NPZDataset(results / "dataset"), NPZDataset(fresh / "dataset.npz")
    assert sharded.samples == merged.samples and sharded.meta["images_sha256"] == merged.meta["images_sha256"]
    assert all((sharded[i][0] == merged[i][0]).all() for i in range(len(merged)))


def manifest_ids(results):
    return {path.stem for path in (results / "index" / "shards").glob("*.tsv")}


def shard_files(results):
    """Shard id -> (inode, mtime) of its npz."""
    return {path.stem: (path.stat().st_ino, path.stat().st_mtime_ns) for path in (results / "shards").glob("*.npz")}


def shards_done(workdir, count):
    return lambda: len(list((workdir / "results" / "shards").glob("*.npz"))) >= count


def merge_started(workdir):
    return lambda: any((workdir / "results").glob(".dataset.npz.*")) or (workdir / "results" / "dataset.npz").exists()


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_kill_9_at_random_moments_then_recover(setup, seed):
    base, config, reference = setup
    rng = random.Random(seed)
    workdir = base / f"kill{seed}"
    moments = [
        lambda: (workdir / "results" / "index").exists(),
        shards_done(workdir, rng.randint(1, 12)),
        merge_started(workdir),
    ]
    kills = 0
    for moment in rng.sample(moments, k=2):
        proc = start(workdir, config)
        reached = wait_until(proc, moment)
        if reached:
            os.killpg(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        proc.log.close()
        assert_no_partial_outputs(workdir / "results")
    assert kills >= 1
    recover_and_compare(workdir, config, reference)


@pytest.mark.parametrize(("sig", "group"), [(signal.SIGTERM, False), (signal.SIGINT, True)], ids=["sigterm", "ctrl-c"])
def test_sigterm_or_ctrl_c_stops_cleanly_and_a_plain_rerun_continues(setup, sig, group):
    base, config, reference = setup
    workdir = base / f"stop-{sig.name}"
    proc = start(workdir, config)
    assert wait_until(proc, shards_done(workdir, 2))
    if group:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    assert proc.wait(timeout=120) != 0
    proc.log.close()
    said = (workdir.parent / f"{workdir.name}.log").read_text()
    assert said.rstrip().splitlines()[-1].startswith("img2npz: the run was stopped (Ctrl-C or SIGTERM)")
    assert "run the same command again to resume" in said
    assert not any(noise in said for noise in ("Error in rule", "CalledProcessError", "Traceback")), said
    assert not (workdir / ".snakemake" / "locks").exists() or not any((workdir / ".snakemake" / "locks").iterdir())
    assert_no_partial_outputs(workdir / "results")
    result = run_snakemake(workdir, config)
    for name, digest in reference.items():
        assert sha(workdir / "results" / name) == digest, name
    assert "preprocess_shard" in result.stdout + result.stderr


def moment(workdir, when):
    """A condition met once the run is that far (against the state before it starts): the index
    job has written its summary, a new shard job has opened its log, or the merge has begun."""
    results = workdir / "results"
    summary, merge_log = results / "index" / "summary.json", results / "logs" / "merge_npz.log"
    jobs = results / "logs" / "preprocess_shard"
    summary_then, merge_then, logs_then = summary.stat().st_mtime_ns, merge_log.stat().st_mtime_ns, set(jobs.iterdir())

    def changed(path, then):
        return not path.exists() or path.stat().st_mtime_ns != then

    return {
        "index": lambda: changed(summary, summary_then),
        "shard": lambda: bool(set(jobs.iterdir()) - logs_then),
        "merge": lambda: changed(merge_log, merge_then),
    }[when]


def kill_at(workdir, config, when):
    proc = start(workdir, config)
    reached = wait_until(proc, moment(workdir, when))
    if reached:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.log.close()
    assert reached, (workdir.parent / f"{workdir.name}.log").read_text()[-3000:]
    assert_no_partial_outputs(workdir / "results")


def built(base, name, layout="file", shards=SHARDS):
    """A tree of its own, built once (an old history for a rerun to meet), and its config."""
    source = base / f"{name}-src"
    shutil.copytree(base / "src", source)
    config = config_for(base, source, f"{name}.yaml", layout, shards)
    run_snakemake(base / name, config)
    return base / name, source, config


@pytest.mark.parametrize("when", ["index", "shard", "merge"])
def test_kill_9_during_a_rerun_then_recover(setup, fresh, when):
    """Killed while a rerun adds shards for new and changed images; the recovery writes no old shard
    and ends with the bytes of a build from scratch."""
    workdir, source, config = built(setup[0], f"rerun-{when}")
    old = shard_files(workdir / "results")
    change_tree(source)
    kill_at(workdir, config, when)
    recover(workdir, config)
    results = workdir / "results"
    now = shard_files(results)
    assert {shard: now[shard] for shard in old} == old  # every old shard file as it was: same inode, same mtime
    assert set(now) - set(old) and set(now) == manifest_ids(results)
    assert_same_as_fresh(results, fresh(change_tree))


@pytest.mark.parametrize(
    ("layout", "when"), [("file", "shard"), ("file", "index"), ("shards", "shard")], ids=lambda value: value
)
def test_kill_9_during_a_compaction_then_recover(setup, fresh, layout, when):
    """Killed while a compaction copies rows (or just before it starts): the recovery still copies
    every row (the shards it copies from are pruned only by the merge), decodes nothing, leaves no
    file of a rewritten shard, and ends with the dataset of a build from scratch."""
    workdir, source, config = built(setup[0], f"compaction-{layout}-{when}", layout, COMPACTING)
    old = set(shard_files(workdir / "results"))
    delete_some(source)
    kill_at(workdir, config, when)
    recover(workdir, config)
    results = workdir / "results"
    new = manifest_ids(results) - old
    lines = [line for shard in new for line in read_tsv(results / "index" / "shards" / f"{shard}.tsv", MANIFEST_HEADER)]
    stats = [ShardStats.load(results / "shards" / f"{shard}.stats.json") for shard in new]
    assert lines and all(origin for *_, origin in lines)  # every line of the new shards names a row to copy
    assert sum(stat.copied for stat in stats) == len(lines) and sum(stat.decoded for stat in stats) == 0
    assert set(shard_files(results)) == manifest_ids(results) and len(old - manifest_ids(results)) == 4
    if layout == "shards":
        assert {path.stem for path in (results / "dataset" / "shards").iterdir()} == manifest_ids(results)
    assert_same_as_fresh(results, fresh(delete_some))
