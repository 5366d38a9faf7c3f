"""Hostile input through the real ``snakemake``: every file lands with the right pixels or is listed
with its stage and reason; nothing crashes, hangs, half-writes or disappears; the source is never
touched; a full disk and a second run in the same folder are handled."""

import hashlib
import io
import json
import os
import shutil
import struct
import subprocess
import time
import zlib

import numpy as np
import pytest
from conftest import (
    asymmetric,
    run_snakemake,
    save,
    snakemake_command,
    snakemake_env,
    solid,
    with_orientation,
    write_config,
)
from PIL import Image

from img2npz.contract import FAILURE_HEADER
from img2npz.tsv import read_tsv

pytestmark = pytest.mark.slow

BG = [0, 255, 0]
EXTENSIONS = [".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".webp"]


def encoded(image, fmt, **options):
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def tiff_exif(entries, ifd_offset=8, extra=b""):
    """EXIF APP1 payload: a big-endian TIFF header and one IFD of (tag, type, count, value) entries."""
    body = struct.pack(">2sHI", b"MM", 42, ifd_offset) + struct.pack(">H", len(entries))
    for tag, kind, count, value in entries:
        body += struct.pack(">HHI", tag, kind, count) + value.ljust(4, b"\0")
    return b"Exif\0\0" + body + struct.pack(">I", 0) + extra


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def declared_bomb_png(width, height):
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\0"))
        + png_chunk(b"IEND", b"")
    )


EXPECTED_FAILURES = {}  # path -> stage
EXPECTED_COLOUR = {}  # path -> RGB the whole 16x16 output must have (within tolerance)


def fails(path, stage="decode"):
    EXPECTED_FAILURES[path] = stage
    return path


