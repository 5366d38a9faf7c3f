"""Index at scale: a tree of 10^6 empty image files, indexed and re-checked through real Snakemake.

Prints: index run time, no-op rerun time, full dry-run time, the index job's peak RSS, the number of
shards, and how often the tree was walked (and by which process). The files are empty: the index must
never open them. Usage: python bench/index_scale.py [--files 1000000] [--dir /tmp/img2npz-scale]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def make_tree(root: Path, files: int, per_folder: int = 1000) -> None:
    marker = root / f".complete-{files}"
    if marker.exists():
        return
    for number in range(files):
        folder = root / f"class{number // per_folder:04d}"
        if number % per_folder == 0:
            folder.mkdir(parents=True, exist_ok=True)
        os.close(os.open(folder / f"img{number:07d}.jpg", os.O_CREAT | os.O_WRONLY, 0o644))
    marker.touch()


def snakemake(workdir: Path, config: Path, scan_log: Path, *args: str) -> tuple[float, str]:
    env = dict(os.environ, IMG2NPZ_SCAN_LOG=str(scan_log))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    command = [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--configfile", str(config), *args]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    if result.returncode:
        sys.exit(f"snakemake failed:\n{result.stderr[-3000:]}")
    return elapsed, result.stdout + result.stderr


def scans(scan_log: Path) -> list[str]:
    lines = scan_log.read_text().splitlines() if scan_log.exists() else []
    scan_log.unlink(missing_ok=True)
    return ["index job" if "index_images" in line else "main process" for line in lines]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/img2npz-scale"))
    parser.add_argument("--full", action="store_true", help="also run every job once, then time a whole no-op rerun")
    args = parser.parse_args()
    tree, work, scan_log = args.dir / "tree", args.dir / "work", args.dir / "scans.log"
    start = time.perf_counter()
    make_tree(tree, args.files)
    print(f"tree of {args.files:,} empty files ready in {time.perf_counter() - start:.1f} s")
    config = args.dir / "config.yaml"
    config.write_text(f"source: {tree}\nvalidate: {{max_failure_fraction: 1.0}}\n")
    subprocess.run(["rm", "-rf", str(work)], check=True)
    target = ["--cores", "2", "results/index/classes.tsv"]

    index_s, _ = snakemake(work, config, scan_log, *target)
    index_scans = scans(scan_log)
    index_log = (work / "results" / "logs" / "index_images.log").read_text()
    index_rss = float(re.search(r"peak RSS of this job: ([\d.]+) MB", index_log).group(1))
    shards = len(list((work / "results" / "index" / "shards").glob("*.tsv")))
    noop_s, noop_out = snakemake(work, config, scan_log, *target)
    noop_scans = scans(scan_log)
    dry_s, dry_out = snakemake(work, config, scan_log, "--cores", "2", "-n")
    dry_scans = scans(scan_log)
    planned = re.search(r"preprocess_shard\s+(\d+)", dry_out)
    children_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if args.full:
        full_s, _ = snakemake(work, config, scan_log, "--cores", "2", "--quiet")
        scans(scan_log)
        whole_noop_s, whole_out = snakemake(work, config, scan_log, "--cores", "2")
        whole_scans = scans(scan_log)

    print(f"{'files':<38}{args.files:,}")
    print(f"{'shards (manifests)':<38}{shards}")
    print(f"{'index from scratch (wall, s)':<38}{index_s:.1f}   walks: {', '.join(index_scans)}")
    print(f"{'index job peak RSS (MB)':<38}{index_rss:.0f}")
    print(
        f"{'no-op rerun of the index (wall, s)':<38}{noop_s:.1f}   walks: {', '.join(noop_scans)}"
        f"   nothing to be done: {'Nothing to be done' in noop_out}"
    )
    print(
        f"{'dry run of the whole workflow (s)':<38}{dry_s:.1f}   walks: {', '.join(dry_scans)}"
        f"   preprocess jobs planned: {planned.group(1) if planned else '?'}"
    )
    print(f"{'largest process peak RSS (MB)':<38}{children_rss:.0f}")
    if args.full:
        print(f"{'every job once (s)':<38}{full_s:.0f}")
        print(
            f"{'no-op rerun of the whole workflow (s)':<38}{whole_noop_s:.1f}   walks: {', '.join(whole_scans)}"
            f"   nothing to be done: {'Nothing to be done' in whole_out}"
        )


if __name__ == "__main__":
    main()
