"""The workflow at 10^5 and 10^6 images on this machine: time per phase and peak memory per job kind.

For each size N (default 100,000 and 1,000,000) in one run:
  1. generate N distinct 64 x 48 JPEGs in 1,000 class folders (deterministic, smooth random
     colour fields, about 1 KB each; two processes), unless the tree is already there;
then for each layout (``layout: file``, results/dataset.npz, then ``layout: shards``,
results/dataset/), in a folder of its own:
  2. `snakemake --cores C` at `image.size [32, 32]` from an empty results/;
  3. a no-op rerun;
  4. add 1% more images, spread over every class folder (the commonest growth), and rerun; the
     tree then goes back to its N images.
Prints, per size, layout and run: wall time per phase (the walk, timed alone; the index job; the
shard jobs, their scripts' summed wall over C; merge; validate; Snakemake itself, the rest), the
images decoded, the bytes the whole run wrote (bench/throughput.py's run_counting_writes), and the
peak RSS of every job kind and of Snakemake's own process; then the growth of the file layout's
first build from the first size to the last, and the +1% rerun against the first build at the
largest size (issue 26 asks <= 0.05x of the shards layout); ``--out FILE`` also writes them to
FILE as Markdown (the committed bench/SCALE.md is one run with ``--out bench/SCALE.md``). Usage:
python bench/scale.py [--sizes 100000 1000000] [--cores 2] [--dir /tmp/img2npz-scale] [--out FILE]
"""

from __future__ import annotations

import argparse
import datetime
import io
import os
import platform
import re
import shutil
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from throughput import (  # noqa: E402
    add_out_option,
    job_wall,
    peak_rss,
    plugins_note,
    run_counting_writes,
    snakemake_command,
    write_report,
)

from img2npz.scan import scan_tree  # noqa: E402

CLASSES = 1000
LAYOUTS = ("file", "shards")
EXTENSIONS = [".jpg"]


def _picture(seed: int) -> bytes:
    """One distinct 64 x 48 JPEG: a 4 x 3 random colour field, smoothly enlarged, with fine noise."""
    rng = np.random.default_rng(seed)
    field = Image.fromarray(rng.integers(0, 256, (3, 4, 3), dtype=np.uint8), "RGB").resize((64, 48), Image.BILINEAR)
    pixels = np.asarray(field, np.int16) + rng.integers(-8, 9, (48, 64, 3))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB").save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def _write_share(job: tuple[str, int, int, int]) -> int:
    """Images ``start``, ``start + step``, ... below ``stop`` of the tree ``root``."""
    root, start, stop, step = job
    for number in range(start, stop, step):
        folder = Path(root) / f"class{number % CLASSES:04d}"
        folder.mkdir(exist_ok=True)
        (folder / f"img{number:08d}.jpg").write_bytes(_picture(number))
    return len(range(start, stop, step))


def make_tree(root: Path, start: int, stop: int, processes: int = 2) -> float:
    """Images ``start`` to ``stop`` (their numbers are their seeds) under ``root``; seconds taken."""
    began = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(processes) as pool:
        list(pool.map(_write_share, [(str(root), start + k, stop, processes) for k in range(processes)]))
    return time.perf_counter() - began


class PeakRss:
    """Snakemake's own peak RSS (VmHWM of its process, read while it runs), in MB."""

    def __init__(self, pid: int):
        self.pid, self.mb, self._stop = pid, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.2):
            try:
                status = Path(f"/proc/{self.pid}/status").read_text()
            except OSError:
                return
            match = re.search(r"VmHWM:\s+(\d+) kB", status)
            if match:
                self.mb = max(self.mb, int(match.group(1)) / 1024)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.mb


