"""Shared helpers: small generated images and a runner for the real ``snakemake``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from img2npz.checks import Thresholds
from img2npz.config import validate_config
from img2npz.filters import NO_FILTERS
from img2npz.index import (
    build_index,
    class_names,
    write_classes,
    write_images_table,
    write_manifests,
)
from img2npz.manifests import read_keys
from img2npz.merge import merge_shards
from img2npz.preprocess import process_shard
from img2npz.report import ReportFiles
from img2npz.scan import scan_tree
from img2npz.shardfiles import prune
from img2npz.validate import validate_dataset

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))  # the benches' image makers (scenes) serve the tests too
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def channel_histogram(pixels: np.ndarray) -> np.ndarray:
    """Reference (3, 256) counts of each channel of a uint8 (..., 3) array, computed with numpy."""
    flat = pixels.reshape(-1, 3).astype(np.intp) + np.array([0, 256, 512], dtype=np.intp)
    return np.bincount(flat.ravel(), minlength=768).reshape(3, 256).astype(np.int64)


def solid(colour, size=(40, 30), mode="RGB") -> Image.Image:
    return Image.new(mode, size, colour)


def save(image: Image.Image, path: Path, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **options)
    return path


def asymmetric(size=(60, 40)) -> Image.Image:
    """Red top-left quadrant, blue elsewhere, a green band at the bottom: any rotation shows."""
    width, height = size
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[...] = (0, 0, 255)
    pixels[: height // 2, : width // 2] = (255, 0, 0)
    pixels[-height // 5 :, :] = (0, 255, 0)
    return Image.fromarray(pixels, "RGB")


def with_orientation(upright: Image.Image, orientation: int) -> tuple[Image.Image, bytes]:
    """Stored pixels and EXIF bytes that display as ``upright`` under ``orientation``."""
    from img2npz.demo import ORIENTATION_INVERSE

    exif = Image.Exif()
    exif[0x0112] = orientation
    stored = upright.transpose(ORIENTATION_INVERSE[orientation]) if orientation != 1 else upright
    return stored, exif.tobytes()


def thresholds(**overrides) -> Thresholds:
    """The validation's limits: the config's defaults, with ``overrides``."""
    return Thresholds.from_config({**validate_config({})["validate"], **overrides})


def report_files(folder: Path) -> ReportFiles:
    return ReportFiles(folder / "s.png", folder / "c.png", folder / "h.png", folder / "r.html", folder / "log.html")


def run_validation(tmp_path, out, fail, label_mode="folder", samples=9, **limits):
    """validate_dataset on a dataset of :func:`build_dataset` (its outputs in ``tmp_path``)."""
    return validate_dataset(
        str(out),
        str(fail),
        str(out.parent / "images.parquet"),
        DEFAULT_PIXEL,
        label_mode=label_mode,
        limits=thresholds(**{"max_failure_fraction": 0.2, **limits}),
        samples=samples,
        out_json=tmp_path / "v.json",
        files=report_files(tmp_path),
    )


def write_config(path: Path, **overrides) -> Path:
    path.write_text(yaml.safe_dump(overrides, sort_keys=False))
    return path


def snakemake_env() -> dict[str, str]:
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")


def snakemake_command(workdir: Path, configfile: Path, *args: str, cores: int = 2) -> list[str]:
    return [
        SNAKEMAKE,
        "-s",
        str(REPO / "Snakefile"),
        "-d",
        str(workdir),
        "--configfile",
        str(configfile),
        "--cores",
        str(cores),
        *args,
    ]


def run_snakemake(workdir: Path, configfile: Path, *args: str, check: bool = True, cores: int = 2, env=None):
    env = {**snakemake_env(), **(env or {})}
    command = snakemake_command(workdir, configfile, *args, cores=cores)
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(
            f"snakemake failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}"
        )
    return result


def shards_run(result: subprocess.CompletedProcess) -> list[str]:
    """Shard ids of the preprocess jobs a run executed."""
    return re.findall(r"wildcards: shard=([0-9a-f]+)", result.stdout + result.stderr)


def jobs_run(result: subprocess.CompletedProcess) -> list[str]:
    """Rule names of the jobs a run executed, from Snakemake's own log lines."""
    names = []
    for line in (result.stdout + result.stderr).splitlines():
        words = line.strip().rstrip(":").split()
        if len(words) == 2 and words[0] in ("rule", "localrule", "checkpoint", "localcheckpoint"):
            names.append(words[1])
    return names


