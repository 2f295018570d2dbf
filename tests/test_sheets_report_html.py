"""Table 1's markdown as HTML for the Snakemake report (wavbrivl.sheets.report_html)."""

from __future__ import annotations

import locale

import pytest

from wavbrivl.sheets.report_html import markdown_to_html, table_cells, write_markdown_html

MARKDOWN = """# Table 1: <study>

Cells: pooled % & more.

| run | answers |
|---|---|
| enc\\|b | 7 |
| <script>x</script> | 3 |

## Sessions
plain line
"""


def test_cells_split_on_bars_but_not_on_escaped_ones():
    assert table_cells("| a | b\\|c |  d |") == ["a", "b|c", "d"]
    assert table_cells("|x|") == ["x"]


def test_headings_tables_and_paragraphs_are_rendered_and_escaped():
    page = markdown_to_html(MARKDOWN, title="T <1>")
    body = page.split("<body>\n", 1)[1]
    assert body == (
        "<h1>Table 1: &lt;study&gt;</h1>\n"
        "<p>Cells: pooled % &amp; more.</p>\n"
        "<table><thead><tr>\n<th>run</th>\n<th>answers</th>\n</tr></thead><tbody>\n"
        "<tr><td>enc|b</td><td>7</td></tr>\n"
        "<tr><td>&lt;script&gt;x&lt;/script&gt;</td><td>3</td></tr>\n"
        "</tbody></table>\n"
        "<h2>Sessions</h2>\n"
        "<p>plain line</p>\n"
        "</body></html>\n"
    )
    assert page.startswith('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">')
    assert "<title>T &lt;1&gt;</title>" in page
    assert markdown_to_html("| a |\n|---|\n| 1 |").count("<table>") == 1  # table at the end


def test_two_tables_stay_apart_and_the_file_is_written(tmp_path):
    page = markdown_to_html("| a |\n|---|\n| 1 |\n\n| b |\n|---|\n| 2 |\n")
    assert page.count("<table>") == 2 and "<title>Table 1</title>" in page
    md = tmp_path / "t.md"
    md.write_text("# Ünïcode\n", encoding="utf-8")
    out = write_markdown_html(md, tmp_path / "t.html")
    assert out == tmp_path / "t.html"
    assert "<h1>Ünïcode</h1>" in out.read_text(encoding="utf-8")


@pytest.fixture
def ascii_locale():
    """The C locale's ASCII as the default text encoding, for this test only."""
    old = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")
    yield
    locale.setlocale(locale.LC_CTYPE, old)


def test_the_markdown_is_read_as_utf8_whatever_the_locale(tmp_path, ascii_locale):
    md = tmp_path / "t.md"
    md.write_text("## Fleiss' κ\n", encoding="utf-8")
    out = write_markdown_html(md, tmp_path / "t.html")
    assert "<h2>Fleiss&#x27; κ</h2>" in out.read_text(encoding="utf-8")
