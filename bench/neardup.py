"""Near-duplicates: what the rule catches (row hashes and crops), what it costs, and the searches
at scale.

Each figure is measured in this one run:

* ``quality``: ``--scenes`` generated scenes (``bench/scenes.py``), each with the edits of
  :data:`scenes.VARIANTS` that are not crops and with crops of 2, 5, 8, 10 and 15% at a corner, a
  side and the centre (the corner and side turn with the scene), all saved as JPEG q90 and
  decoded by the workflow's own decoder at ``--size`` and ``--resize``. The rule
  (:mod:`img2npz.nearrule`, at the config's defaults) is run over all of them as validate runs
  it: per edit the share paired with its original (by the row hashes alone, and with crops), the
  distances that decide it, and every pair of two distinct scenes (false pairs, per 10^4 images);
* ``demo``: the demo's painters, every pair: how many distinct pictures of one kind of scene the
  row hashes flag (hash alone, with the colour check) and the crop search (without and with the
  ``field_quality`` floor);
* ``cost``: the hashes' share of a real shard job's time (their functions timed inside the job);
* ``search``: the row-hash search (:func:`img2npz.neardup.near_pairs`) and the crop search
  (:func:`img2npz.cropsearch.crop_pairs`, field hashes read from a file as validate reads them)
  on ``--search`` random hashes with 1,000 planted pairs at 0..24 bits, each in a fresh process:
  time, peak memory over what the process held before, and whether exactly the planted pairs came
  back.

Usage: python bench/neardup.py [--scenes 1000] [--size 256] [--resize center-crop]
[--search 1000000] [--parts quality,demo,cost,search] [--rounds 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import multiprocessing
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from scenes import CAUGHT, VARIANTS, crop, scene

from img2npz import cropcheck, cropsearch, fieldhash, fingerprint, neardup, nearrule
from img2npz.config import validate_config
from img2npz.contract import MANIFEST_HEADER
from img2npz.decode import load_image
from img2npz.demo import make_demo_tree
from img2npz.nearrule import HashColumns, NearRule
from img2npz.preprocess import process_shard
from img2npz.tsv import write_tsv

DEFAULTS = validate_config({})["validate"]
RULE = NearRule(
    DEFAULTS["near_duplicate_bits"],
    DEFAULTS["near_duplicate_crop_bits"],
    DEFAULTS["min_hash_quality"],
    DEFAULTS["min_field_quality"],
)
EDITS = [name for name in VARIANTS if not name.startswith("crop")]
CROP_SHARES = (2, 5, 8, 10, 15)
PLACES = ("corner", "side", "centre")
KINDS = ["original", *EDITS, *(f"crop{share}_{place}" for share in CROP_SHARES for place in PLACES)]
# what the defaults are meant to catch (README, "Near-duplicates"); the 15% crops are measured too
MEANT = {*CAUGHT, *(f"crop{share}_{place}" for share in CROP_SHARES[:-1] for place in PLACES)}


def _cropped(image, share: int, place: str, number: int):
    """``share`` % cut off: at one corner or one side (which turns with ``number``), or around."""
    keep = 1 - share / 100
    turn = number % 4
    if place == "corner":
        return crop(image, keep, keep, turn % 2, turn // 2)
    if place == "side":
        return crop(image, keep, 1.0, turn % 2, 0.0) if turn < 2 else crop(image, 1.0, keep, 0.0, turn % 2)
    return crop(image, keep, keep, 0.5, 0.5)


def _hashed(image, size: int, resize: str) -> tuple:
    """An image saved as JPEG q90 and read back as a shard job reads it: its row hash, hash
    quality, mean colour, field hashes, field quality, source size and its row box-reduced to
    what the crops' check compares (:data:`img2npz.cropcheck.SIDE`, not to hold 23,000 rows)."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    buffer.seek(0)
    fields = []
    row = load_image(
        buffer, (size, size), resize, field=lambda full: fields.append((fieldhash.thumbnail(full), full.size))
    )
    counts = np.asarray(row.histogram(), np.int64).reshape(3, 256)
    found, hash_quality = fingerprint.hashes_and_quality(fingerprint.thumbnail(row)[None])
    windows, field_quality = fieldhash.hashes_and_quality(fields[0][0])
    small = np.asarray(row.resize((cropcheck.SIDE, cropcheck.SIDE), Image.Resampling.BOX))
    colour = fingerprint.mean_rgb(counts[None])[0]
    return found[0], hash_quality[0], colour, windows, field_quality, np.array(fields[0][1]), small