DEFAULT_PIXEL = {
    "size": [8, 8],
    "resize": "center-crop",
    "dtype": "uint8",
    "background": [255, 255, 255],
    "normalize": None,
}
COLOURS = {"blue": (0, 0, 255), "red": (255, 0, 0), "red-ish": (200, 50, 50)}


def make_tree(root, per_class=7):
    for name, colour in COLOURS.items():
        for i in range(per_class):
            save(solid(colour, (20 + i, 16)), root / name / f"{i:02d}.png")
    (root / "red" / "zz_broken.png").write_bytes(b"nope")


def plant_crops(src: Path) -> None:
    """Six generated photos in ``a/``, and in ``b/`` a corner crop (8% by 6%) of each of the first three."""
    from scenes import crop, scene

    for n in range(6):
        original = scene(np.random.default_rng([5, n]), (120, 90))
        save(original, src / "a" / f"s{n}.png")
        if n < 3:
            save(crop(original, 0.92, 0.94, 1.0, 0.0), src / "b" / f"s{n}_crop.png")


def build_dataset(
    tmp_path,
    target,
    tag,
    pixel=DEFAULT_PIXEL,
    compress=False,
    splits=None,
    filters=None,
    labels="folder",
    compaction=None,
    **merge,
):
    """A dataset of the tree ``tmp_path/src`` through the workflow's own functions, in the folder
    ``tmp_path/tag``; called again on the same folder, a rerun (new shards for new images, as the
    workflow does). ``filters`` for the shard jobs, ``labels`` the label mode (folder or none),
    ``compaction`` the index's keys, ``merge`` more options of :func:`merge_shards`."""
    src = tmp_path / "src"
    listing = scan_tree(src, [".png"])
    folder = tmp_path / tag
    manifests = folder / "manifests"
    index = build_index(
        listing,
        class_names(listing.paths, labels),
        target,
        max(1, target // 2),
        4 * target,
        read_keys(manifests),
        **(compaction or {}),
    )
    write_manifests(index, manifests)
    for manifest in sorted(manifests.iterdir()):
        npz = folder / f"{manifest.stem}.npz"
        fail = folder / f"{manifest.stem}.failures.tsv"
        if not npz.exists():
            process_shard(manifest, src, pixel, npz, fail, filters=filters or NO_FILTERS)
    write_images_table(index, folder / "images.parquet")
    write_classes(index, folder / "classes.tsv")
    out = (
        folder
        / ("dataset" if merge.get("layout") == "shards" else ".")
        / ("index.npz" if merge.get("layout") == "shards" else "dataset.npz")
    )
    out.parent.mkdir(exist_ok=True)
    out_fail = folder / "failures.tsv"
    meta = merge_shards(
        folder / "images.parquet", folder, index.classes, pixel, out, out_fail, compress=compress, splits=splits,
        **merge,
    )  # fmt: skip
    prune(folder, set(index.shards))
    return out.resolve() if merge.get("layout") != "shards" else out, out_fail, meta, len(index.shards)


@pytest.fixture
def repo() -> Path:
    return REPO


SLURM_STATE = "/tmp/img2npz-slurm"  # tests/slurm/start-cluster.sh's default: the README's commands use it


@pytest.fixture(scope="module")
def slurm_cluster():
    """The one-node SLURM cluster of tests/slurm (Debian's slurmctld, slurmd and munge, as root),
    stopped at the end unless it was up before. Skips without it, or fails when
    IMG2NPZ_REQUIRE_SLURM is set (.ci/run installs it)."""
    missing = [tool for tool in ("slurmctld", "slurmd", "munged", "sbatch") if shutil.which(tool) is None]
    problem = f"missing {', '.join(missing)}" if missing else ("needs root" if os.geteuid() else None)
    if problem and os.environ.get("IMG2NPZ_REQUIRE_SLURM"):
        pytest.fail(f"SLURM test cluster: {problem}, and IMG2NPZ_REQUIRE_SLURM is set (.ci/run installs it)")
    if problem:
        pytest.skip(f"SLURM test cluster: {problem} (apt-get install slurmctld slurmd slurm-client munge)")
    was_up = subprocess.run(["scontrol", "ping"], capture_output=True, text=True).stdout.count("UP") > 0
    subprocess.run(["bash", REPO / "tests" / "slurm" / "start-cluster.sh", SLURM_STATE], check=True, timeout=120)
    yield SLURM_STATE
    if not was_up:
        subprocess.run(["bash", REPO / "tests" / "slurm" / "stop-cluster.sh", SLURM_STATE], check=True, timeout=120)
