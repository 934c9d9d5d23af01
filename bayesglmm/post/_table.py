"""A DataFrame that prints with a heading and fixed number formats (anova / lsmeans tables)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..core.display import html_repr, note_table
from ..results_classic import format_p

__all__ = ["PrintedTable", "format_table"]


def format_table(df: pd.DataFrame, formats: dict[str, str], default: str = "{:.5f}",
                 headers: dict[str, str] | None = None) -> str:
    """Right-aligned text table; p columns (names starting with 'Pr') as in R's printCoefmat."""
    headers = headers or {}
    cols = [str(df.index.name or "")] + [headers.get(str(c), str(c)) for c in df.columns]
    body = [[str(i) for i in df.index]]
    for c in df.columns:
        out = []
        for v in df[c]:
            if isinstance(v, str):
                out.append(v)
            elif v is None or not np.isfinite(v):
                out.append("")
            elif str(c).startswith("Pr") or str(c) == "p":
                out.append(format_p(float(v)))
            else:
                out.append(formats.get(str(c), default).format(v))
        body.append(out)
    widths = [max([len(h)] + [len(x) for x in col]) for h, col in zip(cols, body)]
    lines = [" ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(cols, widths)))]
    for r in range(len(df)):
        lines.append(" ".join(body[i][r].ljust(widths[i]) if i == 0 else body[i][r].rjust(widths[i])
                              for i in range(len(cols))))
    return note_table("\n".join(lines), cols,
                      [[body[i][r] for i in range(len(cols))] for r in range(len(df))])


class PrintedTable(pd.DataFrame):
    """DataFrame with ``heading`` (and optional ``notes``) shown when printed."""

    _metadata = ["heading", "formats", "notes", "headers"]

    def __init__(self, *args, heading: str = "", formats: dict | None = None,
                 notes: list[str] | None = None, headers: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.heading = heading
        self.formats = dict(formats or {})
        self.notes = list(notes or [])
        self.headers = dict(headers or {})

    @property
    def _constructor(self):
        return PrintedTable

    def format(self) -> str:
        """The printed form: the heading, the table and the notes.

        Returns
        -------
        str
            What ``print()`` shows.
        """
        parts = [self.heading] if getattr(self, "heading", "") else []
        parts.append(format_table(pd.DataFrame(self), getattr(self, "formats", {}) or {},
                                  headers=getattr(self, "headers", {}) or {}))
        parts += getattr(self, "notes", []) or []
        return "\n".join(parts)

    def __repr__(self) -> str:
        return self.format()

    def __str__(self) -> str:
        return self.format()

    def _repr_html_(self) -> str:
        """Notebooks: the printed heading, table and notes, the table as HTML."""
        return html_repr(self)

    def to_frame(self) -> pd.DataFrame:
        """The table as a plain DataFrame.

        Returns
        -------
        pandas.DataFrame
            A copy without the heading and notes.
        """
        return pd.DataFrame(self).copy()