def make_tree(root):
    red_jpeg = encoded(solid((220, 30, 30), (200, 150)), "JPEG", quality=95)
    png = encoded(Image.fromarray(np.random.default_rng(2).integers(0, 256, (48, 64, 3), dtype=np.uint8)), "PNG")
    for cut in (0.1, 0.5, 0.9):
        write(root / fails(f"trunc/jpeg_{int(cut * 100)}.jpg"), red_jpeg[: int(len(red_jpeg) * cut)])
        write(root / fails(f"trunc/png_{int(cut * 100)}.png"), png[: int(len(png) * cut)])
    write(root / fails("junk/zero.jpg"), b"")
    write(root / fails("junk/zero.png"), b"")
    write(root / fails("junk/random.jpg"), np.random.default_rng(1).bytes(5000))
    write(root / fails("junk/page.png"), b"<!doctype html><html><body>Not found</body></html>")
    bad_crc = bytearray(png)
    bad_crc[29] ^= 0xFF  # the IHDR chunk's CRC
    write(root / fails("junk/bad_crc.png"), bytes(bad_crc))
    write(root / fails("junk/bomb.png"), declared_bomb_png(60000, 60000))

    upright = asymmetric((96, 64))
    for orientation in range(1, 9):
        stored, exif = with_orientation(upright, orientation)
        write(root / f"exif/orient_{orientation}.jpg", encoded(stored, "JPEG", quality=95, exif=exif))
    plain = solid((200, 120, 40), (40, 30))
    for name, exif in {
        "bad_offset": tiff_exif([(0x0112, 3, 1, struct.pack(">H", 6))], ifd_offset=4000),
        "zero_denominator": tiff_exif([(0x011A, 5, 1, struct.pack(">I", 26))], extra=struct.pack(">II", 72, 0)),
        "orientation_9": tiff_exif([(0x0112, 3, 1, struct.pack(">H", 9))]),
        "orientation_0": tiff_exif([(0x0112, 3, 1, struct.pack(">H", 0))]),
        "orientation_65535": tiff_exif([(0x0112, 3, 1, struct.pack(">H", 65535))]),
        "count_overflow": tiff_exif([(0x0112, 3, 0xFFFFFFF, struct.pack(">I", 12))]),
    }.items():
        write(root / f"badexif/{name}.jpg", encoded(plain, "JPEG", quality=95, exif=exif))

    cmyk = encoded(solid((0, 0, 255), (32, 32)).convert("CMYK"), "JPEG", quality=95)
    write(root / "modes/cmyk.jpg", cmyk)
    ycck = bytearray(cmyk)
    adobe = ycck.find(b"Adobe")
    ycck[adobe + 11] = 2  # Adobe transform 2: YCCK
    write(root / "modes/ycck.jpg", bytes(ycck))
    save(Image.new("1", (20, 20), 1), root / "modes/one.png")
    EXPECTED_COLOUR["modes/one.png"] = (255, 255, 255)
    save(solid(77, (20, 20), "L"), root / "modes/gray.png")
    EXPECTED_COLOUR["modes/gray.png"] = (77, 77, 77)
    save(Image.new("LA", (20, 20), (10, 0)), root / "modes/la_clear.png")
    EXPECTED_COLOUR["modes/la_clear.png"] = tuple(BG)
    palette = Image.new("P", (20, 20), 0)
    palette.putpalette([9, 9, 9] + [0] * 765)
    save(palette, root / "modes/p_trns.png", transparency=0)
    EXPECTED_COLOUR["modes/p_trns.png"] = tuple(BG)
    save(Image.new("RGBA", (20, 20), (200, 0, 0, 255)), root / "modes/rgba.png")
    EXPECTED_COLOUR["modes/rgba.png"] = (200, 0, 0)
    save(Image.fromarray(np.full((20, 20), 65535, np.uint16)), root / "modes/i16_white.png")
    EXPECTED_COLOUR["modes/i16_white.png"] = (255, 255, 255)
    gradient = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (64, 1))
    save(Image.fromarray(gradient), root / "modes/i16_gradient.png")
    save(Image.fromarray(np.tile(np.arange(64, dtype=np.int32) * 1000, (64, 1)), "I"), root / "modes/int32.tif")
    save(Image.fromarray(np.tile(np.linspace(-1, 1, 64, dtype=np.float32), (64, 1)), "F"), root / "modes/float.tif")

    save(solid((5, 200, 90), (1, 1)), root / "sizes/one_pixel.png")
    EXPECTED_COLOUR["sizes/one_pixel.png"] = (5, 200, 90)
    save(solid((90, 5, 200), (20000, 10)), root / "sizes/wide.png")
    EXPECTED_COLOUR["sizes/wide.png"] = (90, 5, 200)
    frames = [solid((255, 0, 0), (24, 24)), solid((0, 0, 255), (24, 24))]
    for ext, fmt in (("gif", "GIF"), ("png", "PNG"), ("webp", "WEBP")):
        path = root / f"anim/anim.{ext}"
        path.parent.mkdir(parents=True, exist_ok=True)
        frames[0].save(
            path, fmt, save_all=True, append_images=frames[1:], **({"lossless": True} if ext == "webp" else {})
        )
        EXPECTED_COLOUR[f"anim/anim.{ext}"] = (255, 0, 0)
    twin = encoded(solid((1, 100, 200), (30, 30)), "PNG")
    write(root / "dup/first.png", twin)
    write(root / "dup/second.png", twin)
    EXPECTED_COLOUR["dup/first.png"] = EXPECTED_COLOUR["dup/second.png"] = (1, 100, 200)

    names = ["with space.png", "ünïcode ✓.png", "tab\there.png", "new\nline.png", "back\\slash.PNG"]
    for name in names:
        save(solid((40, 50, 60), (12, 12)), root / "names" / name)
        EXPECTED_COLOUR[f"names/{name}"] = (40, 50, 60)
    write(root / fails("names/broken\twith tab.jpg"), b"garbage")
    save(solid((70, 70, 70), (12, 12)), root / "tricky" / "folder.jpg" / "inside.png")
    EXPECTED_COLOUR["tricky/folder.jpg/inside.png"] = (70, 70, 70)
    (root / "empty_class").mkdir()
    write(root / "tricky" / ".hidden.png", png)
    write(root / "tricky" / "._resource.jpg", b"\0\5\26\7")
    write(root / ".cache" / "thumb.png", png)
    os.symlink(root / "nowhere.png", root / "tricky" / "dangling.png")
    os.symlink(root / "tricky", root / "tricky" / "loop")


def digest_tree(root):
    """Every entry under root (hidden ones and links too), with its content or link target."""
    digest = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, root)
            if os.path.islink(path):
                digest[rel] = "link:" + os.readlink(path)
            elif os.path.isfile(path):
                with open(path, "rb") as handle:
                    digest[rel] = hashlib.sha256(handle.read()).hexdigest()
            else:
                digest[rel] = "dir"
    return digest


