"""Notebook display: the HTML form of a printed result.

Result objects print through their ``format()`` method, which lays out text around one or more
fixed-width tables. In a notebook (``_repr_html_``) the same text is shown, with each table
rendered as an HTML table holding exactly the cells of the printed one: the table builders
(``fmt_table``, ``format_table``, the effects tables) report their cells through
:func:`note_table` while :func:`html_repr` runs ``format()``.
"""

from __future__ import annotations

import contextvars
import html
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["TableCells", "html_repr", "in_notebook", "note_table", "render_html",
           "show_progress"]


def in_notebook() -> bool:
    """True inside a Jupyter kernel (IPython with a kernel attached)."""
    ip = sys.modules.get("IPython")
    if ip is None:
        return False
    try:
        shell = ip.get_ipython()
    except Exception:  # pragma: no cover - depends on the front end
        return False
    return shell is not None and hasattr(shell, "kernel")


def show_progress(verbose: bool) -> bool:
    """Whether to show progress bars: ``verbose`` and a terminal or a notebook to show them
    in (tqdm.auto draws notebook widgets there); never in logs and pipes."""
    if not verbose:
        return False
    try:
        tty = sys.stderr.isatty()
    except (AttributeError, ValueError, OSError):
        tty = False
    return tty or in_notebook()


@dataclass(frozen=True)
class TableCells:
    """A printed table: its text, header cells and rows of cells (all strings)."""

    text: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


_capture: contextvars.ContextVar[list | None] = contextvars.ContextVar("bayesglmm_tables",
                                                                      default=None)


def note_table(text: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Record the cells of a printed table while :func:`html_repr` is collecting; returns
    ``text`` unchanged (table builders call it on their result)."""
    tables = _capture.get()
    if tables is not None:
        tables.append(TableCells(text, tuple(map(str, header)),
                                 tuple(tuple(map(str, r)) for r in rows)))
    return text


def _pre(text: str) -> str:
    text = text.strip("\n")
    if not text:
        return ""
    return f'<pre style="margin: 0.2em 0">{html.escape(text)}</pre>'


def _table(t: TableCells) -> str:
    def cell(tag: str, v: str, i: int) -> str:
        align = "left" if i == 0 else "right"
        return f'<{tag} style="text-align: {align}">{html.escape(v)}</{tag}>'

    head = "".join(cell("th", h, i) for i, h in enumerate(t.header))
    body = "".join("<tr>" + "".join(cell("td", v, i) for i, v in enumerate(r)) + "</tr>"
                   for r in t.rows)
    return (f'<table class="dataframe"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table>")


def render_html(text: str, tables: Sequence[TableCells]) -> str:
    """``text`` as HTML: the text of each table in ``tables`` becomes an HTML table, the rest
    preformatted text."""
    parts, rest = [], text
    for t in tables:
        i = rest.find(t.text)
        if i < 0 or not t.text:
            continue
        parts += [_pre(rest[:i]), _table(t)]
        rest = rest[i + len(t.text):]
    parts.append(_pre(rest))
    return '<div class="bayesglmm">' + "".join(p for p in parts if p) + "</div>"


def html_repr(obj: Any) -> str:
    """The HTML form of ``obj.format()`` (what notebooks show for bayesglmm results)."""
    tables: list[TableCells] = []
    token = _capture.set(tables)
    try:
        text = obj.format()
    finally:
        _capture.reset(token)
    return render_html(text, tables)
