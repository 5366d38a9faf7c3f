"""What a rerun costs after the tree changed, against a full build measured in the same run.

On a bench tree (bench/corpus.py, default 20,000 photos in 100 class folders), with C cores:
  1. a full build from scratch;
  2. 1% new images spread over every class folder, named between the existing ones
     (``img0001234.jpg`` gains ``img0001234b.jpg``), then the rerun;
  3. a full build of the grown tree in a fresh folder: its dataset.npz must be the rerun's bytes;
  4. more reruns on the same folder: 0.1% and 10% new images spread the same way, a new class folder
     of 1%, and 1% of the images deleted; then a last fresh build, again compared byte for byte.
For each rerun: wall time and its ratio to the full build (1.), images decoded and reused and shards
rebuilt (counted from the shard jobs' logs of that run), and the time by phase (each job's own
script time; the shard jobs' sum is divided by C; "rest" is Snakemake and job start-up).
Prints the figures (``--out FILE`` also writes them to FILE; the committed bench/INCREMENTAL.md is
one run with ``--out bench/INCREMENTAL.md``); exits with an error when a rerun decoded other than
the added images, or its dataset.npz differs from the fresh build's. Usage:
python bench/incremental.py [--images 20000] [--classes 100] [--cores 2] [--dir /tmp/img2npz-incremental]
[--out FILE]
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from corpus import make_corpus, write_image  # noqa: E402
from throughput import add_out_option, job_wall, run_snakemake, write_report  # noqa: E402

SHARD_LOG = re.compile(r": (\d+) images \((\d+) reused, (\d+) decoded\), (\d+) failures")


def run_account(work: Path, since: float, cores: int, seconds: float) -> dict:
    """What the run that started at ``since`` (epoch seconds) did, from the logs its jobs wrote."""
    logs = work / "results" / "logs"
    fresh = [log for log in (logs / "preprocess_shard").glob("*.log") if log.stat().st_mtime >= since]
    counts = np.zeros(4, np.int64)
    for log in fresh:
        match = SHARD_LOG.search(log.read_text())
        counts += [int(group) for group in match.groups()] if match else 0

    def wall(log: Path) -> float:
        return job_wall(log) if log.exists() and log.stat().st_mtime >= since else 0.0

    index, merge, validate = (wall(logs / f"{name}.log") for name in ("index_images", "merge_npz", "validate_report"))
    shards = sum(job_wall(log) for log in fresh) / cores
    return {
        "seconds": seconds,
        "rebuilt": len(fresh),
        "shards": len(list((work / "results" / "shards").glob("*.npz"))),
        "images": int(counts[0]),
        "reused": int(counts[1]),
        "decoded": int(counts[2]),
        "phases": f"index {index:.1f}, shard jobs {shards:.1f}, merge {merge:.1f}, validate {validate:.1f}, "
        f"rest {seconds - index - shards - merge - validate:.1f}",
    }


def sha(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(16 << 20):
            digest.update(block)
    return digest.hexdigest()


def images_of(tree: Path) -> list[Path]:
    return sorted(p for p in tree.rglob("*") if p.is_file() and not p.name.startswith("."))


def add_between(tree: Path, fraction: float, rng: np.random.Generator, tag: str) -> int:
    """New images named right after randomly chosen existing ones, in every class folder."""
    existing = [p for p in images_of(tree) if re.fullmatch(r"img\d{7}", p.stem)]
    chosen = rng.choice(len(existing), size=max(1, round(len(existing) * fraction)), replace=False)
    for number in sorted(chosen.tolist()):
        path = existing[number]
        painter = re.sub(r"\d+$", "", path.parent.name)
        write_image(path.with_name(f"{path.stem}{tag}"), painter, np.random.default_rng([number, ord(tag)]))
    return len(chosen)


def add_folder(tree: Path, count: int) -> int:
    folder = tree / "zz-new-class"
    folder.mkdir(exist_ok=True)
    for number in range(count):
        write_image(folder / f"img{number:07d}", "rings", np.random.default_rng([number, 7]))
    return count


def delete_some(tree: Path, fraction: float, rng: np.random.Generator) -> int:
    existing = images_of(tree)
    chosen = rng.choice(len(existing), size=max(1, round(len(existing) * fraction)), replace=False)
    for number in chosen.tolist():
        existing[number].unlink()
    return len(chosen)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/img2npz-incremental"))
    add_out_option(parser, "INCREMENTAL.md")
    return parser.parse_args(argv)


def run_bench(args: argparse.Namespace) -> tuple[str, list[str]]:
    """Runs every build and rerun; returns the table as Markdown and what went wrong, if anything."""
    corpus = make_corpus(args.dir / f"corpus-{args.images}-{args.classes}", args.images, args.classes)
    tree, work = args.dir / "tree", args.dir / "work"
    for path in (tree, work, args.dir / "fresh"):
        shutil.rmtree(path, ignore_errors=True)
    subprocess.run(["cp", "-al", str(corpus), str(tree)], check=True)  # hard links: adding files is safe
    rng = np.random.default_rng(0)

    full = run_snakemake(tree, work, args.cores)
    rows = [("full build from scratch", len(images_of(tree)), run_account(work, 0, args.cores, full))]
    identical, problems = [], []

    def rerun(what: str, change, decodes_added: bool = True) -> None:
        changed = change()
        since = time.time()
        seconds = run_snakemake(tree, work, args.cores)
        account = run_account(work, since, args.cores, seconds)
        rows.append((what, changed, account))
        expected = changed if decodes_added else 0
        if account["decoded"] != expected:
            problems.append(f"{what}: {account['decoded']} images decoded, expected {expected}")

    def compare_fresh(what: str) -> None:
        fresh = args.dir / "fresh"
        shutil.rmtree(fresh, ignore_errors=True)
        seconds = run_snakemake(tree, fresh, args.cores)
        account = run_account(fresh, 0, args.cores, seconds)
        rows.append((f"full build of the {what} tree", len(images_of(tree)), account))
        identical.append((what, sha(fresh / "results" / "dataset.npz") == sha(work / "results" / "dataset.npz")))
        shutil.rmtree(fresh)

    rerun("+1% in every class folder", lambda: add_between(tree, 0.01, rng, "b"))
    compare_fresh("+1%")
    rerun("+0.1% in every class folder", lambda: add_between(tree, 0.001, rng, "c"))
    rerun("+10% in every class folder", lambda: add_between(tree, 0.10, rng, "d"))
    rerun("a new class folder (1%)", lambda: add_folder(tree, round(args.images * 0.01)))
    rerun("-1% deleted anywhere", lambda: delete_some(tree, 0.01, rng), decodes_added=False)
    compare_fresh("final")

    lines = [
        f"# Incremental reruns ({datetime.date.today()}, {platform.node()}, {os.cpu_count()} CPUs, "
        f"--cores {args.cores})",
        "",
        f"Bench tree: bench/corpus.py, {args.images:,} photos in {args.classes} class folders, 256 x 256 uint8.",
        "",
        "| run | images changed or total | wall s | / full build | decoded | reused | shards rebuilt | by phase (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for what, changed, account in rows:
        ratio = account["seconds"] / full
        lines.append(
            f"| {what} | {changed:,} | {account['seconds']:.1f} | {ratio:.2f} | {account['decoded']:,} | "
            f"{account['reused']:,} | {account['rebuilt']} of {account['shards']} | {account['phases']} |"
        )
    lines.append("")
    for what, same in identical:
        lines.append(f"- dataset.npz after the reruns equals a fresh build of the {what} tree: {same}")
    problems += [f"dataset.npz differs from a fresh build of the {what} tree" for what, same in identical if not same]
    text = "\n".join(lines) + "\n"
    print(text)
    return text, problems


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    text, problems = run_bench(args)
    write_report(text, args.out)
    if problems:
        sys.exit("bench/incremental.py: " + "; ".join(problems))


if __name__ == "__main__":
    main()