@pytest.fixture(scope="module")
def torture(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile")
    source = base / "src"
    make_tree(source)
    before = digest_tree(source)
    config = write_config(
        base / "config.yaml",
        source=str(source),
        extensions=EXTENSIONS,
        image={"size": [16, 16], "background": BG, "resize": "stretch"},
        shards={"target_images": 8, "min_images": 2},
        validate={"max_failure_fraction": 0.5},
    )
    workdir = base / "work"
    result = run_snakemake(workdir, config)
    return base, source, before, workdir, result


def load(workdir):
    with np.load(workdir / "results" / "dataset.npz") as data:
        return {key: data[key] for key in data}


def test_every_image_file_is_in_exactly_one_place(torture):
    _, source, _, workdir, _ = torture
    data = load(workdir)
    paths = data["paths"].tolist()
    failures = read_tsv(workdir / "results" / "failures.tsv", FAILURE_HEADER)
    failed = {row[0]: row for row in failures}
    visible = set()
    for folder, dirs, files in os.walk(source):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != "loop"]
        for name in files:
            path = os.path.join(folder, name)
            if not name.startswith(".") and name.lower().endswith(tuple(EXTENSIONS)) and os.path.isfile(path):
                visible.add(os.path.relpath(path, source).replace(os.sep, "/"))
    assert set(paths) | set(failed) == visible
    assert not set(paths) & set(failed)
    assert len(paths) == len(set(paths))
    for path, stage in EXPECTED_FAILURES.items():
        assert failed[path][1] == stage, failed.get(path)
        assert failed[path][2] and "\n" not in failed[path][2]
    assert "DecompressionBomb" in failed["junk/bomb.png"][2]
    assert not any(str(source) in row[2] for row in failures)
    assert "names/broken\twith tab.jpg" in failed
    assert not {"tricky/.hidden.png", "tricky/._resource.jpg", ".cache/thumb.png", "tricky/dangling.png"} & (
        set(paths) | set(failed)
    )


def test_pixels_of_every_readable_case(torture):
    data = load(torture[3])
    index = {path: row for row, path in enumerate(data["paths"].tolist())}
    for path, colour in EXPECTED_COLOUR.items():
        image = data["images"][index[path]].astype(int)
        assert np.abs(image - colour).max() <= 4, (path, image[8, 8])
    assert np.array_equal(data["images"][index["dup/first.png"]], data["images"][index["dup/second.png"]])
    for orientation in range(1, 9):
        image = data["images"][index[f"exif/orient_{orientation}.jpg"]].astype(int)
        assert image[2, 2, 0] > 180 and image[2, 2, 2] < 80, orientation  # red quadrant top-left
        assert image[-1, 8, 1] > 180, orientation  # green band at the bottom
    for path in ("modes/i16_gradient.png", "modes/int32.tif", "modes/float.tif"):
        row = data["images"][index[path]][8, :, 0].astype(int)
        assert row[0] < 20 and row[-1] > 235 and np.all(np.diff(row) >= 0), path
    assert "empty_class" not in data["classes"].tolist() and "names" in data["classes"].tolist()
    cmyk = data["images"][index["modes/cmyk.jpg"]][8, 8]
    assert cmyk[2] > 200 and cmyk[0] < 60
    assert "modes/ycck.jpg" in index
    for name in ("orientation_9", "orientation_0", "orientation_65535", "zero_denominator"):
        image = data["images"][index[f"badexif/{name}.jpg"]].astype(int)
        assert np.abs(image - (200, 120, 40)).max() <= 6, name


def test_broken_exif_never_takes_the_run_down(torture):
    _, _, _, workdir, _ = torture
    data = load(workdir)
    failed = {row[0]: row[1] for row in read_tsv(workdir / "results" / "failures.tsv", FAILURE_HEADER)}
    for name in ("bad_offset", "count_overflow"):
        path = f"badexif/{name}.jpg"
        assert path in data["paths"].tolist() or failed.get(path) == "exif", (path, failed.get(path))


def test_the_source_is_untouched_and_nothing_is_written_outside_results(torture):
    _, source, before, workdir, _ = torture
    assert digest_tree(source) == before
    assert sorted(os.listdir(workdir)) == [".snakemake", "results"]
    assert json.loads((workdir / "results" / "validation.json").read_text())["passed"] is True


