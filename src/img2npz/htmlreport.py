"""The dataset report as one self-contained HTML page: pictures inlined as data URIs, no scripts, no
network, so it opens anywhere (a laptop, a cluster's file browser, an e-mail attachment)."""

from __future__ import annotations

import base64
import html
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from img2npz.atomic import write_bytes_atomic

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


def render(
    summary: Sequence[tuple[str, Any]],
    checks: Sequence[dict],
    pictures: dict[str, str | os.PathLike],
    class_counts: Sequence[tuple[str, int]],
    failure_groups: Sequence[dict],
    listed: dict[str, list[list[str]]],
    splits: tuple[Sequence[str], Sequence[Sequence[Any]]] | None = None,
    changes: Any = None,
) -> str:
    """The page; ``pictures`` maps samples / class_counts / histograms to PNG files."""
    hard = [c["name"] for c in checks if not c["passed"] and c["severity"] == "hard"]
    soft = [c["name"] for c in checks if not c["passed"] and c["severity"] == "soft"]
    if hard:
        verdict = f'<p class="verdict fail">Validation failed: {_e(", ".join(hard))}</p>'
    else:
        verdict = '<p class="verdict pass">Every hard check passed</p>'
    if soft:
        verdict += f'<p class="warn">Warnings: {_e(", ".join(soft))}</p>'
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>img2npz dataset report</title>',
        f"<style>{STYLE}</style></head><body>",
        "<h1>img2npz dataset report</h1>",
        verdict,
        "<h2>Summary</h2>",
        _table([], summary),
    ]
    if "samples" in pictures:
        parts += ["<h2>Samples</h2>", _picture(pictures["samples"], "sample images per class")]
    parts += ["<h2>Images per class</h2>"]
    if "class_counts" in pictures:
        parts.append(_picture(pictures["class_counts"], "images per class"))
    if class_counts:
        parts.append(_table(["class", "images"], [(name, f"{count:,}") for name, count in class_counts]))
    else:
        parts.append("<p>Unlabelled dataset (no classes).</p>")
    if splits is not None:
        parts += ["<h2>Splits (images per split and class)</h2>", _table(*splits)]
    if changes is not None:
        parts.append("<h2>Changes since the previous dataset</h2>")
        parts.append(_table(["what", "class", "split", "count"], changes.rows))
        for what, paths in changes.examples.items():
            parts.append(f"<p>{_e(what)}, e.g.: " + ", ".join(f"<code>{_e(p)}</code>" for p in paths) + "</p>")
    if "histograms" in pictures:
        parts += ["<h2>Pixel values</h2>", _picture(pictures["histograms"], "per-channel histograms")]
    parts.append("<h2>Left out: files that could not be read</h2>")
    if failure_groups:
        rows = [
            (
                g["stage"],
                g["reason"],
                f"{g['count']:,}",
                "<br>".join(f"<code>{_e(p)}</code>" for p in g["examples"]),
                g["message"],
            )
            for g in failure_groups
        ]
        parts.append(_table(["stage", "reason", "files", "examples", "example message"], rows, raw=(3,)))
    else:
        parts.append("<p>None: every indexed file is in the dataset.</p>")
    for title, key in (
        ("Exact duplicate images (same pixels)", "duplicate_images"),
        ("Constant (blank) images", "constant_images"),
    ):
        groups = listed.get(key, [])
        parts.append(f"<h2>{_e(title)}</h2>")
        if groups:
            parts.append(
                _table(
                    ["#", "paths"],
                    [(n + 1, "<br>".join(f"<code>{_e(p)}</code>" for p in g)) for n, g in enumerate(groups)],
                    raw=(1,),
                )
            )
        else:
            parts.append("<p>None.</p>")
    parts.append("<h2>Checks</h2>")
    rows = [(c["name"], _status(c), c["severity"], _short(c["value"]), _short(c["threshold"])) for c in checks]
    parts.append(_table(["check", "result", "kind", "measured", "threshold"], rows, raw=(1,)))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_html(path: str | os.PathLike, page: str) -> None:
    write_bytes_atomic(path, page.encode("utf-8"))
