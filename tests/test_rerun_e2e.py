"""Reruns through the real ``snakemake`` cost what changed: shards are written once, so a rerun
writes new shards for the new and changed images only and decodes exactly those (counted from the
shard jobs' logs), rows of deleted and changed images are dropped where they are, a compaction
copies rows and decodes nothing, and ``dataset.npz`` is byte for byte a build from scratch, whatever
the cores, the shard sizes or the history of the tree; the ``shards`` layout gives the same rows.
No image's split ever moves.

One tree is built once, then changed step by step by the tests below, in file order."""

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from conftest import jobs_run, run_snakemake, save, shards_run, snakemake_command, snakemake_env, write_config
from PIL import Image

from img2npz.contract import CHANGES_HEADER, MANIFEST_HEADER
from img2npz.dataset import NPZDataset
from img2npz.tsv import read_tsv

pytestmark = pytest.mark.slow

CLASSES = 5
TARGET = 20
SPLITS = {"train": 0.6, "val": 0.2, "test": 0.2}
COMPACTING = {"compact_dropped": 0.01, "compact_small": 0}  # any dropped row, any small shard
SHARD_LOG = re.compile(r": (\d+) images \((\d+) copied, (\d+) decoded\), (\d+) failures")


def noise(name, size=(30, 22)):
    rng = np.random.default_rng(list(name.encode()))
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), np.uint8))


def add(source, names, **kind):
    for name in names:
        save(noise(name, **kind), source / name)