def _scene_rows(job: tuple[int, int, str]) -> list[tuple]:
    """Every kind of :data:`KINDS` of scene ``number``, hashed."""
    number, size, resize = job
    rng = np.random.default_rng([17, number])
    shape = (int(rng.integers(440, 560)), int(rng.integers(330, 420)))
    original = scene(rng, shape if rng.random() < 0.8 else shape[::-1])
    images = [original, *(VARIANTS[name](original) for name in EDITS)]
    images += [_cropped(original, share, place, number) for share in CROP_SHARES for place in PLACES]
    return [_hashed(image, size, resize) for image in images]


def _columns(rows: list[tuple], size: int, resize: str) -> tuple[HashColumns, np.ndarray]:
    hashes, quality, colours, fields, field_quality, sizes, small = (
        np.stack([row[k] for row in rows]) for k in range(7)
    )
    columns = HashColumns(
        hashes,
        colours,
        quality,
        field_quality.astype(np.uint8),
        cropsearch.window_reader(fields),
        sizes=sizes,
        pixels=lambda asked: small[asked],
        placement=((size, size), resize),
    )
    return columns, fields


def quality(scenes: int, size: int, resize: str, first: int = 0) -> None:
    with multiprocessing.get_context("spawn").Pool(os.cpu_count()) as pool:
        jobs = [(first + n, size, resize) for n in range(scenes)]
        rows = [row for rows in pool.map(_scene_rows, jobs) for row in rows]
    columns, fields = _columns(rows, size, resize)
    kinds = len(KINDS)
    print(
        f"quality: {scenes} scenes (from number {first}) at {size}x{size} {resize}, {kinds - 1} edits each,"
        f" {len(rows):,} images;"
        f" the rule at the defaults: {RULE}"
    )
    rules = {"rows": NearRule(RULE.bits, None, RULE.min_quality), "rule": RULE}
    found = {}
    for name, rule in rules.items():
        first, second, _ = nearrule.pairs(rule, columns)
        found[name] = (first, second)
    # the crop pairs as the field hashes and colours give them, before their rows' pixels are compared
    found["rule, no pixel check"] = nearrule.pairs(RULE, dataclasses.replace(columns, pixels=None))[:2]
    planted_pairs = {(2 * n, 2 * n + 1) for n in range(scenes)}  # in a subset of originals and one edit
    scene_of = np.arange(len(rows)) // kinds
    low_hash = (columns.quality < RULE.min_quality).reshape(scenes, kinds)
    originals = np.arange(0, len(rows), kinds)
    rows_apart = neardup.distances(columns.hashes[originals][:, None], columns.hashes.reshape(scenes, kinds, -1))
    crop_apart = neardup.distances(fields[:, None, 0].reshape(scenes, kinds, 1, -1), fields[originals][:, None, 1:])
    crop_apart = crop_apart.min(axis=2)
    print(
        f"  {'edit':14} {'row bits max/median':>20} {'crop bits max/median':>21} {'low hash q':>10}"
        f" {'rows alone':>10} {'rule':>7}"
    )
    for kind in range(1, kinds):
        # each edit among the originals alone (a tree of photos and one copy each): the search
        # returns pairs enough to join its groups, so among all edits a copy may be joined through
        # another copy of its photo and not be a pair itself
        these = np.sort(np.concatenate([originals, originals + kind]))
        caught = {}
        for name, rule in rules.items():
            first, second, _ = nearrule.pairs(rule, columns.subset(these))
            caught[name] = len(set(zip(first.tolist(), second.tolist(), strict=True)) & planted_pairs) / scenes
        row, cut = rows_apart[:, kind], crop_apart[:, kind]
        mark = "  (meant to be caught)" if KINDS[kind] in MEANT else ""
        print(
            f"  {KINDS[kind]:14} {row.max():9d} / {np.median(row):5.1f}    {cut.max():9d} / {np.median(cut):5.1f}"
            f"    {low_hash[:, kind].mean():9.1%}  {caught['rows']:8.1%} {caught['rule']:7.1%}{mark}"
        )
    originals_only = np.arange(len(rows)) % kinds == 0
    for name, (first, second) in found.items():
        apart = scene_of[first] != scene_of[second]
        among = int((apart & originals_only[first] & originals_only[second]).sum())
        print(f"  {name}: {among} pairs among the {scenes} distinct scenes ({among / scenes * 1e4:.2f} per 10^4)")
        false = int(apart.sum())
        rate = false / len(rows) * 1e4
        print(f"  {name}: {false} pairs of two scenes among all {len(rows):,} images ({rate:.2f} per 10^4)")
    wholes, windows = fields[originals, 0], fields[originals, 1:]
    nearest = np.concatenate(
        [neardup.distances(wholes[at : at + 50, None, None], windows[None]).min(axis=2) for at in range(0, scenes, 50)]
    )
    np.fill_diagonal(nearest, 999)
    apart = nearest[~np.eye(scenes, dtype=bool)]
    low = np.flatnonzero(columns.field_quality[originals] < RULE.min_field_quality)
    print(
        f"  distinct scenes, whole field to the nearest window of another ({len(apart):,} ordered pairs):"
        f" min {apart.min()}, 0.1st percentile {np.percentile(apart, 0.1):.0f}, 1st {np.percentile(apart, 1):.0f};"
        f" fields under min_field_quality {RULE.min_field_quality}: {len(low)} of {scenes};"
        f" hashes under min_hash_quality: {(columns.quality[originals] < RULE.min_quality).sum()}"
    )


