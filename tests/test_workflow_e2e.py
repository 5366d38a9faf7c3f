"""End-to-end: the main job through the real ``snakemake``, as a user runs it: a tree of many shards
becomes one labelled dataset, an unlabelled tree, the shipped demo config, and a folder that goes
back to the demo. Hostile input is ``test_hostile_e2e``'s, reruns ``test_rerun_e2e``'s, the report
``test_report_e2e``'s."""

import html
import json
import re

import numpy as np
import pytest
from conftest import (
    jobs_run,
    make_tree,
    run_snakemake,
    save,
    shards_run,
    solid,
    write_config,
)
from PIL import Image

from img2npz.contract import MANIFEST_HEADER
from img2npz.tsv import read_tsv

pytestmark = pytest.mark.slow

GREEN = [0, 255, 0]
BROKEN = {"broken/truncated.jpg", "broken/empty.png", "broken/text.jpg"}


def make_tree_of_many_shards(root):
    save(solid((220, 20, 40), (90, 60)), root / "solid" / "red.jpg", quality=95)
    save(solid((10, 90, 200), (50, 50)), root / "solid" / "blue.bmp")
    save(solid(128, (40, 40), "L"), root / "solid" / "gray.png")
    save(solid((200, 200, 0), (70, 50)), root / "solid" / "UPPER.JPG", quality=95)
    save(solid((1, 2, 3), (20, 20)), root / "deep" / "a" / "b" / "nested.png")
    save(solid((5, 5, 5), (20, 20)), root / "ünï cödé" / "naïve file.png")
    (root / "broken").mkdir()
    (root / "broken" / "truncated.jpg").write_bytes((root / "solid" / "red.jpg").read_bytes()[:300])
    (root / "broken" / "empty.png").write_bytes(b"")
    (root / "broken" / "text.jpg").write_text("just text\n")
    (root / "solid" / "notes.txt").write_text("not an image\n")
    for name in ("a.webp", "b.webp", "c.tif"):  # images, but of extensions not configured
        save(solid((9, 9, 9), (12, 12)), root / "other" / name)
    for i in range(220):
        save(solid((i, 255 - i, (7 * i) % 256), (24 + i % 9, 20)), root / f"fill{i % 4}" / f"f{i:03d}.png")


def load(workdir):
    with np.load(workdir / "results" / "dataset.npz") as data:
        return {key: data[key] for key in data}


def pixel_of(data, path):
    return data["images"][data["paths"].tolist().index(path)].astype(int)


@pytest.fixture(scope="module")
def many_shards(tmp_path_factory):
    base = tmp_path_factory.mktemp("many-shards")
    source = base / "src"
    make_tree_of_many_shards(source)
    config = write_config(
        base / "config.yaml",
        source=str(source),
        image={"size": [32, 32], "background": GREEN},
        shards={"target_images": 20},
        validate={"max_failure_fraction": 0.1},
    )
    workdir = base / "work"
    result = run_snakemake(workdir, config)
    return base, source, config, workdir, result


def test_every_file_lands_in_exactly_one_place(many_shards):
    _, source, _, workdir, result = many_shards
    assert jobs_run(result).count("preprocess_shard") > 3
    data = load(workdir)
    failures = read_tsv(workdir / "results" / "failures.tsv", ["path", "stage", "error"])
    failed = {row[0] for row in failures}
    assert failed == BROKEN and {row[1] for row in failures} == {"decode"}
    images = {
        p.relative_to(source).as_posix()
        for p in source.rglob("*")
        if p.is_file() and p.suffix not in (".txt", ".webp", ".tif")
    }
    assert set(data["paths"].tolist()) | failed == images
    assert not set(data["paths"].tolist()) & failed
    assert len(data["paths"]) == len(images) - 3 == len(data["labels"]) == len(data["images"])
    assert data["images"].shape[1:] == (32, 32, 3) and data["images"].dtype == np.uint8


def test_labels_classes_meta_and_validation(many_shards):
    workdir = many_shards[3]
    data = load(workdir)
    classes = data["classes"].tolist()
    assert classes == sorted(classes) and "ünï cödé" in classes and "broken" in classes
    for path, label in zip(data["paths"].tolist(), data["labels"].tolist(), strict=True):
        assert classes[label] == path.split("/")[0]
    meta = json.loads(str(data["meta"]))
    assert meta["images"] == len(data["paths"]) and meta["pixel"]["size"] == [32, 32]
    assert len(meta["mean"]) == 3 and len(meta["images_sha256"]) == 64
    assert str(workdir) not in (workdir / "results" / "dataset.npz").read_bytes().decode("latin-1")
    validation = json.loads((workdir / "results" / "validation.json").read_text())
    assert validation["passed"] is True
    assert Image.open(workdir / "results" / "report" / "samples.png").size[0] > 500


def test_files_of_other_extensions_are_counted_in_the_log_and_the_report(many_shards):
    results = many_shards[3] / "results"
    line = "3 files skipped by extension: .webp 2, .tif 1; add them to `extensions` to index them"
    assert line in (results / "logs" / "index_images.log").read_text()
    page = (results / "report" / "index.html").read_text()
    assert html.escape(line) in page and "1 other file skipped (no image extension): .txt 1" in page


