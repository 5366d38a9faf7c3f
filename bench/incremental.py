"""What a rerun costs after the tree changed, in both layouts, against a full build measured in the same run.

On a bench tree (bench/corpus.py, default 20,000 photos in 100 class folders), with C cores, one work
folder per layout (``layout: file``, results/dataset.npz; ``layout: shards``, results/dataset/), each
change made once to the tree and then run in both:
  1. a full build from scratch;
  2. 1% new images spread over every class folder, named between the existing ones
     (``img0001234.jpg`` gains ``img0001234b.jpg``), then the rerun;
  3. a full build of the grown tree in a fresh folder (layout file): the file layout's dataset.npz
     must be its bytes, the shards layout's dataset its rows;
  4. more reruns: 0.1% and 10% new images spread the same way, a new class folder of 1%, 1% of the
     images deleted, 1% replaced (same paths, new pictures); then a compaction, forced by a run at
     ``shards.compact_small: 0`` (every shard under ``shards.min_images`` rows is small, and more
     than none is too many) on the unchanged tree; then a last fresh build in each layout, compared
     as in 3.
For each run: wall time and its ratio to the layout's full build (1.), images decoded and rows copied
and new shards written (counted from the shard jobs' logs of that run), the bytes the whole run wrote
(Snakemake and every job: bench/throughput.py's run_counting_writes) and their ratio to the dataset's
pixels after the run (N x H x W x 3 x itemsize), and the time by phase (each job's own script time;
the shard jobs' sum is divided by C; "rest" is Snakemake and job start-up). Then the figures issue 26
asks of the +1% rerun at 2 cores. Prints the report (``--out FILE`` also writes it to FILE; the
committed bench/INCREMENTAL.md is one run with ``--out bench/INCREMENTAL.md``); exits with an error
when a rerun decoded other than the added or replaced images, the compaction decoded any or copied
other than the index said, or a dataset differs from the fresh build's (the file layout's bytes; the
shards layout's paths, labels, pixels of every row and ``meta.images_sha256`` through NPZDataset).
Usage:
python bench/incremental.py [--images 20000] [--classes 100] [--cores 2] [--dir /tmp/img2npz-incremental]
[--out FILE]
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from corpus import make_corpus, photo, size_for, write_image  # noqa: E402
from throughput import (  # noqa: E402
    add_out_option,
    job_wall,
    plugins_note,
    run_counting_writes,
    snakemake_command,
    write_report,
)

from img2npz import NPZDataset  # noqa: E402
from img2npz.demo import CLASSES  # noqa: E402

LAYOUTS = ("file", "shards")
SHARD_LOG = re.compile(r": (\d+) images \((\d+) copied, (\d+) decoded\), (\d+) failures")
COMPACTION = "shards: {compact_small: 0}"  # the config that forces a compaction of the small shards
# issue 26's "done when", for the +1% rerun at 2 cores: rerun / full build, bytes written / dataset bytes
TARGETS = {"shards": (0.08, 0.03), "file": (0.15, 1.1)}


def dataset_path(work: Path, layout: str) -> Path:
    return work / "results" / ("dataset.npz" if layout == "file" else "dataset")


def run_workflow(source: Path, work: Path, cores: int, layout: str, extra: str = "") -> tuple[float, int]:
    """(seconds, bytes written) of `snakemake --cores C` on ``source`` in ``work`` (whatever results/ holds),
    ``extra`` lines added to its config."""
    config = f"source: {source}\nlayout: {layout}\nvalidate: {{max_failure_fraction: 0.01, samples: 16}}\n{extra}"
    command, env = snakemake_command(work, config, cores)
    seconds, written, status, errors = run_counting_writes(command, env)
    if status:
        raise SystemExit(f"snakemake failed in {work} (exit status {status}):\n{errors[-3000:]}")
    return seconds, written


def run_account(work: Path, layout: str, since: float, cores: int, seconds: float, written: int) -> dict:
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
    dataset = NPZDataset(dataset_path(work, layout))
    height, width = dataset.meta["pixel"]["size"]
    summary = json.loads((work / "results" / "index" / "summary.json").read_text())
    return {
        "seconds": seconds,
        "written": written,
        "dataset_bytes": len(dataset) * height * width * 3 * np.dtype(dataset.meta["pixel"]["dtype"]).itemsize,
        "new_shards": len(fresh),
        "shards": len(list((work / "results" / "shards").glob("*.npz"))),
        "images": int(counts[0]),
        "copied": int(counts[1]),
        "decoded": int(counts[2]),
        "compaction": summary.get("compaction") if index else None,
        "phases": f"index {index:.1f}, shard jobs {shards:.1f}, merge {merge:.1f}, validate {validate:.1f}, "
        f"rest {seconds - index - shards - merge - validate:.1f}",
    }


def sha(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(16 << 20):
            digest.update(block)
    return digest.hexdigest()


def same_rows(sharded: Path, reference: Path) -> str | None:
    """None when NPZDataset gives the same paths, labels, pixels of every row and images_sha256 on
    ``sharded`` (a shards-layout dataset folder) as on ``reference`` (a dataset.npz); else what differs."""
    rows, expected = NPZDataset(sharded), NPZDataset(reference)
    if len(rows) != len(expected):
        return f"{len(rows):,} rows, the fresh build {len(expected):,}"
    if rows.samples != expected.samples:
        return "paths or labels differ"
    if rows.meta["images_sha256"] != expected.meta["images_sha256"]:
        return "meta.images_sha256 differs"
    differ = [row for row in range(len(rows)) if not np.array_equal(rows[row][0].numpy(), expected[row][0].numpy())]
    return f"the pixels of {len(differ):,} rows differ, the first {differ[0]}" if differ else None


def images_of(tree: Path) -> list[Path]:
    return sorted(p for p in tree.rglob("*") if p.is_file() and not p.name.startswith("."))


def painter_of(path: Path) -> str:
    painter = re.sub(r"\d+$", "", path.parent.name)
    return painter if painter in CLASSES else "rings"


def add_between(tree: Path, fraction: float, rng: np.random.Generator, tag: str) -> int:
    """New images named right after randomly chosen existing ones, in every class folder."""
    existing = [p for p in images_of(tree) if re.fullmatch(r"img\d{7}", p.stem)]
    chosen = rng.choice(len(existing), size=max(1, round(len(existing) * fraction)), replace=False)
    for number in sorted(chosen.tolist()):
        path = existing[number]
        write_image(path.with_name(f"{path.stem}{tag}"), painter_of(path), np.random.default_rng([number, ord(tag)]))
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


def replace_some(tree: Path, fraction: float, rng: np.random.Generator) -> int:
    """Other pictures under the same paths, in the same format: new files (the tree's files are hard
    links to the corpus, which must not change)."""
    existing = images_of(tree)
    chosen = rng.choice(len(existing), size=max(1, round(len(existing) * fraction)), replace=False)
    for number in sorted(chosen.tolist()):
        path = existing[number]
        picture_rng = np.random.default_rng([number, 99])
        image = photo(painter_of(path), size_for(picture_rng), picture_rng)
        path.unlink()
        options = {"quality": 90, "subsampling": "4:2:0"} if path.suffix == ".jpg" else {}
        image.save(path, **options)
    return len(chosen)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/img2npz-incremental"))
    add_out_option(parser, "INCREMENTAL.md")
    return parser.parse_args(argv)


def table(rows: list[tuple[str, int, dict]]) -> list[str]:
    full = rows[0][2]["seconds"]
    lines = [
        "| run | images changed or total | wall s | / full build | decoded | copied | shards written | "
        "written MB | / dataset | by phase (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for what, changed, account in rows:
        lines.append(
            f"| {what} | {changed:,} | {account['seconds']:.1f} | {account['seconds'] / full:.2f} | "
            f"{account['decoded']:,} | {account['copied']:,} | {account['new_shards']} of {account['shards']} | "
            f"{account['written'] / 2**20:,.0f} | {account['written'] / account['dataset_bytes']:.3f} | "
            f"{account['phases']} |"
        )
    return lines


def done_when(rows: dict[str, list[tuple[str, int, dict]]], cores: int) -> list[str]:
    """Issue 26's figures: the +1% rerun against the full build and the dataset's bytes, per layout."""
    lines = [f"Issue 26, done when: the +1% rerun (every class folder) at --cores 2; this run: --cores {cores}.", ""]
    for layout in ("shards", "file"):
        full, rerun = rows[layout][0][2], rows[layout][1][2]
        ratio, share = rerun["seconds"] / full["seconds"], rerun["written"] / rerun["dataset_bytes"]
        most_ratio, most_share = TARGETS[layout]
        lines.append(
            f"- {layout} layout: rerun / full build {ratio:.3f} (target <= {most_ratio}: "
            f"{'holds' if ratio <= most_ratio else 'misses'}); bytes written / dataset bytes {share:.3f} "
            f"({rerun['written'] / 2**20:,.0f} of {rerun['dataset_bytes'] / 2**20:,.0f} MB; target <= {most_share}: "
            f"{'holds' if share <= most_share else 'misses'})"
        )
    return lines


def run_bench(args: argparse.Namespace) -> tuple[str, list[str]]:
    """Runs every build and rerun; returns the report as Markdown and what went wrong, if anything."""
    corpus = make_corpus(args.dir / f"corpus-{args.images}-{args.classes}", args.images, args.classes)
    tree = args.dir / "tree"
    works = {layout: args.dir / f"work-{layout}" for layout in LAYOUTS}
    for path in (tree, *works.values(), *(args.dir / f"fresh-{layout}" for layout in LAYOUTS)):
        shutil.rmtree(path, ignore_errors=True)
    subprocess.run(["cp", "-al", str(corpus), str(tree)], check=True)  # hard links: adding files is safe
    rng = np.random.default_rng(0)
    rows: dict[str, list[tuple[str, int, dict]]] = {layout: [] for layout in LAYOUTS}
    checks: list[tuple[str, str | None]] = []  # (what was compared, None or how it differs)
    compactions: dict[str, dict | None] = {}
    problems: list[str] = []

    def measure(layout: str, work: Path, what: str, changed: int, extra: str = "") -> dict:
        since = time.time()
        seconds, written = run_workflow(tree, work, args.cores, layout, extra)
        account = run_account(work, layout, since, args.cores, seconds, written)
        rows[layout].append((what, changed, account))
        return account

    for layout, work in works.items():
        measure(layout, work, "full build from scratch", len(images_of(tree)))

    def rerun(what: str, change: Callable[[], int], decodes_changed: bool = True) -> None:
        changed = change()
        for layout, work in works.items():
            account = measure(layout, work, what, changed)
            expected = changed if decodes_changed else 0
            if account["decoded"] != expected:
                problems.append(f"{layout} layout, {what}: {account['decoded']} images decoded, expected {expected}")

    def compare_fresh(what: str, layouts: tuple[str, ...]) -> None:
        """Fresh builds of the tree as it is (in ``layouts``; the file layout's is the reference)."""
        for layout in layouts:
            fresh = args.dir / f"fresh-{layout}"
            shutil.rmtree(fresh, ignore_errors=True)
            measure(layout, fresh, f"full build of the {what} tree", len(images_of(tree)))
        reference = dataset_path(args.dir / "fresh-file", "file")
        same = sha(reference) == sha(dataset_path(works["file"], "file"))
        fresh_build = f"a fresh build's dataset.npz of the {what} tree"
        checks.append((f"file layout: dataset.npz equals {fresh_build}", None if same else "bytes differ"))
        rows_differ = same_rows(dataset_path(works["shards"], "shards"), reference)
        checks.append((f"shards layout: NPZDataset(results/dataset) equals {fresh_build}", rows_differ))
        for layout in layouts:
            shutil.rmtree(args.dir / f"fresh-{layout}")

    rerun("+1% in every class folder", lambda: add_between(tree, 0.01, rng, "b"))
    compare_fresh("+1%", ("file",))
    rerun("+0.1% in every class folder", lambda: add_between(tree, 0.001, rng, "c"))
    rerun("+10% in every class folder", lambda: add_between(tree, 0.10, rng, "d"))
    rerun("a new class folder (1%)", lambda: add_folder(tree, max(1, round(args.images * 0.01))))
    rerun("-1% deleted anywhere", lambda: delete_some(tree, 0.01, rng), decodes_changed=False)
    rerun("1% replaced (same paths, new pictures)", lambda: replace_some(tree, 0.01, rng))
    for layout, work in works.items():
        account = measure(layout, work, f"a compaction (`{COMPACTION}`)", 0, COMPACTION + "\n")
        compactions[layout] = account["compaction"]
        expected = (account["compaction"] or {}).get("rows", 0)
        if account["compaction"] is None:
            problems.append(f"{layout} layout: `{COMPACTION}` ran no compaction")
        elif account["decoded"] or account["copied"] != expected:
            problems.append(
                f"{layout} layout, compaction: {account['decoded']} decoded and {account['copied']} copied, "
                f"expected 0 and {expected}"
            )
    compare_fresh("final", LAYOUTS)

    lines = [
        f"# Incremental reruns ({datetime.date.today()}, {platform.node()}, {os.cpu_count()} CPUs, "
        f"--cores {args.cores})",
        "",
        f"Bench tree: bench/corpus.py, {args.images:,} photos in {args.classes} class folders, 256 x 256 uint8. "
        "Both layouts in one run: each change is made once, then run in each layout's own folder.",
        "",
        "Decoded and copied: the shard jobs' logs of that run (copied: rows a compaction moved); shards written: "
        "the run's new shard files, of all. Written: the bytes the whole run (Snakemake and every job) wrote, "
        "from wait4's rusage (the kernel's write_bytes); / dataset: against the dataset's pixels after the run "
        "(rows x 256 x 256 x 3 bytes).",
        "",
        plugins_note(),
        "",
        *done_when(rows, args.cores),
    ]
    for layout in LAYOUTS:
        lines += ["", f"## layout: {layout}", "", *table(rows[layout])]
    lines.append("")
    for layout, compaction in compactions.items():
        if compaction:
            lines.append(
                f"- {layout} layout, the compaction (summary.json): {compaction['shards']} shards rewritten into "
                f"{compaction['into']}, copying {compaction['rows']:,} rows, because {'; '.join(compaction['reasons'])}"
            )
    for what, difference in checks:
        lines.append(f"- {what}: {difference is None}" + (f" ({difference})" if difference else ""))
    problems += [f"{what}: {difference}" for what, difference in checks if difference]
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