def demo_pairs(size: int, resize: str, per_class: int = 200) -> None:
    """The demo's painters at ``per_class`` images a class: distinct pictures of one kind of scene
    (stripes, rings, sunsets...), the hard case for a perceptual hash."""
    with tempfile.TemporaryDirectory() as folder:
        make_demo_tree(folder, per_class=per_class)
        files = sorted(path for path in Path(folder).rglob("*.*") if not path.name.startswith("broken"))
        rows = [_hashed(Image.open(path).convert("RGB"), size, resize) for path in files]
    columns, _ = _columns(rows, size, resize)
    hashes, colours = columns.hashes, columns.colours
    first, second = np.triu_indices(len(files), 1)
    apart = neardup.distances(hashes[first], hashes[second])
    alike = neardup.colour_apart(colours[first], colours[second]) <= neardup.COLOUR_TOLERANCE
    print(f"demo painters: {len(files)} distinct images, {len(apart):,} pairs; row hashes (hash alone / with colour):")
    print("  " + "  ".join(f"<={t}: {(apart <= t).sum()} / {((apart <= t) & alike).sum()}" for t in (16, 24, 32)))
    classes = np.array([path.parent.name for path in files])
    for floor in (0, RULE.min_field_quality):
        rule = NearRule(RULE.bits, RULE.crop_bits, RULE.min_quality, floor)
        found_first, _, _ = nearrule.pairs(rule, columns)
        by_class = {name: int((classes[found_first] == name).sum()) for name in np.unique(classes)}
        print(f"  the rule with crops, min_field_quality {floor}: {len(found_first)} pairs {by_class}")
    quality = columns.field_quality
    spread = []
    for name in np.unique(classes):
        mine = quality[classes == name]
        spread.append(f"{name} {mine.min()}/{np.median(mine):.0f}/{mine.max()}")
    print("  field_quality by class (min/median/max): " + ", ".join(spread))


def _manifest(root: Path, images: int) -> Path:
    for number in range(images):
        rng = np.random.default_rng([23, number])
        scene(rng, (int(rng.integers(440, 560)), int(rng.integers(330, 420)))).save(root / f"{number}.jpg", quality=90)
    rows = [(path.name, path.stat().st_size, path.stat().st_mtime_ns, "") for path in sorted(root.glob("*.jpg"))]
    manifest = root / "manifest.tsv"
    write_tsv(manifest, MANIFEST_HEADER, rows)
    return manifest


