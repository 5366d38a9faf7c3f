"""End-to-end: the real ``snakemake`` on generated trees, asserting on outputs and on jobs run."""

import json
import os

import numpy as np
import pytest
from conftest import (
    asymmetric,
    jobs_run,
    make_tree,
    run_snakemake,
    save,
    shards_run,
    solid,
    with_orientation,
    write_config,
)
from PIL import Image

from img2npz.tsv import read_tsv

pytestmark = pytest.mark.slow

GREEN = [0, 255, 0]
BROKEN = {"broken/truncated.jpg", "broken/empty.png", "broken/text.jpg"}


def make_torture_tree(root):
    save(solid((220, 20, 40), (90, 60)), root / "solid" / "red.jpg", quality=95)
    save(solid((10, 90, 200), (50, 50)), root / "solid" / "blue.bmp")
    save(solid((0, 0, 255), (64, 64)).convert("CMYK"), root / "solid" / "cmyk.jpg", quality=95)
    save(solid(128, (40, 40), "L"), root / "solid" / "gray.png")
    save(solid((200, 200, 0), (70, 50)), root / "solid" / "UPPER.JPG", quality=95)
    transparent = Image.new("RGBA", (64, 64), (255, 0, 0, 255))
    transparent.paste((0, 0, 0, 0), (0, 0, 64, 32))
    save(transparent, root / "alpha" / "half_transparent.png")
    palette = Image.new("P", (64, 64), 1)
    palette.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    palette.paste(0, (0, 0, 64, 32))
    save(palette, root / "alpha" / "palette_trns.png", transparency=0)
    gradient = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (64, 1))
    save(Image.fromarray(gradient), root / "deep" / "sixteen_bit.png")
    stored, exif = with_orientation(asymmetric((96, 64)), 6)
    save(stored, root / "deep" / "rotated.jpg", exif=exif, quality=95)
    save(solid((1, 2, 3), (20, 20)), root / "deep" / "a" / "b" / "nested.png")
    save(solid((5, 5, 5), (20, 20)), root / "ünï cödé" / "naïve file.png")
    (root / "broken").mkdir()
    (root / "broken" / "truncated.jpg").write_bytes((root / "solid" / "red.jpg").read_bytes()[:300])
    (root / "broken" / "empty.png").write_bytes(b"")
    (root / "broken" / "text.jpg").write_text("just text\n")
    (root / "solid" / "notes.txt").write_text("not an image\n")
    for i in range(220):
        save(solid((i, 255 - i, (7 * i) % 256), (24 + i % 9, 20)), root / f"fill{i % 4}" / f"f{i:03d}.png")


def load(workdir):
    with np.load(workdir / "results" / "dataset.npz") as data:
        return {key: data[key] for key in data}


def pixel_of(data, path):
    return data["images"][data["paths"].tolist().index(path)].astype(int)


@pytest.fixture(scope="module")
def torture_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("torture")
    source = base / "src"
    make_torture_tree(source)
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


def test_every_file_lands_in_exactly_one_place(torture_run):
    _, source, _, workdir, result = torture_run
    assert jobs_run(result).count("preprocess_shard") > 3
    data = load(workdir)
    failures = read_tsv(workdir / "results" / "failures.tsv", ["path", "stage", "error"])
    failed = {row[0] for row in failures}
    assert failed == BROKEN and {row[1] for row in failures} == {"decode"}
    images = {p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file() and p.suffix != ".txt"}
    assert set(data["paths"].tolist()) | failed == images
    assert not set(data["paths"].tolist()) & failed
    assert len(data["paths"]) == len(images) - 3 == len(data["labels"]) == len(data["images"])
    assert data["images"].shape[1:] == (32, 32, 3) and data["images"].dtype == np.uint8


