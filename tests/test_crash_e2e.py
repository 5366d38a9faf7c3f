"""Kill the real ``snakemake`` at random moments: no partial file ever sits under a final name, and
the documented recovery (``snakemake --unlock`` after a hard kill, then the same command, with
``rerun-incomplete`` from profiles/default) ends with the same bytes as an uninterrupted run."""

import hashlib
import json
import os
import random
import signal
import subprocess
import time
import zipfile

import numpy as np
import pytest
from conftest import run_snakemake, save, snakemake_command, snakemake_env, write_config
from PIL import Image

from img2npz.contract import FAILURE_HEADER
from img2npz.tsv import read_tsv

pytestmark = pytest.mark.slow


def make_tree(root):
    rng = np.random.default_rng(7)
    for i in range(160):
        pixels = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
        save(Image.fromarray(pixels), root / f"c{i % 4}" / f"{i:03d}.jpg", quality=85)
    (root / "c0" / "broken.jpg").write_bytes(b"not a jpeg")


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("crash")
    make_tree(base / "src")
    config = write_config(
        base / "config.yaml",
        source=str(base / "src"),
        image={"size": [32, 32]},
        shards={"target_images": 12, "min_images": 4, "max_images": 30},
    )
    run_snakemake(base / "reference", config)
    reference = {name: sha(base / "reference" / "results" / name) for name in ("dataset.npz", "failures.tsv")}
    return base, config, reference


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
    for npz in [*results.glob("shards/*.npz"), *results.glob("dataset.npz")]:
        with zipfile.ZipFile(npz) as archive:
            assert archive.testzip() is None, npz
        with np.load(npz) as data:
            padding = json.loads(str(data["meta"]))["failures"] if npz.parent.name == "shards" else 0
            assert len(data["paths"]) + padding == len(data["images"]), npz
    for tsv in results.glob("shards/*.failures.tsv"):
        read_tsv(tsv, FAILURE_HEADER)
    if (results / "failures.tsv").exists():
        read_tsv(results / "failures.tsv", FAILURE_HEADER)


def recover_and_compare(workdir, config, reference):
    run_snakemake(workdir, config, "--unlock")
    result = run_snakemake(workdir, config)
    assert "IncompleteFilesException" not in result.stdout + result.stderr
    for name, digest in reference.items():
        assert sha(workdir / "results" / name) == digest, name


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