def snakemake(source: Path, work: Path, cores: int, layout: str) -> tuple[float, float, int]:
    """(seconds, Snakemake's peak RSS in MB, bytes the run wrote) of `snakemake --cores C` in ``work``."""
    config = (
        f"source: {source}\nlayout: {layout}\nextensions: ['.jpg']\nimage: {{size: [32, 32]}}\n"
        "validate: {samples: 16}\n"
    )
    command, env = snakemake_command(work, config, cores)
    watches = []
    seconds, written, status, errors = run_counting_writes(command, env, lambda pid: watches.append(PeakRss(pid)))
    rss = watches[0].stop()
    if status:
        raise SystemExit(f"snakemake failed in {work}:\n{errors[-3000:]}")
    return seconds, rss, written


def _changed_since(log: Path, since: float) -> bool:
    return log.exists() and log.stat().st_mtime >= since


def measure(source: Path, work: Path, cores: int, layout: str, label: str) -> dict:
    """One run and what its jobs' logs say (only the jobs that ran in it)."""
    began = time.time()
    seconds, snakemake_rss, written = snakemake(source, work, cores, layout)
    logs = work / "results" / "logs"
    shard_logs = [log for log in (logs / "preprocess_shard").glob("*.log") if _changed_since(log, began)]
    ran = {
        name: _changed_since(logs / f"{name}.log", began) for name in ("index_images", "merge_npz", "validate_report")
    }
    wall = {name: job_wall(logs / f"{name}.log") if done else 0.0 for name, done in ran.items()}
    rss = {name: peak_rss(logs / f"{name}.log") if done else float("nan") for name, done in ran.items()}
    shards = sum(job_wall(log) for log in shard_logs) / cores
    decoded = copied = 0
    table = work / "results" / "dataset.shards.tsv"  # shard, npz_mtime_ns, copied, decoded
    if shard_logs and table.exists():
        for line in table.read_text().splitlines()[1:]:
            shard, _, moved, fresh = line.split("\t")
            if _changed_since(work / "results" / "logs" / "preprocess_shard" / f"{shard}.log", began):
                copied, decoded = copied + int(moved), decoded + int(fresh)
    return {
        "label": label,
        "layout": layout,
        "seconds": seconds,
        "written": written,
        "index": wall["index_images"],
        "shards": shards,
        "shard_jobs": len(shard_logs),
        "merge": wall["merge_npz"],
        "validate": wall["validate_report"],
        "snakemake": seconds - wall["index_images"] - shards - wall["merge_npz"] - wall["validate_report"],
        "decoded": decoded,
        "copied": copied,
        "rss": {
            "snakemake": snakemake_rss,
            "index": rss["index_images"],
            "shard job": max((peak_rss(log) for log in shard_logs), default=float("nan")),
            "merge": rss["merge_npz"],
            "validate": rss["validate_report"],
        },
    }


