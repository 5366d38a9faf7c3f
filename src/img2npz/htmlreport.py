"""The dataset report as one self-contained HTML page: pictures inlined as data URIs, no scripts, no
network, so it opens anywhere (a laptop, a cluster's file browser, an e-mail attachment)."""

from __future__ import annotations

import base64
import html
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from img2npz import checktext
from img2npz.atomic import write_bytes_atomic
from img2npz.changes import COMPACTION
from img2npz.contract import CHANGES_HEADER
from img2npz.pictures import PAGE_WIDTH

# The page fits its width (pictures.PAGE_WIDTH, wide enough for every picture at full size) in a
# window of 1280 px: long words and paths wrap, a table too wide for it (a splits table of many
# classes) scrolls in its own box.
STYLE = f"""
body {{ font-family: system-ui, sans-serif; margin: 2em auto; padding: 0 1em; max-width: {PAGE_WIDTH}px; color: #222; }}
h1 {{ margin-bottom: 0.2em; }} h2 {{ margin-top: 1.6em; border-bottom: 1px solid #ddd; }}
.wide {{ max-width: 100%; overflow-x: auto; }}
table {{ border-collapse: collapse; margin: 0.5em 0; }} table.fixed {{ table-layout: fixed; width: 100%; }}
td, th {{ padding: 3px 10px; text-align: left; vertical-align: top; border-bottom: 1px solid #eee;
overflow-wrap: anywhere; }}
th {{ background: #f4f4f4; }}
.pass {{ color: #14782d; font-weight: bold; }} .fail {{ color: #b3261e; font-weight: bold; }}
.warn {{ color: #a15c00; font-weight: bold; }} .verdict {{ font-size: 1.3em; margin: 0.4em 0 1em; }}
code, .mono {{ font-family: ui-monospace, monospace; font-size: 0.9em; word-break: break-all; }}
img {{ max-width: 100%; height: auto; border: 1px solid #ddd; }}
"""
# The columns of the tables of long text, in % of the page (fixed: a long path wraps, a short word
# does not): Checks (check, result, kind, measured, threshold), Left out (stage, reason, files,
# examples, example message).
CHECK_COLUMNS = (22, 7, 5, 35, 31)
LEFT_OUT_COLUMNS = (8, 20, 7, 30, 35)


def _e(value: Any) -> str:
    return html.escape(str(value).encode("utf-8", "backslashreplace").decode("utf-8"))


def _table(
    header: Sequence[str], rows: Sequence[Sequence[Any]], raw: Sequence[int] = (), widths: Sequence[int] = ()
) -> str:
    """Rows of text (escaped), except the columns in ``raw``, which are already HTML; ``widths``
    (% of the page) fix the columns, so long cells wrap instead of widening the table."""
    head = "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>" if header else ""
    body = "".join(
        "<tr>" + "".join(f"<td>{cell if i in raw else _e(cell)}</td>" for i, cell in enumerate(row)) + "</tr>"
        for row in rows
    )
    if widths:
        columns = "".join(f'<col style="width: {width}%">' for width in widths)
        return f'<div class="wide"><table class="fixed"><colgroup>{columns}</colgroup>{head}{body}</table></div>'
    return f'<div class="wide"><table>{head}{body}</table></div>'


def _picture(path: str | os.PathLike, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img id="picture-{_e(Path(path).stem)}" alt="{_e(alt)}" src="data:image/png;base64,{data}">'


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
# pictures of a file that is no dataset, no classes of an unlabelled one, no splits table without
# splits): no empty box.
Section = Callable[[Page], list[str] | None]


def _summary(page: Page) -> list[str]:
    return [_table([], page.summary)]


def _samples(page: Page) -> list[str] | None:
    if "samples" not in page.pictures:
        return None
    return [_picture(page.pictures["samples"], "sample images per class")]


def _classes(page: Page) -> list[str] | None:
    """Nothing for an unlabelled dataset (the summary says it has no classes)."""
    if not page.class_counts:
        return None
    parts = [_picture(page.pictures["class_counts"], "images per class")] if "class_counts" in page.pictures else []
    parts.append(_table(["class", "images"], [(name, f"{count:,}") for name, count in page.class_counts]))
    return parts


def _splits(page: Page) -> list[str] | None:
    return None if page.splits is None else [_table(*page.splits)]


def _changes(page: Page) -> list[str] | None:
    if page.changes is None:
        return None
    parts = [_table(CHANGES_HEADER, page.changes.rows)]
    for what, paths in page.changes.examples.items():
        if what == COMPACTION:  # words, not paths
            parts.extend(f"<p>{_e(what)}: {_e(text)}</p>" for text in paths)
            continue
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
    return [
        _table(["stage", "reason", "files", "examples", "example message"], rows, raw=(3,), widths=LEFT_OUT_COLUMNS)
    ]


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


def _threshold(check: dict) -> str:
    keys = checktext.set_by(check)
    return checktext.threshold(check) + (f" ({keys})" if keys else "")


def _checks(page: Page) -> list[str]:
    """A line of text per check (:mod:`img2npz.checktext`); the values in full are in validation.json."""
    rows = [(c["name"], _status(c), c["severity"], checktext.measured(c), _threshold(c)) for c in page.checks]
    header = ["check", "result", "kind", "measured", "threshold"]
    return [_table(header, rows, raw=(1,), widths=CHECK_COLUMNS)]


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