def test_an_empty_tree_or_a_missing_source_stops_before_any_job(tmp_path):
    (tmp_path / "empty" / "class_a").mkdir(parents=True)
    (tmp_path / "empty" / "class_a" / "notes.txt").write_text("no images here")
    for source, words in ((tmp_path / "empty", "no images"), (tmp_path / "absent", "is not a directory")):
        config = write_config(tmp_path / "c.yaml", source=str(source))
        result = run_snakemake(tmp_path / "work", config, check=False)
        output = result.stdout + result.stderr
        assert result.returncode != 0 and "'source'" in output and words in output
        assert "index_images:" not in output and not (tmp_path / "work" / "results" / "index").exists()


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("image={size: [0, 16]}", "image.size"),
        ("image={resize: squash}", "image.resize"),
        ("image={dtype: int16}", "image.dtype"),
        ("shards={target_images: many}", "shards.target_images"),
        ("validate={max_failure_fraction: 1.5}", "validate.max_failure_fraction"),
        ("colour=red", "colour"),
        (None, "image.resize"),  # in the configfile itself
    ],
)
def test_bad_config_names_the_key_before_any_job(tmp_path, override, key):
    save(solid((1, 1, 1), (8, 8)), tmp_path / "src" / "a" / "x.png")
    in_file = {"image": {"resize": "squash"}} if override is None else {}
    config = write_config(tmp_path / "c.yaml", source=str(tmp_path / "src"), **in_file)
    result = run_snakemake(tmp_path / "work", config, *(("--config", override) if override else ()), check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and f"'{key}" in output
    assert not (tmp_path / "work" / "results").exists()


def test_labels_csv_with_unknown_and_missing_paths(tmp_path):
    for name in ("a.png", "b.png", "c.png"):
        save(solid((9, 9, 9), (8, 8)), tmp_path / "src" / name)
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label\na.png,cat\nb.png,dog\nghost.png,dog\nphantom.png,zebra\n")
    config = write_config(tmp_path / "c.yaml", source=str(tmp_path / "src"), labels=str(labels), image={"size": [8, 8]})
    run_snakemake(tmp_path / "work", config)
    data = load(tmp_path / "work")
    assert data["classes"].tolist() == ["cat", "dog"] and data["labels"].tolist() == [0, 1, -1]
    log = (tmp_path / "work" / "results" / "logs" / "index_images.log").read_text()
    assert "2 paths in" in log and "1 indexed images have no row" in log


def test_a_second_run_in_the_same_folder_is_refused_by_the_lock(tmp_path):
    rng = np.random.default_rng(3)
    for i in range(60):
        save(Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)), tmp_path / "src" / f"{i}.jpg")
    config = write_config(tmp_path / "c.yaml", source=str(tmp_path / "src"), shards={"target_images": 5})
    first = subprocess.Popen(
        snakemake_command(tmp_path / "work", config, cores=1),
        env=snakemake_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    locks = tmp_path / "work" / ".snakemake" / "locks"
    while first.poll() is None and not (locks.exists() and any(locks.iterdir())):
        time.sleep(0.01)  # polling for the first run's lock, not a fixed delay
    assert first.poll() is None, "the first run ended before the second one started"
    second = run_snakemake(tmp_path / "work", config, check=False)
    assert first.wait(timeout=300) == 0
    assert second.returncode != 0 and "lock" in (second.stdout + second.stderr).lower()
    assert (tmp_path / "work" / "results" / "dataset.npz").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
@pytest.mark.parametrize("room", ["for the shards, not the merge", "for almost nothing"])
def test_a_full_disk_fails_clearly_and_a_rerun_after_freeing_space_completes(tmp_path, room):
    rng = np.random.default_rng(5)
    for i in range(40):
        save(Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)), tmp_path / "src" / f"{i:02d}.png")
    config = write_config(
        tmp_path / "c.yaml",
        source=str(tmp_path / "src"),
        image={"size": [64, 64]},
        shards={"target_images": 10, "min_images": 2},
    )
    run_snakemake(tmp_path / "reference", config)
    reference = (tmp_path / "reference" / "results" / "dataset.npz").read_bytes()
    results = tmp_path / "work" / "results"
    results.mkdir(parents=True)
    size = 2 * len(reference) if room.startswith("for the shards") else 200_000
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(results)], check=True)
    try:
        failed = run_snakemake(tmp_path / "work", config, check=False)
        output = failed.stdout + failed.stderr
        assert failed.returncode != 0 and "no space left on the device while writing" in output
        for npz in results.glob("shards/*.npz"):
            with np.load(npz) as data:
                assert len(data["images"]) == len(data["paths"])
        assert not list(results.glob("**/.*.tmp"))
        subprocess.run(["mount", "-o", "remount,size=50m", str(results)], check=True)
        run_snakemake(tmp_path / "work", config, "--unlock")
        run_snakemake(tmp_path / "work", config)
        assert (results / "dataset.npz").read_bytes() == reference
    finally:
        subprocess.run(["umount", str(results)], check=False)
        shutil.rmtree(tmp_path / "work", ignore_errors=True)
