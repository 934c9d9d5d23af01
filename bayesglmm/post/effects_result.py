"""The results of :func:`~bayesglmm.post.effects.conditional_effects` and
:func:`~bayesglmm.post.effects.simple_effects`: their tables, printed forms and plots."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..core.display import html_repr, note_table
from .ordinal import plot_categories

__all__ = ["ConditionalEffects", "SimpleEffects"]


class _TableResult:
    """What both results share: the printed form is ``format()``, the table is ``data``."""

    data: pd.DataFrame

    def format(self) -> str:  # pragma: no cover - every result defines it
        """The printed form.

        Returns
        -------
        str
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.format()

    def _repr_html_(self) -> str:
        """Notebooks: the printed form, the table as HTML."""
        return html_repr(self)

    def to_frame(self) -> pd.DataFrame:
        """The table (``data``) as a DataFrame.

        Returns
        -------
        pandas.DataFrame
        """
        return self.data.copy()


@dataclass(repr=False)  # the printed form is the repr
class ConditionalEffects(_TableResult):
    """Result of :func:`conditional_effects`: ``data`` (columns focal, [moderator],
    [category], estimate, se, lower, upper), ``focal``, ``moderator``, ``moderator_values``,
    ``prob``, ``method`` ("draws" or "delta method"), ``quantity`` (what the estimates are),
    ``categories`` (True: one row per grid point and response category, ordinal families)."""

    data: pd.DataFrame
    focal: str
    moderator: str | None
    moderator_values: list[Any]
    moderator_rule: str
    prob: float
    method: str
    categorical_focal: bool
    observed: pd.DataFrame = field(repr=False, default=None)
    response: str = "y"
    quantity: str = "Predicted value"
    categories: bool = False

    def format(self, max_rows: int = 20) -> str:
        """The printed form: the settings and the table (``max_rows`` rows at most).

        Parameters
        ----------
        max_rows : int
            Rows of the table shown.

        Returns
        -------
        str
        """
        title = f"Conditional effect of {self.focal}" + (f" by {self.moderator}" if self.moderator else "")
        lines = [title, f"Focal predictor: {self.focal}"]
        if self.moderator:
            vals = ", ".join(str(v) for v in self.moderator_values)
            lines.append(f"Moderator: {self.moderator} at {vals} ({self.moderator_rule})")
        lines.append(f"{self.quantity} (random effects at 0), {self.prob:.0%} interval "
                     f"({self.method}); other predictors at their mean / most frequent level")
        lines.append(_table(self.data.head(max_rows), 3))
        if len(self.data) > max_rows:
            lines.append(f"... {len(self.data) - max_rows} more rows in .data")
        return "\n".join(lines)

    def _repr_png_(self) -> bytes:
        """Notebooks show the plot (printing draws the plot)."""
        import io

        import matplotlib.pyplot as plt

        fig = self.plot()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        plt.close(fig)
        return buf.getvalue()

    def plot(self, observed: bool = False, ax: Any = None):
        """Line + band per moderator value (numeric focal) or points + error bars (categorical
        focal); ``observed=True`` overlays the data. Category probabilities (``categories``):
        one line or set of points per category, one panel per moderator value (``ax`` only
        without a moderator; ``observed`` is not drawn).

        Parameters
        ----------
        observed : bool
            Overlay the observed data.
        ax : matplotlib.axes.Axes, optional
            Draw into these axes (None: a new figure).

        Returns
        -------
        matplotlib.figure.Figure
        """
        import matplotlib.pyplot as plt

        if self.categories:
            return plot_categories(self.data, self.focal, self.moderator,
                                   self.moderator_values, self.categorical_focal, ax,
                                   self.response)

        if ax is None:
            fig, ax = plt.subplots(figsize=(6, 4))
        else:
            fig = ax.figure
        groups = ([(None, self.data)] if self.moderator is None else
                  [(v, self.data[self.data[self.moderator] == v]) for v in self.moderator_values])
        n = len(groups)
        for i, (val, d) in enumerate(groups):
            label = None if val is None else str(val)
            if self.categorical_focal:
                x = np.arange(len(d)) + (i - (n - 1) / 2) * 0.12
                ax.errorbar(x, d["estimate"], yerr=[d["estimate"] - d["lower"],
                            d["upper"] - d["estimate"]], fmt="o", capsize=3, label=label)
                ax.set_xticks(np.arange(len(d)), [str(v) for v in d[self.focal]])
            else:
                line, = ax.plot(d[self.focal], d["estimate"], label=label)
                ax.fill_between(d[self.focal], d["lower"], d["upper"], alpha=0.2,
                                color=line.get_color())
        if observed and self.observed is not None:
            obs = self.observed
            xs = obs[self.focal]
            if self.categorical_focal:
                cats = [str(v) for v in self.data[self.focal].unique()]
                pos = {c: j for j, c in enumerate(cats)}
                xs = xs.astype(str).map(pos).to_numpy(dtype=float)
                xs = xs + np.random.default_rng(1).uniform(-0.15, 0.15, len(xs))
            ax.scatter(xs, obs[self.response], s=8, color="0.4", alpha=0.4, label="observed")
        ax.set_xlabel(self.focal)
        ax.set_ylabel(self.quantity)
        ax.set_title(f"Conditional effect of {self.focal}"
                     + (f" by {self.moderator}" if self.moderator else ""))
        if self.moderator is not None:
            ax.legend(title=self.moderator)
        fig.tight_layout()
        return fig


@dataclass(repr=False)
class SimpleEffects(_TableResult):
    """Result of :func:`simple_effects`: ``data`` with columns moderator, <moderator>, term,
    estimate, se, lower, upper."""

    data: pd.DataFrame
    focal: str
    moderator: str
    prob: float
    method: str

    def format(self) -> str:
        """The printed form: the settings and the table.

        Returns
        -------
        str
        """
        return "--- Simple Effects Analysis ---\n" + _table(self.data, 3)


def _table(df: pd.DataFrame, digits: int) -> str:
    fmt = {c: (lambda v, d=digits: "NA" if not np.isfinite(v) else f"{v:.{d}f}")
           for c in df.columns if pd.api.types.is_float_dtype(df[c])}
    rows = [[fmt[c](v) if c in fmt else str(v) for c, v in zip(df.columns, r)]
            for r in df.itertuples(index=False)]
    return note_table(df.to_string(index=False, formatters=fmt), [str(c) for c in df.columns], rows)
