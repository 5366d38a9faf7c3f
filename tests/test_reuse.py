"""Shard jobs reuse the rows they already decoded: only new and changed images are decoded, and the
bytes are those of a build from scratch (img2npz.reuse, img2npz.preprocess)."""

import errno
import os
import shutil

import numpy as np
import pytest
from conftest import DEFAULT_PIXEL, save, thresholds
from PIL import Image

from img2npz import decode, reuse
from img2npz.checks import run_checks
from img2npz.contract import ShardStats
from img2npz.evidence import Evidence
from img2npz.index import build_index, class_names, write_images_table, write_manifests
from img2npz.kept import dataset_rows, kept_dir, prune
from img2npz.merge import merge_shards
from img2npz.npzformat import array_layout
from img2npz.preprocess import process_shard
from img2npz.scan import scan_tree


def noise(seed, size=(24, 18)):
    rng = np.random.default_rng(list(str(seed).encode()))
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), np.uint8))


def make_tree(root, names):
    for name in names:
        save(noise(name), root / name)


def build(src, out, bounds=(1000, 1, 4000), pixel=DEFAULT_PIXEL, merge=False) -> dict[str, ShardStats]:
    """Every shard of ``src`` into ``out`` (manifests beside), as the workflow's jobs do; then the
    merge into ``out/dataset.npz`` if asked, and the prune."""
    listing = scan_tree(src, [".png"])
    index = build_index(listing, class_names(listing.paths, "folder"), *bounds)
    write_manifests(index, out / "manifests")
    stats = {}
    shards = out / "shards"
    for manifest in sorted((out / "manifests").glob("*.tsv")):
        shard = manifest.stem
        stats[shard] = process_shard(manifest, src, pixel, shards / f"{shard}.npz", shards / f"{shard}.failures.tsv")
    dataset = None
    if merge:
        dataset = out / "dataset.npz"
        npzs = [str(shards / f"{shard}.npz") for shard in stats]
        failures = [str(shards / f"{shard}.failures.tsv") for shard in stats]
        merge_shards(npzs, failures, index.classes, pixel, dataset, out / "failures.tsv")
    prune(shards, dataset_rows(stats), dataset)
    return stats


def shard_bytes(out):
    return {p.name: p.read_bytes() for p in sorted((out / "shards").glob("*.npz"))}


NAMES = [f"{cls}/{i:03d}.png" for cls in ("a", "b", "c") for i in range(0, 40, 2)]


def test_added_images_are_decoded_the_rest_reused_and_the_bytes_equal_a_fresh_build(tmp_path):
    src = tmp_path / "src"
    make_tree(src, NAMES)
    first = build(src, tmp_path / "grown")
    assert sum(s.decoded for s in first.values()) == len(NAMES) and not sum(s.reused for s in first.values())
    added = [f"{cls}/{i:03d}.png" for cls in ("a", "b", "c") for i in (5, 17)]  # between the old names
    make_tree(src, added)
    second = build(src, tmp_path / "grown")
    assert sum(s.decoded for s in second.values()) == len(added)
    assert sum(s.reused for s in second.values()) == len(NAMES)
    build(src, tmp_path / "fresh")
    assert shard_bytes(tmp_path / "grown") == shard_bytes(tmp_path / "fresh")


def test_replaced_deleted_and_renamed_images(tmp_path):
    src = tmp_path / "src"
    make_tree(src, NAMES)
    build(src, tmp_path / "grown")
    save(noise(1234), src / "a/004.png")  # same path, new content, size and mtime
    os.utime(src / "a/004.png", ns=(1, 10**18))
    os.remove(src / "b/010.png")
    os.rename(src / "c/020.png", src / "c/021.png")
    stats = build(src, tmp_path / "grown")
    assert sum(s.decoded for s in stats.values()) == 2  # the replaced one and the renamed one
    assert sum(s.reused for s in stats.values()) == len(NAMES) - 3
    build(src, tmp_path / "fresh")
    assert shard_bytes(tmp_path / "grown") == shard_bytes(tmp_path / "fresh")


def test_rows_that_move_to_another_shard_are_reused_from_it(tmp_path):
    src = tmp_path / "src"
    make_tree(src, NAMES)
    build(src, tmp_path / "out", bounds=(1000, 1, 4000))  # one shard
    stats = build(src, tmp_path / "out", bounds=(8, 2, 12))  # re-cut into several
    assert len(stats) > 3
    assert sum(s.reused for s in stats.values()) == len(NAMES) and not sum(s.decoded for s in stats.values())
    build(src, tmp_path / "fresh", bounds=(8, 2, 12))
    assert shard_bytes(tmp_path / "out") == shard_bytes(tmp_path / "fresh")


