"""Two-sample and paired t-tests as Bayesian models.

``ttest("sat ~ cond", data=df, prior=prior_jzs())`` returns a :class:`TTestModel`: a
:class:`~bayesglmm.models.Model` whose Stan program comes from ``templates/ttest.stan.j2``, so
``sample()``, ``optimize()``, ``bridgesampling()`` and ``bayes_factor(fixed={"delta": 0})``
work as for the formula models. ``classic()`` is the Student / Welch / paired t-test computed
here in closed form (it does not use the general ``classic()`` engine of
``bayesglmm/inference/classic.py``; :mod:`bayesglmm.ttest_classic`, re-exported here).

:func:`jzs_bf10` is the independent check of the JZS Bayes factor: the one-dimensional integral
of Rouder et al. (2009, eq. 1) over the Zellner-Siow g, by ``scipy.integrate.quad``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .codegen import jinja_env, tidy_code
from .core.naming import ParamName
from .models import Model
from .persist import Archive, decode, encode, register_model
from .priors import PRIOR_KINDS, Prior, TTestPrior, make_prior
from .ttest_classic import TTestClassic, TTestData, jzs_bf10

__all__ = ["TTestClassic", "TTestModel", "jzs_bf10", "ttest"]


@dataclass(frozen=True, eq=False)
class TTestProgram:
    """The StanProgram-like object of a t-test (code, data, params; no ModelSpec)."""

    code: str
    data: dict[str, Any]
    params: tuple[ParamName, ...]
    re_blocks: tuple[str, ...] = ()
    spec: Any = None


# ----------------------------------------------------------------------------- input


def _two_groups(formula: str, data: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, tuple[str, str],
                                                           str, str]:
    if not isinstance(data, pd.DataFrame):
        raise TypeError("ttest(formula, data=...): data must be a pandas DataFrame.")
    parts = [p.strip() for p in formula.split("~")]
    if len(parts) != 2 or not parts[0] or not parts[1] or any(c in parts[1] for c in "+*:|"):
        raise ValueError(f"ttest formula must be 'y ~ group' with one grouping column, got "
                         f"{formula!r}.")
    yname, gname = parts
    for c in (yname, gname):
        if c not in data.columns:
            raise ValueError(f"ttest: unknown column '{c}'. Columns: {', '.join(map(str, data.columns))}.")
    if not pd.api.types.is_numeric_dtype(data[yname]):
        raise ValueError(f"ttest: the response '{yname}' must be numeric.")
    df = data[[yname, gname]].dropna()
    levels = (list(df[gname].cat.categories) if isinstance(df[gname].dtype, pd.CategoricalDtype)
              else sorted(pd.unique(df[gname]).tolist()))
    levels = [lv for lv in levels if (df[gname] == lv).any()]
    if len(levels) != 2:
        raise ValueError(f"ttest: the grouping column '{gname}' must have exactly two levels, it "
                         f"has {len(levels)}: {', '.join(map(str, levels))}.")
    y1 = df.loc[df[gname] == levels[0], yname].to_numpy(float)
    y2 = df.loc[df[gname] == levels[1], yname].to_numpy(float)
    return y1, y2, (str(levels[0]), str(levels[1])), yname, gname


def _prepare(x: Any, y: Any, data: Any, paired: bool, id: str | None, var_equal: bool
             ) -> TTestData:
    if isinstance(x, str):
        if y is not None:
            raise ValueError("ttest: give either a formula with data= or two vectors x, y.")
        y1, y2, labels, yname, gname = _two_groups(x, data)
        if paired:
            if id is None or id not in data.columns:
                raise ValueError("ttest(paired=True) with a formula needs id= naming the column "
                                 "that matches the pairs.")
            df = data[[yname, gname, id]].dropna()
            wide = df.pivot_table(index=id, columns=gname, values=yname, aggfunc="first")
            wide.columns = [str(c) for c in wide.columns]
            wide = wide.dropna()
            if len(wide) < 2:
                raise ValueError("ttest(paired=True): fewer than two complete pairs.")
            d = (wide[labels[0]] - wide[labels[1]]).to_numpy(float)
            return TTestData(d, None, labels, True, True, yname)
        return TTestData(y1, y2, labels, False, bool(var_equal), yname)
    if y is None:
        raise ValueError("ttest needs two samples (x, y) or a formula 'y ~ group' with data=; "
                         "for a one-sample test use lm('y ~ 1').")
    a = np.asarray(x, dtype=float).ravel()
    b = np.asarray(y, dtype=float).ravel()
    if paired:
        if a.size != b.size:
            raise ValueError(f"ttest(paired=True): x and y must have the same length "
                             f"({a.size} vs {b.size}).")
        ok = np.isfinite(a) & np.isfinite(b)
        return TTestData(a[ok] - b[ok], None, ("x", "y"), True, True)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size < 2 or b.size < 2:
        raise ValueError("ttest: each group needs at least two observations.")
    return TTestData(a, b, ("x", "y"), False, bool(var_equal))


# ----------------------------------------------------------------------------- program


def _ttest_prior(prior: Prior) -> TTestPrior:
    """How the t-test uses ``prior`` (its row of the prior table, :data:`PRIOR_KINDS`)."""
    if prior.kind.ttest is None:
        *first, last = (f"prior_{k.name}" for k in PRIOR_KINDS.values() if k.ttest)
        raise ValueError(f"ttest supports {', '.join(first)} and {last}, not "
                         f"prior_{prior.name}().")
    return prior.kind.ttest


def _params(td: TTestData, effect: str) -> tuple[ParamName, ...]:
    out = [ParamName("diff", "diff", "b"), ParamName("delta", "delta", "b")]
    if td.paired:
        out.append(ParamName("sd_diff", "sd_diff", "family"))
    else:
        out.append(ParamName("total_mean", "total_mean", "Intercept"))
        if td.var_equal:
            out.append(ParamName("sd", "sd", "family"))
        else:
            out += [ParamName("sd[1]", "sd[1]", "family"), ParamName("sd[2]", "sd[2]", "family")]
        out += [ParamName("mean0", "mean0", "aux"), ParamName("mean1", "mean1", "aux")]
    return tuple(out)


def _program(td: TTestData, prior: Prior, fixed_value: float | None) -> TTestProgram:

    tp = _ttest_prior(prior)
    pdata = tp.data(prior, td.paired, td.y1.size, 0 if td.paired else td.y2.size)
    effect = tp.effect
    code = tidy_code(jinja_env().get_template("ttest.stan.j2").render(
        paired=td.paired, unequal=not td.var_equal, prior=tp.label, effect_prior=tp.effect_prior,
        effect=effect))
    if td.paired:
        data: dict[str, Any] = {"N": int(td.y1.size), "d": td.y1}
    else:
        data = {"N1": int(td.y1.size), "N2": int(td.y2.size), "y1": td.y1, "y2": td.y2}
    data["effect_fixed"] = int(fixed_value is not None)
    data["effect_value"] = 0.0 if fixed_value is None else float(fixed_value)
    data.update(pdata)
    return TTestProgram(code, data, _params(td, effect))


# ----------------------------------------------------------------------------- model


class TTestModel(Model):
    """A t-test as a Stan model (see :func:`ttest`)."""

    def __init__(self, td: TTestData, prior: Prior, fixed_value: float | None = None,
                 formula: str | None = None):
        super().__init__(_program(td, prior, fixed_value), wrapper="ttest", formula=formula,
                         family="gaussian", prior=prior, name="ttest")
        self.ttest_data = td
        self.prior_name = prior.name
        self.fixed_value = fixed_value

    @property
    def effect(self) -> str:
        """The parameter that can be held fixed: 'delta' (JZS prior) or 'diff'."""
        return self.prior.kind.ttest.effect

    def call(self) -> str:
        kind = "paired" if self.ttest_data.paired else (
            "two-sample" if self.ttest_data.var_equal else "Welch")
        return f"ttest({self.formula or 'x, y'}, {kind}, prior = {self.prior_name})"

    def with_fixed(self, fixed: dict[str, float]) -> TTestModel:
        """The same t-test with the effect held at a value through data.

        This is the restricted model of ``bayes_factor(fixed={"delta": 0})``.

        Parameters
        ----------
        fixed : dict
            ``{effect: value}`` with the model's effect (``"delta"`` under the JZS prior,
            else ``"diff"``).

        Returns
        -------
        TTestModel
            A new model.

        Raises
        ------
        ValueError
            Any other name than the effect.

        Examples
        --------
        >>> m0 = bayesglmm.ttest("sat ~ cond", debate, prior="jzs").with_fixed({"delta": 0})  # doctest: +SKIP
        """
        if set(fixed) != {self.effect}:
            raise ValueError(f"ttest: only the effect can be held fixed, as "
                             f"fixed={{'{self.effect}': value}} (under prior_{self.prior_name}()); "
                             f"got {sorted(fixed)}.")
        return TTestModel(self.ttest_data, self.prior, float(fixed[self.effect]), self.formula)

    def classic(self, verbose: bool = True) -> TTestClassic:
        """The classical t-test in closed form: Student (equal variances, df = n1 + n2 - 2),
        Welch (Satterthwaite df) or paired (df = n - 1).

        Parameters
        ----------
        verbose : bool
            Print the result.

        Returns
        -------
        TTestClassic
            The table (difference, standardised effect, means and SDs), t, df, p, logLik,
            AIC and BIC.

        Raises
        ------
        ValueError
            The t-test has a prior other than the flat prior (use ``optimize()`` or
            ``sample()``).

        Examples
        --------
        >>> res = bayesglmm.ttest("sat ~ cond", debate).classic()  # doctest: +SKIP
        >>> res.t, res.df, res.p  # doctest: +SKIP
        """
        if self.prior.kind.proper:
            raise ValueError("classic() needs the flat prior (ttest(..., prior=None)); this t-test "
                             f"has prior_{self.prior_name}(): use optimize() or sample().")
        res = TTestClassic.from_data(self.ttest_data)
        if verbose:
            print(res.format())
        return res


def ttest(
    x: Any,
    y: Any = None,
    data: pd.DataFrame | None = None,
    paired: bool = False,
    id: str | None = None,
    var_equal: bool = True,
    prior: Any = None,
    y_range: tuple[float, float] | None = None,
) -> TTestModel:
    """Two-sample or paired t-test as a Bayesian model.

    Parameters
    ----------
    x : str or array-like
        A formula ``"y ~ group"`` (with ``data``; exactly two groups, group 1 = first level) or
        the first sample.
    y : array-like, optional
        The second sample.
    data : DataFrame, optional
    paired : bool
        Paired test on the differences (formula: pairs matched by the ``id`` column).
    id : str, optional
    var_equal : bool
        False: a separate SD per group (Welch).
    prior : prior object, name or None
        prior_flat() (default), prior_normal(), prior_weak() (needs y_range), prior_jzs(r).
    y_range : (low, high), optional

    Returns
    -------
    TTestModel
        Parameters ``diff`` (mean of group 1 - mean of group 2), ``delta`` (standardised),
        ``total_mean``, ``sd`` (``sd[1]``, ``sd[2]``; paired: ``sd_diff``), ``mean0``, ``mean1``.
    """
    td = _prepare(x, y, data, paired, id, var_equal)
    p = make_prior(prior, y_range)
    if paired and not var_equal:
        raise ValueError("ttest: var_equal=False applies to two independent samples, not to "
                         "paired=True.")
    return TTestModel(td, p, None, x if isinstance(x, str) else None)


# ----------------------------------------------------------------------------- saving


def _save_model(model: TTestModel, ar: Archive) -> Any:
    td = model.ttest_data
    return encode({"y1": td.y1, "y2": td.y2, "labels": td.labels, "paired": td.paired,
                   "var_equal": td.var_equal, "response": td.response, "prior": model.prior,
                   "fixed_value": model.fixed_value, "formula": model.formula}, ar, "model.inputs")


def _load_model(inputs: Any, arrays: dict[str, np.ndarray]) -> TTestModel:
    a = decode(inputs, arrays)
    td = TTestData(a["y1"], a["y2"], tuple(a["labels"]), a["paired"], a["var_equal"],
                   a["response"])
    return TTestModel(td, a["prior"], a["fixed_value"], a["formula"])


register_model("ttest", _save_model, _load_model)