def config_for(base, source, name="config.yaml", target=TARGET, size=16, compaction=None, **extra):
    shards = {
        "target_images": target,
        "min_images": max(1, target // 4),
        "max_images": 4 * target,
        **(compaction or {}),
    }
    return write_config(
        base / name, source=str(source), image={"size": [size, size]}, shards=shards, splits=SPLITS, **extra
    )


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifests(work):
    return {path.stem: path.read_bytes() for path in (work / "results" / "index" / "shards").glob("*.tsv")}


def manifest_lines(work, shard):
    return read_tsv(work / "results" / "index" / "shards" / f"{shard}.tsv", MANIFEST_HEADER)


def shard_files(work):
    """Shard id -> (inode, mtime) of its npz: a file written again has others."""
    return {
        path.stem: (path.stat().st_ino, path.stat().st_mtime_ns) for path in (work / "results/shards").glob("*.npz")
    }


def dataset_splits(table):
    """Path -> split name of each row of ``dataset.npz`` or of the shards layout's ``index.npz``."""
    with np.load(table) as data:
        names = data["splits"].tolist()
        return {path: names[split] for path, split in zip(data["paths"].tolist(), data["split"].tolist(), strict=True)}


class Rerun:
    """One run of the workflow: its result, the shards whose manifests it added and removed, the
    older shard files it wrote again (none, ever), and the rows its shard jobs copied and decoded
    (from their logs)."""

    def __init__(self, work, config, **options):
        before, files = manifests(work), shard_files(work)
        self.result = run_snakemake(work, config, **options)
        after, now = manifests(work), shard_files(work)
        self.new, self.removed = set(after) - set(before), set(before) - set(after)
        self.touched = {shard for shard in files.keys() & now.keys() if files[shard] != now[shard]}
        self.shards = shards_run(self.result)
        self.copied = self.decoded = 0
        for shard in self.shards:
            match = SHARD_LOG.search((work / "results" / "logs" / "preprocess_shard" / f"{shard}.log").read_text())
            self.copied += int(match.group(2))
            self.decoded += int(match.group(3))


@dataclass
class Grown:
    """The tree the tests below change, its workdir, and each run's splits (every run through :meth:`rerun`)."""

    base: Path
    source: Path
    config: Path
    work: Path
    history: list = field(default_factory=list)  # each run's path -> split

    def rerun(self, config=None, **options) -> Rerun:
        run = Rerun(self.work, config or self.config, **options)
        self.history.append(dataset_splits(self.work / "results" / "dataset.npz"))
        return run


def changes(work):
    """What changes.tsv counts, summed over classes and splits (0 where it has no row)."""
    counts = Counter()
    for what, _, _, count in read_tsv(work / "results" / "report" / "changes.tsv", CHANGES_HEADER):
        counts[what] += int(count)
    return counts


def index_log(work):
    return (work / "results" / "logs" / "index_images.log").read_text()


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
    tree = Grown(base, source, config, base / "work")
    tree.rerun()
    return tree


def test_nothing_changed_nothing_runs(grown):
    idle = grown.rerun()
    assert jobs_run(idle.result) == [] and not idle.new and not idle.removed
    assert "Nothing to be done" in idle.result.stdout + idle.result.stderr


def test_a_deleted_dataset_comes_back_from_its_shards(grown):
    results = grown.work / "results"
    before = sha(results / "dataset.npz")
    (results / "dataset.npz").unlink()
    run = grown.rerun()
    assert set(jobs_run(run.result)) == {"merge_npz", "validate_report", "all"} and not run.shards
    assert sha(results / "dataset.npz") == before


def test_any_deleted_output_comes_back_with_a_plain_rerun(grown):
    results = grown.work / "results"
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
    dataset, ids = sha(results / "dataset.npz"), set(manifests(grown.work))
    for path in gone:
        path.unlink()
    run = grown.rerun()
    assert run.shards == [shard.stem] and set(manifests(grown.work)) == ids  # the lost manifest, as it was
    assert run.copied == 0 and run.decoded == TARGET  # nothing to copy from: the shard decoded again
    assert [path for path in gone if not path.exists()] == []
    assert {path: sha(path) for path in before} == before and sha(results / "dataset.npz") == dataset
    assert json.loads((results / "validation.json").read_text())["passed"]
    assert "Nothing to be done" in run_snakemake(grown.work, grown.config).stderr


def test_scattered_additions_write_only_new_shards_and_decode_only_the_new_images(grown):
    work = grown.work
    added = [f"c{k}/img{i:03d}.png" for k in range(CLASSES) for i in (11, 47)]  # amid every class's old rows
    add(grown.source, added)
    run = grown.rerun()
    assert "index_images" in jobs_run(run.result) and set(run.shards) == run.new and len(run.new) == 1
    assert not run.touched and not run.removed  # every old shard file kept: same inode, same mtime
    assert run.decoded == len(added) and run.copied == 0
    assert [line[0] for shard in run.new for line in manifest_lines(work, shard)] == sorted(added)
    assert "1 of them new (10 images to decode, 0 rows to copy), 0 removed" in index_log(work)
    report = changes(work)
    assert report["added"] == len(added) and report["shards written"] == 1
    assert report["images decoded"] == len(added) and report["rows copied"] == 0
    assert report["shards in total"] == len(manifests(work))
    # the merge hashed every row as it read its copy back: the validation read no pixel
    validation = (work / "results" / "logs" / "validate_report.log").read_text()
    assert "pixels: read none of" in validation and "the merge hashed every row as it read its copy back" in validation
    same_as_fresh(work, grown.config)


def test_a_new_folder_writes_only_its_own_shards(grown):
    add(grown.source, [f"c1b/new{i:03d}.png" for i in range(45)])
    run = grown.rerun()
    assert set(run.shards) == run.new and len(run.new) == round(45 / TARGET) and run.decoded == 45
    assert not run.touched and not run.removed and run.copied == 0


def test_replaced_deleted_and_renamed_images_drop_their_rows_where_they_are(grown):
    source, work = grown.source, grown.work
    replaced = source / "c1/img010.png"
    save(noise("another picture"), replaced)
    os.utime(replaced, ns=(1, 2 * 10**18))
    os.remove(source / "c2/img020.png")
    os.rename(source / "c3/img030.png", source / "c3/img031.png")
    old = {line[0]: shard for shard in manifests(work) for line in manifest_lines(work, shard)}
    run = grown.rerun()
    assert set(run.shards) == run.new and len(run.new) == 1 and not run.touched and not run.removed
    assert run.decoded == 2 and run.copied == 0  # the replaced and the renamed one
    [new] = run.new
    assert [line[0] for line in manifest_lines(work, new)] == ["c1/img010.png", "c3/img031.png"]
    with np.load(work / "results" / "dataset.npz") as data:
        paths = set(data["paths"].tolist())
    assert "c2/img020.png" not in paths and "c3/img031.png" in paths and "c3/img030.png" not in paths
    for dropped in ("c1/img010.png", "c2/img020.png", "c3/img030.png"):  # their rows stay in their shards
        with np.load(work / "results" / "shards" / f"{old[dropped]}.npz") as shard:
            assert dropped in shard["paths"].tolist()
    report = changes(work)
    assert (report["added"], report["removed"], report["changed"]) == (1, 2, 1)
    same_as_fresh(work, grown.config)


def test_the_tree_is_walked_once_per_invocation_by_the_main_process_only(grown, tmp_path):
    walks = tmp_path / "walks.log"
    add(grown.source, ["c0/img002x.png"])
    run = grown.rerun(env={"IMG2NPZ_SCAN_LOG": str(walks)})
    assert "index_images" in jobs_run(run.result) and run.shards
    lines = walks.read_text().splitlines()
    assert len(lines) == 1 and "snakemake" in lines[0] and ".snakemake/scripts" not in lines[0]
    assert "tree listing: results/index/listing/" in index_log(grown.work)


def test_a_new_shard_size_writes_no_shard_and_leaves_no_stale_file(grown):
    """Shard sizes shape the shards of new images; the old ones stay as they are."""
    work = grown.work
    dataset = sha(work / "results" / "dataset.npz")
    recut = config_for(grown.base, grown.source, "recut.yaml", target=15)
    run = grown.rerun(recut)
    assert "index_images" in jobs_run(run.result) and not run.shards and not run.new and not run.removed
    assert sha(work / "results" / "dataset.npz") == dataset
    shards = work / "results" / "shards"
    files = {path.name for path in shards.iterdir()}
    assert files == {f"{shard}.{kind}" for shard in manifests(work) for kind in ("npz", "failures.tsv", "stats.json")}


def test_a_compaction_copies_rows_decodes_nothing_and_prunes_the_old_files(grown):
    """The three shards with a dropped row and the two small ones (of the last two reruns) are
    rewritten into full ones, their rows copied; nothing else is written, the dataset is the same."""
    work = grown.work
    dataset = sha(work / "results" / "dataset.npz")
    lines = {shard: len(manifest_lines(work, shard)) for shard in manifests(work)}
    small = {shard for shard, count in lines.items() if count < 15 // 4}
    compacting = config_for(grown.base, grown.source, "compacting.yaml", target=15, compaction=COMPACTING)
    run = grown.rerun(compacting)
    assert small < run.removed and len(run.removed) == len(small) + 3 and set(run.shards) == run.new
    rows = sum(len(manifest_lines(work, shard)) for shard in run.new)
    assert rows == sum(lines[shard] for shard in run.removed) - 3  # less the three dropped rows
    assert run.decoded == 0 and run.copied == rows and not run.touched
    assert all(line[3] for shard in run.new for line in manifest_lines(work, shard))  # each names its source row
    summary = json.loads((work / "results" / "index" / "summary.json").read_text())
    written = {"shards": len(run.new), "decode": 0, "copy": rows}
    assert summary["compaction"]["rows"] == rows and summary["written"] == written
    said = f"compaction: {len(run.removed)} shards rewritten into {len(run.new)}, copying {rows} rows, because"
    assert said in index_log(work)
    left = {path.name.split(".")[0] for path in (work / "results" / "shards").iterdir()}
    assert left == set(manifests(work)) and not left & run.removed  # every file of the rewritten shards gone
    assert sha(work / "results" / "dataset.npz") == dataset
    same_as_fresh(work, compacting)
    report = changes(work)  # the same images: the report says what the run did to the shards
    assert (report["shards written"], report["images decoded"], report["rows copied"]) == (len(run.new), 0, rows)
    assert report["shards compacted"] == len(run.removed)


def test_a_compaction_decodes_the_rows_of_a_source_it_cannot_read(grown):
    """A shard whose npz is garbage (its mtime kept, so Snakemake sees nothing) is compacted after
    one of its images is deleted: its rows are decoded instead, with no error."""
    work = grown.work
    compacting = config_for(grown.base, grown.source, "compacting.yaml", target=15, compaction=COMPACTING)
    lines = {line[0]: shard for shard in manifests(work) for line in manifest_lines(work, shard)}
    victim = lines["c4/img040.png"]
    rows = len(manifest_lines(work, victim)) - 1
    npz = work / "results" / "shards" / f"{victim}.npz"
    stat = npz.stat()
    npz.write_bytes(b"PK\x03\x04" + os.urandom(3000))
    os.utime(npz, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    os.remove(grown.source / "c4/img040.png")
    run = grown.rerun(compacting)
    assert run.removed == {victim} and set(run.shards) == run.new and not run.touched
    assert run.copied == 0 and run.decoded == rows
    report = changes(work)
    assert (report["removed"], report["shards compacted"], report["shards written"]) == (1, 1, 1)
    assert (report["images decoded"], report["rows copied"]) == (rows, 0)
    [new] = run.new
    assert (
        f"shard {victim} cannot be copied from" in (work / "results/logs/preprocess_shard" / f"{new}.log").read_text()
    )
    same_as_fresh(work, compacting)


def test_a_validate_change_reruns_only_the_validation(grown):
    dataset = sha(grown.work / "results" / "dataset.npz")
    threshold = config_for(
        grown.base,
        grown.source,
        "threshold.yaml",
        target=15,
        compaction=COMPACTING,
        validate={"max_failure_fraction": 0.5},
    )
    run = grown.rerun(threshold)
    assert [job for job in jobs_run(run.result) if job != "all"] == ["validate_report"]
    assert sha(grown.work / "results" / "dataset.npz") == dataset


def test_a_pixel_config_change_decodes_everything(grown):
    """Every shard's job runs again (no row is copied: a compaction's sources are gone, and their
    rows were made under another pixel config), dropped rows included."""
    work = grown.work
    dataset = sha(work / "results" / "dataset.npz")
    resized = config_for(grown.base, grown.source, "resized.yaml", target=15, size=12, compaction=COMPACTING)
    run = grown.rerun(resized)
    assert "index_images" not in jobs_run(run.result) and set(run.shards) == set(manifests(work))
    assert not run.new and not run.removed and run.touched == set(run.shards)
    assert run.copied == 0 and run.decoded == sum(len(manifest_lines(work, shard)) for shard in run.shards)
    assert sha(work / "results" / "dataset.npz") != dataset


def test_kill_9_inside_a_shard_job_of_a_rerun_then_recover(grown):
    """The kill lands while a new shard is being written (a large new PNG takes a while to decode
    there); the documented recovery writes no old shard again, decodes only the images that were
    never stored, and ends with the bytes of a build from scratch."""
    base, work = grown.base, grown.work
    config = config_for(base, grown.source, "resized.yaml", target=15, size=12, compaction=COMPACTING)
    added = [f"c{k}/img{i:03d}.png" for k in range(CLASSES) for i in (23, 61)]
    add(grown.source, added, size=(1800, 1500))
    old = shard_files(work)
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
    run = grown.rerun(config)
    assert run.decoded <= len(added) and run.copied == 0 and not run.removed
    now = shard_files(work)
    assert {shard: now[shard] for shard in old} == old  # every old shard file as it was
    same_as_fresh(work, config)


def test_the_grown_dataset_equals_one_built_at_once_with_other_shards_and_cores(grown):
    other = config_for(grown.base, grown.source, "other.yaml", target=7, size=12)
    same_as_fresh(grown.work, other, cores=1)


def test_no_image_ever_moved_to_another_split(grown):
    """Over every run above (additions, deletions, replacements, compactions, a new pixel config),
    an image kept the split it had when it first came."""
    first = {}
    for splits in grown.history:
        for path, split in splits.items():
            assert first.setdefault(path, split) == split, path
    assert len(grown.history) > 1 and set(first.values()) == set(SPLITS)


def test_the_shards_layout_after_a_history_reads_as_a_fresh_build_and_stands_alone(tmp_path):
    """Additions, deletions, a replacement and a compaction in the ``shards`` layout: each run links
    only its new shards into results/dataset/ and unlinks the rewritten ones; NPZDataset then gives
    the rows of a fresh ``file`` build (paths, labels, splits, pixels), also from a copy of the folder
    alone, through a DataLoader with workers."""
    import torch

    source, work = tmp_path / "src", tmp_path / "work"
    add(source, [f"c{k}/{n:03d}.png" for k in range(CLASSES) for n in range(0, 24, 2)])
    config = config_for(tmp_path, source, layout="shards")
    folder = work / "results" / "dataset"
    history = []

    def rerun(config):
        run = Rerun(work, config)
        assert not run.touched and {path.stem for path in (folder / "shards").iterdir()} == set(manifests(work))
        assert all(os.path.samefile(folder / "shards" / f"{shard}.npz", work / "results" / "shards" / f"{shard}.npz")
                   for shard in manifests(work))  # fmt: skip
        history.append(dataset_splits(folder / "index.npz"))
        return run

    rerun(config)
    add(source, [f"c{k}/{n:03d}.png" for k in range(CLASSES) for n in (5, 13)])
    assert rerun(config).decoded == 2 * CLASSES
    os.remove(source / "c0/004.png")
    save(noise("replaced"), source / "c3/010.png")
    os.utime(source / "c3/010.png", ns=(1, 2 * 10**18))
    assert rerun(config).decoded == 1
    compacting = config_for(tmp_path, source, "compacting.yaml", compaction=COMPACTING, layout="shards")
    compaction = rerun(compacting)
    assert compaction.removed and compaction.decoded == 0 and compaction.copied > 0
    assert not (work / "results" / "dataset.npz").exists()

    run_snakemake(tmp_path / "fresh", config_for(tmp_path, source, "fresh.yaml"))
    fresh = NPZDataset(tmp_path / "fresh" / "results" / "dataset.npz")
    elsewhere = tmp_path / "elsewhere" / "dataset"
    shutil.copytree(folder, elsewhere)
    shutil.rmtree(work)
    sharded = NPZDataset(elsewhere)
    assert sharded.samples == fresh.samples and sharded.classes == fresh.classes
    assert sharded.meta["images_sha256"] == fresh.meta["images_sha256"]
    for split in SPLITS:
        assert NPZDataset(elsewhere, split=split).samples == NPZDataset(fresh.path, split=split).samples
    loader = torch.utils.data.DataLoader(sharded, batch_size=8, num_workers=2)
    images, labels = map(torch.cat, zip(*loader, strict=True))
    assert torch.equal(images, torch.stack([fresh[i][0] for i in range(len(fresh))]))
    assert labels.tolist() == fresh.targets
    first = {}
    for splits in history:
        assert all(first.setdefault(path, split) == split for path, split in splits.items())
