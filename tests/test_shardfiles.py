"""shardfiles: pruning removes only files of shards no longer indexed; the dataset folder links them."""

import os

from img2npz.shardfiles import link_shards, other_layout, prune, remove_other_layout, unlink_others

LIVE, GONE = "0123456789abcdef", "fedcba9876543210"


def test_prune_removes_only_shard_files_no_manifest_names_and_killed_jobs_leftovers(tmp_path):
    names = [f"{shard}.{kind}" for shard in (LIVE, GONE) for kind in ("npz", "failures.tsv", "stats.json")]
    leftovers = [f".{LIVE}.npz.abc123.tmp", f".{GONE}.failures.tsv.x.tmp"]
    others = ["notes.txt", "dataset.npz", "0123.npz"]
    for name in [*names, *leftovers, *others]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / ".kept").mkdir()
    (tmp_path / ".kept" / f"{LIVE}.1.npz").write_bytes(b"x")  # the second names of shard format 5
    assert prune(tmp_path, {LIVE}) == 3 + 2 + 1
    assert sorted(os.listdir(tmp_path)) == sorted([*names[:3], *others])
    assert prune(tmp_path / "absent", {LIVE}) == 0


def test_the_dataset_folder_links_every_shard_it_names_and_drops_the_others(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    for shard in (LIVE, GONE):
        (shards / f"{shard}.npz").write_bytes(shard.encode())
    folder = tmp_path / "dataset"
    assert link_shards([shards / f"{LIVE}.npz", shards / f"{GONE}.npz"], folder) == 2
    assert link_shards([shards / f"{LIVE}.npz"], folder) == 0  # already there: nothing to do
    assert os.path.samefile(folder / "shards" / f"{LIVE}.npz", shards / f"{LIVE}.npz")  # a link, not a copy
    (shards / f"{LIVE}.npz").unlink()  # the folder holds its own name of the bytes
    assert (folder / "shards" / f"{LIVE}.npz").read_bytes() == LIVE.encode()
    assert unlink_others(folder, {f"{LIVE}.npz"}) == 1
    assert os.listdir(folder / "shards") == [f"{LIVE}.npz"]


def test_the_other_layouts_dataset_is_removed(tmp_path):
    (tmp_path / "dataset" / "shards").mkdir(parents=True)
    (tmp_path / "dataset" / "index.npz").write_bytes(b"x")
    (tmp_path / "dataset.npz").write_bytes(b"x")
    assert remove_other_layout(tmp_path / "dataset") and not (tmp_path / "dataset").exists()
    assert remove_other_layout(tmp_path / "dataset.npz") and not (tmp_path / "dataset.npz").exists()
    assert not remove_other_layout(tmp_path / "dataset.npz")
    assert other_layout("results/dataset.npz", "file").as_posix() == "results/dataset"
    assert other_layout("results/dataset/index.npz", "shards").as_posix() == "results/dataset.npz"