def _remove_added(source: Path, images: int) -> None:
    """Take the +1% images (numbers ``images`` and up) out of the tree."""
    for number in range(images, images + images // 100):
        (source / f"class{number % CLASSES:04d}" / f"img{number:08d}.jpg").unlink(missing_ok=True)


def one_size(images: int, cores: int, folder: Path) -> tuple[float, float, list[dict]]:
    """(seconds to generate, seconds to walk, the three runs of each layout) at ``images``."""
    source = folder / f"tree-{images}"
    marker = source / ".complete"
    generated = 0.0
    if not marker.exists():
        shutil.rmtree(source, ignore_errors=True)
        generated = make_tree(source, 0, images)
        marker.write_text("")
    _remove_added(source, images)  # left by an interrupted run
    began = time.perf_counter()
    scan_tree(source, EXTENSIONS)
    walk = time.perf_counter() - began
    runs = []
    for layout in LAYOUTS:
        work = folder / f"work-{images}-{layout}"
        shutil.rmtree(work, ignore_errors=True)
        runs += [measure(source, work, cores, layout, name) for name in ("first build", "no-op rerun")]
        added = make_tree(source, images, images + images // 100)
        try:
            runs.append(measure(source, work, cores, layout, f"+1% ({images // 100:,} images)"))
        finally:  # the tree goes back to its N images for the next layout and bench run
            _remove_added(source, images)
        runs[-1]["generated"] = added
    return generated, walk, runs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/img2npz-scale"))
    add_out_option(parser, "SCALE.md")
    return parser.parse_args(argv)


def run_bench(args: argparse.Namespace) -> str:
    """Runs every size, printing its figures as they come, and returns them all as Markdown."""
    table = [
        "| images | layout | run | seconds | walk | index | shard jobs | merge | validate | Snakemake | decoded | "
        "written MB |"
    ]
    table.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    memory = [
        "| images | layout | run | Snakemake | index | shard job (largest) | merge | validate |",
        "|---|---|---|---|---|---|---|---|",
    ]
    firsts = {}
    reruns: dict[int, dict[str, float]] = {}  # per size and layout: the +1% rerun / the first build
    for images in args.sizes:
        generated, walk, runs = one_size(images, args.cores, args.dir)
        print(f"{images:,} images: generated in {generated:.0f} s, walked in {walk:.1f} s", flush=True)
        for run in runs:
            shard_note = f"{run['shards']:.1f} ({run['shard_jobs']} jobs)"
            table.append(
                f"| {images:,} | {run['layout']} | {run['label']} | {run['seconds']:.1f} | "
                f"{walk if run is runs[0] else 0:.1f} | {run['index']:.1f} | {shard_note} | {run['merge']:.1f} | "
                f"{run['validate']:.1f} | {run['snakemake']:.1f} | {run['decoded']:,} | {run['written'] / 2**20:,.0f} |"
            )
            rss = run["rss"]
            memory.append(
                f"| {images:,} | {run['layout']} | {run['label']} | "
                + " | ".join(f"{rss[kind]:.0f} MB" for kind in ("snakemake", "index", "shard job", "merge", "validate"))
                + " |"
            )
            print(table[-1], "\n", memory[-1], flush=True)
        firsts[images] = runs[0]
        reruns[images] = {
            run["layout"]: run["seconds"] / first["seconds"]
            for first in runs
            if first["label"] == "first build"
            for run in runs
            if run["layout"] == first["layout"] and run["label"].startswith("+1%")
        }
    growth = []
    if len(firsts) > 1:
        small, large = firsts[min(firsts)], firsts[max(firsts)]
        factor = max(firsts) / min(firsts)
        growth.append(f"From {min(firsts):,} to {max(firsts):,} images ({factor:.0f}x), first build (layout file):")
        for kind in ("snakemake", "index", "shard job", "merge", "validate"):
            growth.append(
                f"- {kind}: peak RSS {small['rss'][kind]:.0f} -> {large['rss'][kind]:.0f} MB "
                f"({large['rss'][kind] / small['rss'][kind]:.2f}x)"
            )
        for phase in ("seconds", "index", "shards", "merge", "validate", "snakemake"):
            per = (large[phase] / max(firsts)) / max(small[phase] / min(firsts), 1e-9)
            growth.append(f"- {phase}: {small[phase]:.1f} -> {large[phase]:.1f} s ({per:.2f}x per image)")
    largest = max(reruns)
    target = (
        f"Issue 26, done when: at {largest:,} images the shards layout's +1% rerun is <= 0.05x of its first "
        f"build; this run: {reruns[largest].get('shards', float('nan')):.3f}x (the file layout: "
        f"{reruns[largest].get('file', float('nan')):.3f}x)."
    )
    growth += ["", target]
    print("\n".join(growth))
    machine = f"{platform.node()}, {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    return (
        "# Scale (generated by bench/scale.py)\n\n"
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {machine}, --cores {args.cores}, "
        f"64 x 48 JPEGs in 1,000 folders, image.size [32, 32]. {plugins_note()}\n\n"
        "Wall seconds per phase (shard jobs: their scripts' summed wall / cores; Snakemake: the rest, "
        "its own scheduling, job start-up and the walk it does at parse time; written: the bytes the whole run "
        "wrote, Snakemake and every job):\n\n"
        + "\n".join(table)
        + "\n\nPeak RSS per job kind:\n\n"
        + "\n".join(memory)
        + "\n\n"
        + "\n".join(growth)
        + "\n"
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    write_report(run_bench(args), args.out)


if __name__ == "__main__":
    main()
