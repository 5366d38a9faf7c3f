"""The dataset report as one self-contained HTML page: pictures inlined as data URIs, no scripts, no
network, so it opens anywhere (a laptop, a cluster's file browser, an e-mail attachment)."""

from __future__ import annotations

import base64
import html
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from img2npz.atomic import write_bytes_atomic
from img2npz.contract import CHANGES_HEADER

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0; } td, th { padding: 3px 10px; text-align: left;
vertical-align: top; border-bottom: 1px solid #eee; max-width: 480px; overflow-wrap: break-word; }
th { background: #f4f4f4; }
.pass { color: #14782d; font-weight: bold; } .fail { color: #b3261e; font-weight: bold; }
.warn { color: #a15c00; font-weight: bold; } .verdict { font-size: 1.3em; margin: 0.4em 0 1em; }
code, .mono { font-family: ui-monospace, monospace; font-size: 0.9em; word-break: break-all; }
img { max-width: 100%; border: 1px solid #ddd; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value).encode("utf-8", "backslashreplace").decode("utf-8"))


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], raw: Sequence[int] = ()) -> str:
    """Rows of text (escaped), except the columns in ``raw``, which are already HTML."""
    head = "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>" if header else ""
    body = "".join(
        "<tr>" + "".join(f"<td>{cell if i in raw else _e(cell)}</td>" for i, cell in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<table>{head}{body}</table>"


def _picture(path: str | os.PathLike, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img id="{_e(Path(path).stem)}" alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _short(value: Any, limit: int = 300) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _status(check: dict) -> str:
    if check["passed"]:
        return '<span class="pass">pass</span>'
    return '<span class="fail">FAIL</span>' if check["severity"] == "hard" else '<span class="warn">warning</span>'


@dataclass
class Page:
    """What the page shows. ``pictures`` maps ``samples`` / ``class_counts`` / ``histograms`` to PNG
    files; ``listed`` maps ``duplicate_images`` / ``constant_images`` to groups of paths; ``splits``
    is a table (header, rows); ``changes`` a :class:`img2npz.changes.Catalogue` with its change rows.
    A page of a file that is no dataset has only its ``checks``."""

    checks: Sequence[dict]
    summary: Sequence[tuple[str, Any]] = ()
    pictures: dict[str, str | os.PathLike] = field(default_factory=dict)
    class_counts: Sequence[tuple[str, int]] = ()
    failure_groups: Sequence[dict] = ()
    listed: dict[str, list[list[str]]] = field(default_factory=dict)
    splits: tuple[Sequence[str], Sequence[Sequence[Any]]] | None = None
    changes: Any = None


def _verdict(checks: Sequence[dict]) -> str:
    hard = [c["name"] for c in checks if not c["passed"] and c["severity"] == "hard"]
    soft = [c["name"] for c in checks if not c["passed"] and c["severity"] == "soft"]
    if hard:
        verdict = f'<p class="verdict fail">Validation failed: {_e(", ".join(hard))}</p>'
    else:
        verdict = '<p class="verdict pass">Every hard check passed</p>'
    if soft:
        verdict += f'<p class="warn">Warnings: {_e(", ".join(soft))}</p>'
    return verdict


# Each section gives the body under its heading, or None where it has nothing to show (no
# pictures of a file that is no dataset, no splits table without splits).
Section = Callable[[Page], list[str] | None]


def _summary(page: Page) -> list[str]:
    return [_table([], page.summary)]


def _samples(page: Page) -> list[str] | None:
    if "samples" not in page.pictures:
        return None
    return [_picture(page.pictures["samples"], "sample images per class")]


def _classes(page: Page) -> list[str]:
    parts = []
    if "class_counts" in page.pictures:
        parts.append(_picture(page.pictures["class_counts"], "images per class"))
    if page.class_counts:
        parts.append(_table(["class", "images"], [(name, f"{count:,}") for name, count in page.class_counts]))
    else:
        parts.append("<p>Unlabelled dataset (no classes).</p>")
    return parts


def _splits(page: Page) -> list[str] | None:
    return None if page.splits is None else [_table(*page.splits)]


def _changes(page: Page) -> list[str] | None:
    if page.changes is None:
        return None
    parts = [_table(CHANGES_HEADER, page.changes.rows)]
    for what, paths in page.changes.examples.items():
        parts.append(f"<p>{_e(what)}, e.g.: " + ", ".join(f"<code>{_e(p)}</code>" for p in paths) + "</p>")
    return parts


def _pixel_values(page: Page) -> list[str] | None:
    if "histograms" not in page.pictures:
        return None
    return [_picture(page.pictures["histograms"], "per-channel histograms")]


def _left_out(page: Page) -> list[str]:
    if not page.failure_groups:
        return ["<p>None: every indexed file is in the dataset.</p>"]
    rows = [
        (
            g["stage"],
            g["reason"],
            f"{g['count']:,}",
            "<br>".join(f"<code>{_e(p)}</code>" for p in g["examples"]),
            g["message"],
        )
        for g in page.failure_groups
    ]
    return [_table(["stage", "reason", "files", "examples", "example message"], rows, raw=(3,))]


def _listed(key: str) -> Section:
    def section(page: Page) -> list[str]:
        groups = page.listed.get(key, [])
        if not groups:
            return ["<p>None.</p>"]
        rows = [(n + 1, "<br>".join(f"<code>{_e(p)}</code>" for p in g)) for n, g in enumerate(groups)]
        return [_table(["#", "paths"], rows, raw=(1,))]

    return section


def _near_duplicates(page: Page) -> list[str]:
    parts = []
    if page.listed.get("near_duplicates") and "near_duplicates" in page.pictures:
        parts.append(_picture(page.pictures["near_duplicates"], "near-duplicate pairs side by side"))
    parts.extend(_listed("near_duplicates")(page))
    return parts


def _checks(page: Page) -> list[str]:
    rows = [(c["name"], _status(c), c["severity"], _short(c["value"]), _short(c["threshold"])) for c in page.checks]
    return [_table(["check", "result", "kind", "measured", "threshold"], rows, raw=(1,))]


# The page's sections, in order, under these headings.
SECTIONS: tuple[tuple[str, Section], ...] = (
    ("Summary", _summary),
    ("Samples", _samples),
    ("Images per class", _classes),
    ("Splits (images per split and class)", _splits),
    ("Changes since the previous dataset", _changes),
    ("Pixel values", _pixel_values),
    ("Left out: files that could not be read", _left_out),
    ("Exact duplicate images (same pixels)", _listed("duplicate_images")),
    ("Near-duplicates (every group in near_duplicates.tsv)", _near_duplicates),
    ("Constant (blank) images", _listed("constant_images")),
    ("Checks", _checks),
)


def anchor(title: str) -> str:
    """A section's id: ``Pixel values`` -> ``pixel-values``."""
    return "-".join(re.findall(r"[a-z0-9]+", title.lower()))


def render(page: Page) -> str:
    """The page: the verdict, a line of links to the sections shown, then each of them."""
    shown = [(title, body) for title, section in SECTIONS if (body := section(page)) is not None]
    contents = " | ".join(f'<a href="#{anchor(title)}">{_e(title)}</a>' for title, _ in shown)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>img2npz dataset report</title>',
        f"<style>{STYLE}</style></head><body>",
        "<h1>img2npz dataset report</h1>",
        _verdict(page.checks),
        f"<nav>{contents}</nav>",
    ]
    for title, body in shown:
        parts.append(f'<h2 id="{anchor(title)}">{_e(title)}</h2>')
        parts.extend(body)
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_html(path: str | os.PathLike, page: str) -> None:
    write_bytes_atomic(path, page.encode("utf-8"))
