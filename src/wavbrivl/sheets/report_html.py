"""Table 1's markdown as a small HTML page, so the Snakemake report shows it inline.

Only the markdown that :mod:`wavbrivl.sheets.analysis` writes is understood: ``#`` and
``##`` headings, pipe tables (a ``\\|`` inside a cell is a literal bar) and paragraphs.
Every piece of text is HTML-escaped.
"""

from __future__ import annotations

import html
import os
import re
from pathlib import Path

from wavbrivl.atomic import write_text_atomic

_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:1rem}"
    "table{border-collapse:collapse;margin:0.5rem 0}"
    "td,th{border:1px solid #bbb;padding:0.2rem 0.5rem;text-align:left}"
)
_SEPARATOR = re.compile(r"^\|(\s*-+\s*\|)+$")


def table_cells(line: str) -> list[str]:
    """``| a | b\\|c |`` -> ``["a", "b|c"]``."""
    inner = line.strip()[1:-1]
    return [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", inner)]


def markdown_to_html(text: str, title: str = "Table 1") -> str:
    body: list[str] = []
    table: list[list[str]] = []

    def flush() -> None:
        if table:
            head, *rows = table
            body.append("<table><thead><tr>")
            body.extend(f"<th>{html.escape(c)}</th>" for c in head)
            body.append("</tr></thead><tbody>")
            for row in rows:
                body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
            body.append("</tbody></table>")
            table.clear()

    for line in text.splitlines():
        if line.startswith("|"):
            if not _SEPARATOR.match(line.strip()):
                table.append(table_cells(line))
            continue
        flush()
        if line.startswith("## "):
            body.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.strip():
            body.append(f"<p>{html.escape(line)}</p>")
    flush()
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def write_markdown_html(md_path: str | os.PathLike, html_path: str | os.PathLike) -> Path:
    text = Path(md_path).read_text(encoding="utf-8")
    write_text_atomic(html_path, markdown_to_html(text))
    return Path(html_path)


__all__ = ["markdown_to_html", "table_cells", "write_markdown_html"]
