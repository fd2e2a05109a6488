"""report.md and a self-contained report.html (figures as base64 PNG data URIs, no external CSS or JS)."""

from __future__ import annotations

import html
import os
from pathlib import Path

from .document import Block, Code, Figure, Grid, Heading, Para
from .figures import data_uri
from .tables import Cell, cell_text

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.missing { color: #999; }
td.published { background: #fafaf0; color: #555; }
span.paper { color: #777; font-size: 0.85em; }
figure { display: inline-block; margin: 0.5em; max-width: 100%; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.85em; color: #444; }
pre { background: #f7f7f7; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
details { margin: 0.3em 0; }
"""


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
        return f"**{block.summary}**\n\n{fence}yaml\n{block.text.rstrip()}\n{fence}"
    if isinstance(block, Figure):
        rel = Path(os.path.relpath(block.path, out_dir)).as_posix()
        return f"![{block.caption}](<{rel}>)\n*{block.caption}*"
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
    if value.kind == "published":
        return f'<td class="published">{_e(cell_text(value))}</td>'
    ours = "not run" if value.value is None else f"{value.value:.2f}"
    cls = "missing" if value.value is None else "run"
    paper = ""
    if value.published is not None:
        who = "paper" if value.published.method == "iBOT" else value.published.method
        paper = f' <span class="paper">({_e(who)} {value.published.value:.1f})</span>'
    return f'<td class="{cls}">{_e(ours)}{paper}</td>'


def _html_block(block: Block) -> str:
    if isinstance(block, Heading):
        return f"<h{block.level}>{_e(block.text)}</h{block.level}>"
    if isinstance(block, Para):
        return f"<p>{_e(block.text)}</p>"
    if isinstance(block, Grid):
        head = "".join(f"<th>{_e(h)}</th>" for h in block.headers)
        body = "".join("<tr>" + "".join(_html_cell(c) for c in row) + "</tr>" for row in block.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    if isinstance(block, Code):
        return f"<details><summary>{_e(block.summary)}</summary><pre>{_e(block.text)}</pre></details>"
    if isinstance(block, Figure):
        uri = data_uri(block.path)
        if uri is None:
            return f"<p>{_e(block.caption)}: {_e(block.path.name)} is not a PNG file</p>"
        return (f"<figure><img src=\"{uri}\" alt=\"{_e(block.caption)}\">"
                f"<figcaption>{_e(block.caption)}</figcaption></figure>")  # fmt: skip
    raise TypeError(f"unknown block {block!r}")


def html_page(blocks: list[Block], title: str) -> str:
    """report.html: one file, every figure embedded."""
    body = "\n".join(_html_block(b) for b in blocks)
    head = f'<meta charset="utf-8">\n<title>{_e(title)}</title>\n<style>{STYLE}</style>'
    return f'<!DOCTYPE html>\n<html lang="en">\n<head>\n{head}\n</head>\n<body>\n{body}\n</body>\n</html>\n'
