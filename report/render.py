"""report.md and a self-contained report.html (figures as base64 PNG data URIs, no external CSS or JS)."""

from __future__ import annotations

import html
import os
from pathlib import Path

from .blocks import Block, Code, Figure, Grid, Heading, Link, Para
from .figures import data_uri
from .tables import Cell, cell_text, paper_text

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.missing, td.na { color: #999; }
td.published, tr.paper th { background: #fafaf0; color: #555; font-weight: normal; }
td.diff { font-variant-numeric: tabular-nums; }
td.diff.up { color: #1a7f37; } td.diff.down { color: #b42318; }
tr.first-paper > * { border-top: 2px solid #888; }
td, th { font-variant-numeric: tabular-nums; }
span.paper { color: #777; font-size: 0.85em; }
p.oneline { margin: 0.2em 0; color: #555; }
p.note { font-size: 0.85em; color: #555; margin: 0.2em 0; }
figure { display: inline-block; margin: 0.5em; max-width: 100%; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.85em; color: #444; }
pre { background: #f7f7f7; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
details { margin: 0.3em 0; }
"""


PARA_CLASSES = (("Note: ", "note"), ("listed at the end).", "oneline"))


# ------------------------------------------------------------------------------------------------ Markdown
def _md_cell(value: Cell | str) -> str:
    text = cell_text(value) if isinstance(value, Cell) else str(value)
    return " ".join(text.split()).replace("|", "\\|")


def _md_block(block: Block, out_dir: Path) -> str:
    if isinstance(block, Heading):
        return "#" * block.level + " " + block.text
    if isinstance(block, Para):
        return block.text
    if isinstance(block, Grid):
        lines = ["| " + " | ".join(_md_cell(h) for h in block.headers) + " |",
                 "|" + "---|" * len(block.headers)]  # fmt: skip
        lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
        return "\n".join(lines)
    if isinstance(block, Code):
        fence = "````" if "```" in block.text else "```"
        return f"**{block.summary}**\n\n{fence}{block.language}\n{block.text.rstrip()}\n{fence}"
    if isinstance(block, Figure):
        rel = Path(os.path.relpath(block.path, out_dir)).as_posix()
        return f"![{block.caption}](<{rel}>)\n*{block.caption}*"
    if isinstance(block, Link):
        return f"[{block.text}](<{Path(os.path.relpath(block.path, out_dir)).as_posix()}>)"
    raise TypeError(f"unknown block {block!r}")


def markdown(blocks: list[Block], out_dir: Path) -> str:
    """report.md: figures are linked by their path relative to `out_dir` (where report.md is written)."""
    return "\n\n".join(_md_block(b, out_dir) for b in blocks) + "\n"


# ------------------------------------------------------------------------------------------------ HTML
def _e(text: str) -> str:
    return html.escape(str(text), quote=True)


def _html_cell(value: Cell | str) -> str:
    if not isinstance(value, Cell):
        return f"<td>{_e(value)}</td>"
    if value.kind == "label":
        return f'<th scope="row">{_e(value.text)}</th>'
    if value.kind in ("published", "na"):
        return f'<td class="{value.kind}">{_e(cell_text(value))}</td>'
    if value.kind == "diff":
        gain = (value.value or 0.0) * (-1 if value.text == "lower" else 1)
        sign = "" if not gain else (" up" if gain > 0 else " down")
        return f'<td class="diff{sign}">{_e(cell_text(value))}</td>'
    ours = "not run" if value.value is None else f"{value.value:.2f}"
    cls = "missing" if value.value is None else "run"
    paper = "" if value.published is None else f' <span class="paper">({_e(paper_text(value.published))})</span>'
    return f'<td class="{cls}">{_e(ours)}{paper}</td>'


def _html_rows(rows: list[list[Cell | str]]) -> str:
    """Table rows; the paper's rows (a 'paper: ...' label) are shaded, the first of them under a rule."""
    out, seen_paper = [], False
    for row in rows:
        first = row[0] if row else None
        paper = isinstance(first, Cell) and first.kind == "label" and first.text.startswith("paper: ")
        cls = ("paper first-paper" if not seen_paper else "paper") if paper else ""
        seen_paper = seen_paper or paper
        cells = "".join(_html_cell(c) for c in row)
        out.append(f'<tr class="{cls}">{cells}</tr>' if cls else f"<tr>{cells}</tr>")
    return "".join(out)


def _html_block(block: Block, out_dir: Path) -> str:
    if isinstance(block, Heading):
        return f"<h{block.level}>{_e(block.text)}</h{block.level}>"
    if isinstance(block, Para):
        cls = next((c for p, c in PARA_CLASSES if block.text.startswith(p) or block.text.endswith(p)), "")
        return f'<p class="{cls}">{_e(block.text)}</p>' if cls else f"<p>{_e(block.text)}</p>"
    if isinstance(block, Grid):
        head = "".join(f"<th>{_e(h)}</th>" for h in block.headers)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{_html_rows(block.rows)}</tbody></table>"
    if isinstance(block, Code):
        return f"<details><summary>{_e(block.summary)}</summary><pre>{_e(block.text)}</pre></details>"
    if isinstance(block, Figure):
        uri = data_uri(block.path)
        if uri is None:
            return f"<p>{_e(block.caption)}: {_e(block.path.name)} is not a PNG file</p>"
        return (f"<figure><img src=\"{uri}\" alt=\"{_e(block.caption)}\">"
                f"<figcaption>{_e(block.caption)}</figcaption></figure>")  # fmt: skip
    if isinstance(block, Link):  # a page beside the report (too large to embed): linked by its relative path
        rel = Path(os.path.relpath(block.path, out_dir)).as_posix()
        return f'<p><a href="{_e(rel)}">{_e(block.text)}</a></p>'
    raise TypeError(f"unknown block {block!r}")


def html_page(blocks: list[Block], title: str, out_dir: Path) -> str:
    """report.html: one file, every figure embedded; interactive pages linked relative to `out_dir`."""
    body = "\n".join(_html_block(b, out_dir) for b in blocks)
    head = f'<meta charset="utf-8">\n<title>{_e(title)}</title>\n<style>{STYLE}</style>'
    return f'<!DOCTYPE html>\n<html lang="en">\n<head>\n{head}\n</head>\n<body>\n{body}\n</body>\n</html>\n'
