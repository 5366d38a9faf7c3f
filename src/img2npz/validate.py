"""validate-report: prove that ``dataset.npz`` keeps the contract, and show what is in it.

Runs every check of :mod:`img2npz.checks` on the dataset's :class:`~img2npz.facts.Facts`,
writes ``validation.json`` (each check's name, whether it passed, the measured value, the
threshold and its severity), then the pictures and the page (:mod:`img2npz.report`); and fails,
naming the checks and the config keys that set their thresholds (:mod:`img2npz.checktext`), when a
hard one failed. Soft checks only warn.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import asdict

from img2npz import checktext, report
from img2npz.atomic import write_bytes_atomic
from img2npz.changes import Catalogue, ShardRecord
from img2npz.checks import Thresholds, run_checks
from img2npz.contract import Check, CopyCheck, IndexSummary
from img2npz.facts import Facts

log = logging.getLogger(__name__)


class ValidationFailed(Exception):
    """One or more checks failed; the message names them and the config keys that set their thresholds."""


def write_validation(path: str | os.PathLike, checks: list[Check]) -> None:
    """``validation.json``: ``passed`` (no hard check failed), ``warnings`` (the soft ones that
    did not pass) and every check."""
    document = {
        "passed": not any(not c.passed and c.severity == "hard" for c in checks),
        "warnings": [c.name for c in checks if not c.passed and c.severity == "soft"],
        "checks": [asdict(check) for check in checks],
    }
    write_bytes_atomic(path, (json.dumps(document, indent=2, sort_keys=True) + "\n").encode())


def validate_dataset(
    npz: str,
    failures: str,
    images_table: str,
    pixel: dict,
    label_mode: str,
    limits: Thresholds,
    samples: int,
    out_json: str | os.PathLike,
    files: report.ReportFiles,
    shards: Mapping[str, ShardRecord] | None = None,
    threads: int = 1,
    index_summary: str | os.PathLike | None = None,
    layout: str = "file",
    copy_check: str | os.PathLike | None = None,
) -> list[Check]:
    """Run every check, write the JSON, pictures and HTML page; raise :class:`ValidationFailed` at the
    end when a hard check failed. ``threads`` read and hash the pixels at once. ``index_summary``:
    the index's ``summary.json``, whose notes (files skipped by extension, the labels CSV's
    warnings) the page shows. ``layout``: ``file`` (``npz`` is ``dataset.npz``) or ``shards``
    (``npz`` is ``results/dataset/index.npz``; only the shards the last catalogued run did not
    verify are read). ``copy_check``: the merge's ``dataset.verified.json``; where it proves the
    ``file`` layout's copy, with every row hashed (:mod:`img2npz.readback`), no pixel is read."""
    previous = Catalogue.load(files.catalogue) if files.catalogue is not None else None
    verified = previous.verified if previous is not None else {}
    copied = CopyCheck.load(copy_check) if copy_check is not None else None
    facts = Facts(npz, failures, images_table, pixel, label_mode, threads, layout, verified, previous, copied)
    checks, readable = run_checks(facts, limits)
    hard = [check for check in checks if not check.passed and check.severity == "hard"]
    for check in checks:
        status = "PASS" if check.passed else ("FAIL" if check.severity == "hard" else "WARN")
        log.info("%s %s", status, checktext.line(asdict(check)))
    if hasattr(facts, "checked_shards"):
        log.info("pixels: read %d of %d shard files (the others verified by an earlier run)", *facts.checked_shards)
    if getattr(facts, "merge_hashed", False):
        log.info("pixels: read none of %d rows: the merge hashed every row as it read its copy back", facts.count)
    elif hasattr(facts, "hashed_rows"):
        log.info(
            "pixels: hashed %d of %d rows (the others verified by an earlier run), %s",
            *facts.hashed_rows,
            "the merge read back every row as it copied it" if facts.copy_proven else "checked every CRC-32",
        )
    if hasattr(facts, "searched"):
        log.info("near-duplicates: looked up %d of %d rows among all", facts.searched, facts.count)
    write_validation(out_json, checks)
    report.write_report(
        facts if readable else None,
        checks,
        files,
        samples,
        shards or {},
        failed=bool(hard),
        near_rule=limits.near_rule,
        index=IndexSummary.load(index_summary) if index_summary is not None else None,
    )
    if hard:
        details = "; ".join(checktext.line(asdict(check)) for check in hard)
        where = f"; report: {os.fspath(files.failed_html)}" if files.failed_html is not None else ""
        raise ValidationFailed(f"validation failed: {details}{where}")
    return checks