def test_a_labels_csv_with_absolute_paths_under_source_labels_them_and_the_report_warns(tmp_path):
    source = tmp_path / "src"
    for i in range(6):
        save(solid((i * 40, 0, 0), (10, 10)), source / "photos" / f"img{i}.png")
    rows = [f"{source}/photos/img{i}.png,{'cat' if i % 2 else 'dog'}" for i in range(4)]
    rows += ["photos/img4.png,cat", "/elsewhere/photos/img5.png,dog"]
    (tmp_path / "labels.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    config = write_config(
        tmp_path / "config.yaml", source=str(source), image={"size": [8, 8]}, labels=str(tmp_path / "labels.csv")
    )
    run_snakemake(tmp_path / "work", config)
    data = load(tmp_path / "work")
    assert data["classes"].tolist() == ["cat", "dog"] and data["labels"].tolist() == [1, 0, 1, 0, 0, -1]
    page = (tmp_path / "work" / "results" / "report" / "index.html").read_text()
    assert "paths must be relative to source, or absolute under it" in page and "/elsewhere/photos/img5.png" in page
    assert "1 indexed images have no row in" in page


def test_an_unlabelled_tree(tmp_path):
    source = tmp_path / "src"
    for i in range(5):
        save(solid((i * 40, 0, 0), (10, 10)), source / "photos" / f"img{i}.png")
    config = write_config(tmp_path / "config.yaml", source=str(source), image={"size": [8, 8]}, labels="none")
    run_snakemake(tmp_path / "work", config)
    data = load(tmp_path / "work")
    assert data["labels"].tolist() == [-1] * 5 and data["classes"].tolist() == []


def test_demo_runs_from_the_shipped_config(tmp_path, repo):
    result = run_snakemake(tmp_path / "work", repo / "config.yaml")
    assert jobs_run(result)[:2] == ["demo_source", "index_images"]
    results = tmp_path / "work" / "results"
    data = load(tmp_path / "work")
    assert len(data["classes"]) == 5 and len(data["paths"]) >= 250
    failures = read_tsv(results / "failures.tsv", ["path", "stage", "error"])
    assert len(failures) == 3
    assert json.loads((results / "validation.json").read_text())["passed"] is True
    assert (results / "report" / "samples.png").stat().st_size > 10_000
    again = run_snakemake(tmp_path / "work", repo / "config.yaml")
    assert jobs_run(again) == []


def test_back_to_the_demo_after_another_source_plans_no_vanishing_shard(tmp_path, repo):
    """The index rewrites the manifests when the source changes: no shard job of the old manifests
    may be planned beside it (one was, with the demo behind its checkpoint, and failed on a cluster
    once the index had deleted its manifest). Dry runs work before and after the index."""
    work, config = tmp_path / "work", repo / "config.yaml"
    small = ("--config", "image={size: [16, 16]}")
    fresh = run_snakemake(work, config, *small, "--dry-run")  # resources known before the index ran
    assert jobs_run(fresh)[:3] == ["demo_source", "index_images", "merge_npz"]
    run_snakemake(work, config, *small)
    demo_bytes = (work / "results" / "dataset.npz").read_bytes()
    make_tree(tmp_path / "other")
    run_snakemake(work, config, *small, f"source={tmp_path / 'other'}")
    planned = run_snakemake(work, config, *small, "--dry-run", cores=4)
    assert "index_images" in jobs_run(planned) and "preprocess_shard" not in jobs_run(planned)
    back = run_snakemake(work, config, *small, cores=4)
    manifests = {path.stem for path in (work / "results" / "index" / "shards").glob("*.tsv")}
    assert set(shards_run(back)) == manifests  # the demo's own (pruned when the other tree was merged)
    assert (work / "results" / "dataset.npz").read_bytes() == demo_bytes


def test_the_longest_shard_jobs_start_first(tmp_path):
    """Each shard job's priority is its manifest's size (about its lines), so with one core the
    largest shard to build runs before the smaller ones: here an old shard of 12 images rebuilt
    (its file deleted) and new shards of 3."""
    make_tree(tmp_path / "src", per_class=12)
    bounds = {"min_images": 1, "max_images": 24}
    config = write_config(tmp_path / "c.yaml", source=str(tmp_path / "src"), shards={"target_images": 12, **bounds})
    work = tmp_path / "work"
    run_snakemake(work, config)
    big = sorted((work / "results" / "shards").glob("*.npz"))[0]
    big.unlink()
    for i in range(9):
        save(solid((i, 9, 9), (12, 12)), tmp_path / "src" / "added" / f"a{i}.png")
    config = write_config(tmp_path / "c.yaml", source=str(tmp_path / "src"), shards={"target_images": 3, **bounds})
    result = run_snakemake(work, config, cores=1)
    order = shards_run(result)
    manifests = work / "results" / "index" / "shards"
    lines = {shard: len(read_tsv(manifests / f"{shard}.tsv", MANIFEST_HEADER)) for shard in order}
    assert order[0] == big.stem and len(order) == 4, (order, lines)
    assert lines[big.stem] >= 12 and sorted(lines.values())[:3] == [3, 3, 3], lines
    logged = [int(n) for n in re.findall(r"priority: (\d+)", result.stdout + result.stderr)]
    assert logged == [(manifests / f"{shard}.tsv").stat().st_size for shard in order]
    assert logged == sorted(logged, reverse=True)