@pytest.mark.parametrize(
    "change",
    [
        {"size": [6, 6]},
        {"resize": "pad"},
        {"background": [0, 0, 0]},
        {"dtype": "float16"},
    ],
)
def test_another_pixel_config_reuses_nothing(tmp_path, change):
    src = tmp_path / "src"
    make_tree(src, NAMES[:10])
    build(src, tmp_path / "out")
    stats = build(src, tmp_path / "out", pixel={**DEFAULT_PIXEL, **change})
    assert sum(s.reused for s in stats.values()) == 0 and sum(s.decoded for s in stats.values()) == 10


def test_another_decoder_version_reuses_nothing(tmp_path, monkeypatch):
    src = tmp_path / "src"
    make_tree(src, NAMES[:10])
    build(src, tmp_path / "out")
    monkeypatch.setattr("img2npz.preprocess.DECODER_VERSION", decode.DECODER_VERSION + 1)
    assert sum(s.reused for s in build(src, tmp_path / "out").values()) == 0


@pytest.mark.parametrize(
    ("damage", "reusable"),
    [
        (lambda path: path.write_bytes(path.read_bytes()[: path.stat().st_size // 2]), 0),  # truncated
        (lambda path: path.write_bytes(os.urandom(5000)), 0),  # foreign
        (lambda path: path.unlink(), 0),
    ],
    ids=["truncated", "foreign", "missing"],
)
def test_a_damaged_kept_shard_is_decoded_again_never_an_error(tmp_path, damage, reusable):
    src = tmp_path / "src"
    make_tree(src, NAMES)
    build(src, tmp_path / "out")
    [kept] = kept_dir(tmp_path / "out" / "shards").glob("*.npz")
    kept.unlink()  # a file of its own, so the damage leaves the shard's output alone
    shutil.copyfile(tmp_path / "out" / "shards" / f"{kept.name.split('.')[0]}.npz", kept)
    damage(kept)
    make_tree(src, ["a/001.png"])
    stats = build(src, tmp_path / "out")
    assert sum(s.reused for s in stats.values()) == reusable
    assert sum(s.decoded for s in stats.values()) == len(NAMES) + 1 - reusable
    build(src, tmp_path / "fresh")
    assert shard_bytes(tmp_path / "out") == shard_bytes(tmp_path / "fresh")


def test_float_rows_are_reused_with_the_histogram_a_fresh_build_has(tmp_path):
    pixel = {**DEFAULT_PIXEL, "dtype": "float16", "normalize": {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.3, 0.25]}}
    src = tmp_path / "src"
    make_tree(src, NAMES[:12])
    build(src, tmp_path / "grown", pixel=pixel)
    make_tree(src, ["a/001.png"])
    os.remove(src / NAMES[3])  # its counts come off the kept shard's histogram
    stats = build(src, tmp_path / "grown", pixel=pixel)
    assert sum(s.reused for s in stats.values()) == 11
    build(src, tmp_path / "fresh", pixel=pixel)
    assert shard_bytes(tmp_path / "grown") == shard_bytes(tmp_path / "fresh")


def test_a_full_disk_while_reusing_loses_nothing_and_the_next_try_reuses(tmp_path, monkeypatch):
    src = tmp_path / "src"
    make_tree(src, NAMES)
    build(src, tmp_path / "out")
    shards = tmp_path / "out" / "shards"
    kept = {p.name: p.read_bytes() for p in kept_dir(shards).iterdir()}
    built = shard_bytes(tmp_path / "out")
    make_tree(src, ["b/001.png"])

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(reuse, "copy_ranges", full)  # the copy of the kept rows fills the disk
        with pytest.raises(OSError, match=r"no space left on the device while writing .*\.npz"):
            build(src, tmp_path / "out")
    assert shard_bytes(tmp_path / "out") == built and not list(shards.glob(".*.tmp"))  # nothing half-written
    assert {p.name: p.read_bytes() for p in kept_dir(shards).iterdir()} == kept
    stats = build(src, tmp_path / "out")
    assert sum(s.decoded for s in stats.values()) == 1 and sum(s.reused for s in stats.values()) == len(NAMES)
    build(src, tmp_path / "fresh")
    assert shard_bytes(tmp_path / "out") == shard_bytes(tmp_path / "fresh")


def test_kept_rows_are_read_from_the_dataset_they_went_into(tmp_path, monkeypatch):
    src = tmp_path / "src"
    make_tree(src, NAMES)
    build(src, tmp_path / "out", bounds=(20, 5, 40), merge=True)
    for path in kept_dir(tmp_path / "out" / "shards").glob("*.npz"):  # only the dataset keeps the pixels
        images = array_layout(path)["images"]
        data = bytearray(path.read_bytes())
        data[images.offset : images.offset + images.nbytes] = bytes(images.nbytes)
        path.unlink()
        path.write_bytes(bytes(data))
    make_tree(src, ["a/001.png", "c/039.png"])
    shutil.copytree(tmp_path / "out", tmp_path / "copy")
    with monkeypatch.context() as patch:
        patch.setattr(reuse, "merged_images", lambda *args: None)
        build(src, tmp_path / "copy", bounds=(20, 5, 40))  # from the kept files alone
    stats = build(src, tmp_path / "out", bounds=(20, 5, 40), merge=True)
    assert sum(s.reused for s in stats.values()) == len(NAMES) and sum(s.decoded for s in stats.values()) == 2
    build(src, tmp_path / "fresh", bounds=(20, 5, 40), merge=True)
    assert shard_bytes(tmp_path / "out") == shard_bytes(tmp_path / "fresh")  # the rows came from the dataset
    assert shard_bytes(tmp_path / "copy") != shard_bytes(tmp_path / "fresh")  # not from the (emptied) kept files
    assert (tmp_path / "out" / "dataset.npz").read_bytes() == (tmp_path / "fresh" / "dataset.npz").read_bytes()


def test_a_damaged_pixel_in_a_kept_shard_fails_validation_naming_the_image(tmp_path):
    """Copied rows are not read in the shard job: their CRC-32 from decoding travels with them into
    the dataset, and validate-report checks every row against it."""
    src = tmp_path / "src"
    make_tree(src, NAMES)
    build(src, tmp_path / "out", merge=True)
    [kept] = kept_dir(tmp_path / "out" / "shards").glob("*.npz")
    images = array_layout(kept)["images"]
    data = bytearray(kept.read_bytes())
    data[images.offset + 5 * images.nbytes // images.shape[0] + 7] ^= 0xFF  # a pixel of row 5
    kept.unlink()
    kept.write_bytes(bytes(data))
    (tmp_path / "out" / "dataset.npz").unlink()  # the kept file is the only copy to reuse
    make_tree(src, ["a/001.png"])
    build(src, tmp_path / "out", merge=True)
    shards = tmp_path / "out" / "manifests"
    images_table = tmp_path / "out" / "images.parquet"
    listing = scan_tree(src, [".png"])
    write_images_table(build_index(listing, class_names(listing.paths, "folder"), 1000, 1, 4000), images_table)
    evidence = Evidence(
        str(tmp_path / "out" / "dataset.npz"),
        str(tmp_path / "out" / "failures.tsv"),
        str(images_table),
        DEFAULT_PIXEL,
        "folder",
    )
    checks, _ = run_checks(evidence, thresholds())
    crc = next(check for check in checks if check.name == "images_crc32")
    assert not crc.passed and crc.value == {"rows": 1, "examples": ["a/010.png"]} and shards.exists()
    # the row's sha256 travelled with it too: the tree digest of the rows as they lie differs
    assert not next(check for check in checks if check.name == "images_sha256").passed
    damaged = ("images_crc32", "images_sha256", "duplicate_images")
    assert all(check.passed for check in checks if check.name not in damaged)


def test_fingerprints_hashed_a_block_at_a_time_among_reused_rows_match_each_row(tmp_path, monkeypatch):
    from conftest import channel_histogram

    from img2npz import fingerprint

    monkeypatch.setattr(fingerprint, "BLOCK", 3)
    src = tmp_path / "src"
    make_tree(src, NAMES)
    build(src, tmp_path / "grown")
    make_tree(src, [f"{cls}/{i:03d}.png" for cls in ("a", "b", "c") for i in (5, 11, 17, 23)])
    second = build(src, tmp_path / "grown")
    assert sum(s.decoded for s in second.values()) == 12 and sum(s.reused for s in second.values()) == len(NAMES)
    build(src, tmp_path / "fresh")
    assert shard_bytes(tmp_path / "grown") == shard_bytes(tmp_path / "fresh")
    for path in (tmp_path / "grown" / "shards").glob("*.npz"):
        with np.load(path) as shard:
            rows = shard["images"][: len(shard["paths"])]
            for row, found, colour in zip(rows, shard["phashes"], shard["mean_rgb"], strict=True):
                thumb = fingerprint.thumbnail(Image.fromarray(row), row)
                assert np.array_equal(fingerprint.hashes(thumb[None])[0], found)
                assert np.array_equal(fingerprint.mean_rgb(channel_histogram(row)), colour)