def cost(size: int, resize: str, images: int = 300, rounds: int = 5) -> None:
    """The hashes' share of a real shard job: their functions timed inside the job (wall time: a
    call waits on the job's other threads too), and the job's CPU time with the field hashes and
    without them (stand-ins that return a hash at once), the two kinds of job taking turns."""
    pixel = {"size": [size, size], "resize": resize, "dtype": "uint8", "background": [255, 255, 255], "normalize": None}
    timed_functions = {
        "thumbnail": (fingerprint, "thumbnail"),
        "hash": (fingerprint, "hashes_and_quality"),
        "mean_rgb": (fingerprint, "mean_rgb"),
        "field thumbnail": (fieldhash, "thumbnail"),
        "field hashes": (fieldhash, "hashes_and_quality"),
    }
    spent = dict.fromkeys(timed_functions, 0.0)
    real = {name: getattr(module, function) for name, (module, function) in timed_functions.items()}
    blank = np.zeros((fieldhash.SIDE, fieldhash.SIDE, 3), np.uint8)
    blank_hashes = real["field hashes"](blank)
    stand_ins = {"field thumbnail": lambda image: blank, "field hashes": lambda thumb: blank_hashes}

    def timed(name: str):
        def call(*args):
            start = time.perf_counter()
            try:
                return real[name](*args)
            finally:
                spent[name] += time.perf_counter() - start

        return call

    def use(field_hashes: bool) -> None:
        for name, (module, function) in timed_functions.items():
            plain = field_hashes or name not in stand_ins
            setattr(module, function, timed(name) if plain else stand_ins[name])

    cpu = {True: 0.0, False: 0.0}
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        manifest = _manifest(root, images)
        out = (root / "out" / "s.npz", root / "out" / "s.tsv")
        process_shard(manifest, root, pixel, *out)  # warm the page cache
        try:
            for _ in range(rounds):
                for field_hashes in (True, False):
                    use(field_hashes)
                    start = time.process_time()
                    process_shard(manifest, root, pixel, *out)
                    cpu[field_hashes] += time.process_time() - start
                    if field_hashes:
                        timed_spent = dict(spent)
        finally:
            for name, (module, function) in timed_functions.items():
                setattr(module, function, real[name])
    count = images * rounds
    spent = timed_spent
    row = sum(spent[name] for name in ("thumbnail", "hash", "mean_rgb"))
    field = spent["field thumbnail"] + spent["field hashes"]
    parts = ", ".join(f"{name} {seconds / count * 1e6:.1f} us" for name, seconds in spent.items())
    print(
        f"cost at {size}x{size} {resize}: a shard job's CPU {cpu[True] / count * 1e3:.3f} ms an image with the field"
        f" hashes, {cpu[False] / count * 1e3:.3f} ms without: they add {cpu[True] / cpu[False] - 1:.1%};"
        f" timed inside the job: the row hash {row / count * 1e6:.1f} us, the field hashes"
        f" {field / count * 1e6:.1f} us ({parts})"
    )


def _planted(rng: np.random.Generator, count: int, planted: int, most: int) -> tuple[np.ndarray, np.ndarray]:
    chosen = rng.choice(count, 2 * planted, replace=False)
    return chosen[:planted], chosen[planted:]


def _flip(rng: np.random.Generator, packed: np.ndarray, most: int) -> np.ndarray:
    bits = np.unpackbits(packed)
    bits[rng.choice(bits.size, int(rng.integers(0, most + 1)), replace=False)] ^= 1
    return np.packbits(bits)


def _memory() -> tuple[int, int]:
    """(resident, peak resident) of this process in MB: /proc's, as getrusage's peak carries the
    parent's over a spawn's exec."""
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return int(status["VmRSS"].split()[0]) // 1024, int(status["VmHWM"].split()[0]) // 1024


def _report(name: str, want: set, got: set, seconds: float, before: int, note: str) -> dict:
    peak = _memory()[1]
    print(
        f"  {name}: {seconds:.1f} s, peak RSS {peak} MB, {peak - before} MB over the {before} MB before;"
        f" planted found {len(want & got)}/{len(want)}, others {len(got - want)}; {note}"
    )
    return {"seconds": seconds, "memory": peak - before}


def _row_search(count: int, planted: int, most: int) -> dict:
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 256, (count, fingerprint.BYTES), dtype=np.uint8)
    first, second = _planted(rng, count, planted, most)
    for one, other in zip(first, second, strict=True):
        hashes[other] = _flip(rng, hashes[one], most)
    before = _memory()[0]
    start = time.perf_counter()
    found_first, found_second = neardup.near_pairs(hashes, RULE.bits)
    seconds = time.perf_counter() - start
    want = set(zip(np.minimum(first, second).tolist(), np.maximum(first, second).tolist(), strict=True))
    got = set(zip(found_first.tolist(), found_second.tolist(), strict=True))
    note = f"{neardup.chunk_count(count, RULE.bits)} chunks, all pairs would be {count * (count - 1) // 2:.2e}"
    return _report(f"row hashes within {RULE.bits}", want, got, seconds, before, note)