def test_pixels_are_right(torture_run):
    workdir = torture_run[3]
    data = load(workdir)
    assert np.abs(pixel_of(data, "solid/red.jpg") - (220, 20, 40)).max() <= 4
    assert np.abs(pixel_of(data, "solid/blue.bmp") - (10, 90, 200)).max() == 0
    assert np.abs(pixel_of(data, "solid/UPPER.JPG") - (200, 200, 0)).max() <= 4
    cmyk = pixel_of(data, "solid/cmyk.jpg")[16, 16]
    assert cmyk[2] > 200 and cmyk[0] < 60
    for name, colour in [("alpha/half_transparent.png", (255, 0, 0)), ("alpha/palette_trns.png", (0, 0, 255))]:
        image = pixel_of(data, name)
        assert (image[2, 16] == GREEN).all(), name
        assert (image[-2, 16] == colour).all(), name
    gradient = pixel_of(data, "deep/sixteen_bit.png")[..., 0]
    assert gradient.std() > 50 and gradient.min() < 10 and gradient.max() > 245
    rotated = pixel_of(data, "deep/rotated.jpg")
    assert rotated[3, 3, 0] > 200 and rotated[3, 3, 2] < 60  # red quadrant is top-left again
    assert rotated[-1, 16, 1] > 200  # green band at the bottom
    assert np.abs(pixel_of(data, "ünï cödé/naïve file.png") - 5).max() == 0


def test_labels_classes_meta_and_validation(torture_run):
    workdir = torture_run[3]
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


def test_rerun_does_nothing_then_picks_up_a_new_image(torture_run):
    _, source, config, workdir, _ = torture_run
    idle = run_snakemake(workdir, config)
    assert jobs_run(idle) == [] and "Nothing to be done" in idle.stdout + idle.stderr
    save(solid((9, 9, 9), (20, 20)), source / "fill2" / "f100a.png")
    again = run_snakemake(workdir, config)
    ran = jobs_run(again)
    assert "index_images" in ran and 1 <= ran.count("preprocess_shard") <= 2
    assert "fill2/f100a.png" in load(workdir)["paths"].tolist()
    os.remove(source / "fill2" / "f100a.png")


def test_bad_config_stops_before_any_job(tmp_path):
    config = write_config(tmp_path / "config.yaml", source=str(tmp_path), image={"resize": "squash"})
    result = run_snakemake(tmp_path / "work", config, check=False)
    assert result.returncode != 0
    assert "image.resize" in result.stderr + result.stdout
    assert not (tmp_path / "work" / "results").exists()
    nested = run_snakemake(
        tmp_path / "work", config, "--config", "image={resize: pad}", "shards={target_images: x}", check=False
    )
    assert "shards.target_images" in nested.stderr + nested.stdout


def test_missing_source_is_named(tmp_path):
    config = write_config(tmp_path / "config.yaml", source=str(tmp_path / "nope"))
    result = run_snakemake(tmp_path / "work", config, check=False)
    assert result.returncode != 0 and "'source'" in result.stderr + result.stdout


def test_too_many_broken_files_fail_validation_by_name(tmp_path):
    source = tmp_path / "src"
    for i in range(6):
        save(solid((i, i, i), (10, 10)), source / "ok" / f"{i}.png")
        (source / "bad" / f"{i}.jpg").parent.mkdir(exist_ok=True)
        (source / "bad" / f"{i}.jpg").write_bytes(b"garbage")
    config = write_config(tmp_path / "config.yaml", source=str(source), image={"size": [8, 8]})
    result = run_snakemake(tmp_path / "work", config, check=False)
    assert result.returncode != 0
    assert "failure_fraction" in result.stderr + result.stdout
    assert (tmp_path / "work" / "results" / "dataset.npz").exists()


@pytest.mark.parametrize("labels", ["none", "csv"])
def test_label_modes(tmp_path, labels):
    source = tmp_path / "src"
    for i in range(5):
        save(solid((i * 40, 0, 0), (10, 10)), source / f"img{i}.png")
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("path,label\nimg0.png,zebra\nimg1.png,ant\nimg2.png,zebra\nghost.png,ant\n")
    config = write_config(
        tmp_path / "config.yaml",
        source=str(source),
        image={"size": [8, 8]},
        labels=str(csv_path) if labels == "csv" else "none",
    )
    run_snakemake(tmp_path / "work", config)
    data = load(tmp_path / "work")
    if labels == "none":
        assert data["labels"].tolist() == [-1] * 5 and data["classes"].tolist() == []
    else:
        assert data["classes"].tolist() == ["ant", "zebra"]
        assert data["labels"].tolist() == [1, 0, 1, -1, -1]


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
