"""validate-report's outputs besides ``validation.json``: the pictures, the change report and the
HTML page, drawn from what the checks found (:class:`~img2npz.facts.Facts`)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from img2npz import checktext, htmlreport, pictures
from img2npz.changes import Catalogue, ShardRecord, compare, write_changes
from img2npz.contract import FAILURE_HEADER, NEAR_DUPLICATES_HEADER, UNLABELLED_CLASS, Check, IndexSummary
from img2npz.facts import LISTED, Facts
from img2npz.nearrule import NearRule
from img2npz.npzformat import streamed_blob
from img2npz.scan import describe_skipped
from img2npz.tsv import iter_tsv, write_tsv


@dataclass
class ReportFiles:
    """Where the pictures and pages go (the rule's outputs)."""

    samples: str | os.PathLike
    class_counts: str | os.PathLike
    histograms: str | os.PathLike
    html: str | os.PathLike
    failed_html: str | os.PathLike | None = None  # a copy kept where a failed job's outputs are not deleted
    changes: str | os.PathLike | None = None  # changes.tsv, against the catalogue of the last checked dataset
    catalogue: str | os.PathLike | None = None
    near_duplicates: str | os.PathLike | None = None  # near_duplicates.tsv: every group in full
    near_pairs: str | os.PathLike | None = None  # near_duplicates.png: the first pairs side by side
    failed_near_duplicates: str | os.PathLike | None = None  # a copy kept where a failed job's outputs are not deleted


def failure_groups(failures: str, examples: int = 3) -> list[dict]:
    """Failures grouped by stage and reason (the exception's type), largest group first."""
    groups: dict[tuple[str, str], dict] = {}
    for path, stage, error in iter_tsv(failures, FAILURE_HEADER):
        head = error.split(":", 1)[0]
        reason = head if head and " " not in head else error[:80]
        group = groups.setdefault(
            (stage, reason), {"stage": stage, "reason": reason, "count": 0, "examples": [], "message": error}
        )
        group["count"] += 1
        if len(group["examples"]) < examples:
            group["examples"].append(path)
    return sorted(groups.values(), key=lambda g: (-g["count"], g["stage"], g["reason"]))


def draw_pictures(facts: Facts, samples: int, files: ReportFiles) -> None:
    classes, counts, labels = facts.classes, facts.class_counts, facts.labels
    picked = pictures.rows_per_class(labels, len(classes), samples)
    wanted = sorted({row for rows in picked.values() for row in rows})
    shown = dict(zip(wanted, pictures.to_display(facts.rows(wanted), facts.pixel["normalize"]), strict=True))
    rows = [
        (
            classes[label] if label >= 0 else "(all images)",
            [shown[row] for row in members],
            counts[label] if label >= 0 else len(labels),
        )
        for label, members in picked.items()
    ]
    pictures.save_png(pictures.class_grid(rows), files.samples)
    pictures.save_png(pictures.class_bar_chart(classes, counts), files.class_counts)
    meta = facts.meta
    histograms = pictures.channel_histograms(np.asarray(meta.histogram), meta.mean, meta.std)
    pictures.save_png(histograms, files.histograms)


PAIRS_SHOWN = 20


def near_duplicate_report(facts: Facts, rule: NearRule, files: ReportFiles) -> None:
    """``near_duplicates.tsv`` (every group, a line per image) and the picture of the first pairs,
    pairs that straddle two splits first."""
    found = facts.near_duplicates(rule)
    split, names = facts.split, facts.split_names
    members = [row for group in found.groups for row in group]
    paths = iter(facts.paths_of(members))
    lines = [
        (number, next(paths), names[split[row]] if split is not None else "")
        for number, group in enumerate(found.groups, 1)
        for row in group
    ]
    for target in (files.near_duplicates, files.failed_near_duplicates):  # the log copy outlives a failed run
        if target is not None:
            write_tsv(target, NEAR_DUPLICATES_HEADER, lines)
    if files.near_pairs is None:
        return
    across = split[found.first] != split[found.second] if split is not None else np.zeros(len(found.first), bool)
    shown = np.argsort(~across, kind="stable")[:PAIRS_SHOWN]
    rows = sorted({int(r) for r in found.first[shown]} | {int(r) for r in found.second[shown]})
    pixels = dict(zip(rows, pictures.to_display(facts.rows(rows), facts.pixel["normalize"]), strict=True))
    captions = []
    for n in shown:
        a, b = int(found.first[n]), int(found.second[n])
        where = f"\n{names[split[a]]} / {names[split[b]]}" if split is not None else ""
        captions.append((f"{found.distance[n]} bits apart{where}", pixels[a], pixels[b]))
    pictures.save_png(pictures.pair_grid(captions), files.near_pairs)


def change_report(
    facts: Facts,
    files: ReportFiles,
    shards: Mapping[str, ShardRecord],
    failed: bool = False,
    index: IndexSummary | None = None,
    near_rule: NearRule | None = None,
) -> Catalogue:
    """This dataset's catalogue, carrying what changed since the last checked one (``changes.tsv``),
    and the shards verified: all of them when no hard check ``failed``, else those verified before."""
    classes = [*facts.classes, UNLABELLED_CLASS]  # the last: unlabelled (and any bad label)
    labels = facts.labels
    codes = np.where((labels >= 0) & (labels < len(facts.classes)), labels, len(facts.classes))
    split_names = facts.split_names or [""]
    splits = facts.split if facts.split is not None else np.zeros(len(labels), np.int8)
    current = Catalogue(
        facts.meta.images_sha256 or "",
        *streamed_blob(facts.iter_paths()),
        facts.path_keys,
        classes,
        codes.astype(np.int32),
        split_names,
        splits.astype(np.int32),
        facts.pixels.fingerprints,
        {shard: record.mtime_ns for shard, record in shards.items()},
    )
    # the catalogue the facts were checked against (loaded once), and the rows matched with it
    previous = facts.previous if facts.previous is not None else Catalogue.load(files.catalogue)
    near = facts.__dict__.get("_near", {})
    if near_rule in near:  # for the next run's search of its new rows only, under the rule searched
        current.near_bits = near[near_rule].rule.key()
        current.near_pairs = np.stack([near[near_rule].first, near[near_rule].second], axis=1)
    current.passed = not failed
    if not failed:
        current.verified = dict(current.shards)
    elif previous is not None:
        current.verified = {k: v for k, v in previous.verified.items() if current.shards.get(k) == v}
    old_of = facts.old_rows if facts.previous is not None else None
    catalogue = compare(previous, current, shards, index.compaction if index is not None else None, old_of)
    write_changes(files.changes, catalogue)
    catalogue.save(files.catalogue)
    return catalogue


def index_notes(index: IndexSummary | None) -> list[tuple[str, str]]:
    """The index's notes as summary rows: files ``extensions`` left out, the labels CSV's warnings."""
    if index is None:
        return []
    skipped = describe_skipped(index.skipped or {})
    rows = [("files not indexed (other extensions)", "; ".join(skipped) or "none")]
    return rows + [("labels CSV", warning) for warning in index.warnings or []]


def _summary(facts: Facts, index: IndexSummary | None) -> list[tuple[str, Any]]:
    pixel, meta, npz, failures = facts.pixel, facts.meta, facts.npz, facts.failures
    return [
        ("images in the dataset", f"{len(facts.labels):,}"),
        ("files indexed", f"{facts.accounting['indexed']:,}"),
        ("files left out (unreadable)", f"{facts.accounting['failures']:,}"),
        ("files left out by the filters", f"{facts.accounting['filtered']:,}"),
        ("classes", f"{len(facts.classes):,}" if facts.classes else "none (unlabelled)"),
        ("image shape and type", f"{pixel['size'][0]} x {pixel['size'][1]} x 3, {pixel['dtype']}"),
        ("pixel config", checktext.pixel_config(pixel)),
        ("channel mean (0..1)", ", ".join(f"{v:.4f}" for v in meta.mean or [])),
        ("channel std (0..1)", ", ".join(f"{v:.4f}" for v in meta.std or [])),
        ("dataset.npz", f"{os.fspath(npz)}: {os.path.getsize(npz) / 2**20:,.1f} MiB"),
        ("failures.tsv", f"{os.fspath(failures)}: {os.path.getsize(failures) / 2**10:,.1f} KiB"),
        ("sha256 of images", meta.images_sha256 or ""),
        *index_notes(index),
    ]


def page_of(
    facts: Facts,
    checks: Sequence[Check],
    files: ReportFiles,
    changes: Catalogue | None,
    near_rule: NearRule,
    index: IndexSummary | None = None,
):
    counts = facts.split_class_counts
    unlabelled = any(row[-1] for row in counts)  # the column only where some image has no class
    split_table = [
        (name, f"{sum(row):,}", *(f"{count:,}" for count in (row if unlabelled else row[:-1])))
        for name, row in zip(facts.split_names, counts, strict=True)
    ]
    split_header = ["split", "images", *facts.classes, *(["unlabelled"] if unlabelled else [])]
    return htmlreport.Page(
        checks=[asdict(check) for check in checks],
        summary=_summary(facts, index),
        pictures={
            **({"samples": files.samples, "histograms": files.histograms} if facts.count else {}),  # no empty box
            "class_counts": files.class_counts,
            **({"near_duplicates": files.near_pairs} if files.near_pairs else {}),
        },
        class_counts=list(zip(facts.classes, facts.class_counts, strict=True)),
        failure_groups=failure_groups(facts.failures),
        listed={
            "duplicate_images": facts.duplicate_paths,
            "near_duplicates": [facts.paths_of(g[:LISTED]) for g in facts.near_duplicates(near_rule).groups[:LISTED]],
            "constant_images": [[p] for p in facts.constant_paths],
        },
        splits=(split_header, split_table) if split_table else None,
        changes=changes,
    )


def write_report(
    facts: Facts | None,
    checks: Sequence[Check],
    files: ReportFiles,
    samples: int,
    shards: Mapping[str, ShardRecord],
    failed: bool,
    near_rule: NearRule,
    index: IndexSummary | None = None,
) -> None:
    """Pictures, change report and page; ``facts`` None: the file could not be read as a dataset
    (the page shows the checks only). ``failed``: a hard check failed, so the page is also kept at
    ``files.failed_html`` (Snakemake deletes a failed job's outputs). ``index``: the index's summary,
    whose notes the page's summary shows."""
    if facts is not None:
        draw_pictures(facts, samples, files)
        near_duplicate_report(facts, near_rule, files)
        changes = change_report(facts, files, shards, failed, index, near_rule) if files.changes is not None else None
        page = htmlreport.render(page_of(facts, checks, files, changes, near_rule, index))
    else:
        page = htmlreport.render(htmlreport.Page(checks=[asdict(check) for check in checks]))
    htmlreport.write_html(files.html, page)
    if files.failed_html is not None:
        target = os.path.relpath(files.html, os.path.dirname(os.fspath(files.failed_html)))
        note = f'<!DOCTYPE html><p>This run passed; the report is <a href="{target}">{os.fspath(files.html)}</a></p>\n'
        htmlreport.write_html(files.failed_html, page if failed else note)