def _crop_search(path: str, count: int, planted: int, most: int) -> dict:
    """The crop search over the field hashes in ``path`` (raw (count, WINDOWS, BYTES)), read in
    spans with pread as validate reads dataset.npz; the planted pairs are written here."""
    rng = np.random.default_rng(1)
    size = fieldhash.WINDOWS * fieldhash.BYTES
    first, second = _planted(rng, count, planted, most)
    with open(path, "r+b") as handle:
        for one, other in zip(first, second, strict=True):
            window = int(rng.integers(1, fieldhash.WINDOWS))
            read = os.pread(handle.fileno(), fieldhash.BYTES, int(one) * size + window * fieldhash.BYTES)
            os.pwrite(handle.fileno(), _flip(rng, np.frombuffer(read, np.uint8), most).tobytes(), int(other) * size)

    def windows(rows: np.ndarray) -> np.ndarray:
        low, high = int(rows[0]), int(rows[-1]) + 1
        with open(path, "rb") as handle:
            span = os.pread(handle.fileno(), (high - low) * size, low * size)
        return np.frombuffer(span, np.uint8).reshape(high - low, fieldhash.WINDOWS, fieldhash.BYTES)[rows - low]

    start = time.perf_counter()
    columns = HashColumns(np.zeros((count, 0), np.uint8), None, None, None, windows)
    wholes = columns.wholes()  # the search's input, as the hashes are the row search's
    before = _memory()[0]
    found_first, found_second, _ = cropsearch.crop_pairs(wholes, windows, RULE.crop_bits)
    seconds = time.perf_counter() - start
    want = set(zip(np.minimum(first, second).tolist(), np.maximum(first, second).tolist(), strict=True))
    got = set(zip(found_first.tolist(), found_second.tolist(), strict=True))
    note = f"chunks {len(cropsearch.chunk_bounds(count)) - 1}, windows read {os.path.getsize(path) / 2**30:.2f} GiB"
    return _report(f"crops within {RULE.crop_bits}", want, got, seconds, before, note)


def search(count: int, planted: int = 1000, most: int = 24) -> None:
    """Each search in a fresh process, so that its peak memory is its own."""
    print(f"search: {count:,} random hashes, {planted} planted pairs at 0..{most} bits each")
    spawn = multiprocessing.get_context("spawn")
    with spawn.Pool(1, maxtasksperchild=1) as pool:
        rows = pool.apply(_row_search, (count, planted, most))
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "fields.raw")
        rng = np.random.default_rng(2)
        with open(path, "wb") as handle:
            for start in range(0, count, 65536):
                part = min(65536, count - start)
                handle.write(rng.integers(0, 256, (part, fieldhash.WINDOWS, fieldhash.BYTES), dtype=np.uint8).tobytes())
        with spawn.Pool(1, maxtasksperchild=1) as pool:
            crops = pool.apply(_crop_search, (path, count, planted, most))
    print(
        f"  the crop search takes {crops['seconds'] / rows['seconds']:.2f}x the row search's time and"
        f" {crops['memory'] / rows['memory']:.2f}x its memory (budget: 3x and 2x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=1000)
    parser.add_argument("--first", type=int, default=0, help="the first scene's number (other scenes: held out)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--resize", default="center-crop")
    parser.add_argument("--search", type=int, default=1_000_000, help="random hashes to search")
    parser.add_argument("--parts", default="quality,demo,cost,search", help="which figures, comma-separated")
    parser.add_argument("--rounds", type=int, default=5, help="shard jobs timed for the cost figure")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if "quality" in parts:
        quality(args.scenes, args.size, args.resize, args.first)
    if "demo" in parts:
        demo_pairs(args.size, args.resize)
    if "cost" in parts:
        cost(args.size, args.resize, rounds=args.rounds)
    if "search" in parts:
        search(args.search)


if __name__ == "__main__":
    main()
