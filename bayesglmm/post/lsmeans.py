"""``lsmeans(fit, specs, ...)``: estimated marginal means (least-squares means) and their
contrasts, following emmeans.

Reference grid: every combination of the levels of the categorical predictors, numeric
predictors at their means; a marginal mean is the equally weighted average of the grid
predictions (link scale) over the levels of the factors not in ``specs``/``by``. Its
coefficient vector l gives estimate l'beta and SE sqrt(l'V l) with the FULL covariance V of the
fixed effects. Sampled fits: posterior mean, SD and 2.5/97.5 % quantiles of l'beta over the draws.

Degrees of freedom (the ``df`` column, t quantiles and t tests):

* gaussian ``classic()`` fits with random effects: the Satterthwaite df of each mean's or
  contrast's own vector l, df = 2 (l'C l)^2 / (g'A g) with g_k = l' dC/dtheta_k l (see
  :class:`~bayesglmm.inference.satterthwaite.Satterthwaite`): emmeans with
  ``lmer.df = "satterthwaite"`` (lmerTest). In balanced designs this equals emmeans' default
  Kenward-Roger df and the classical split-plot df (checked in tests/test_post.py). It is not
  the rule "the smallest df among the
  model's coefficients", which gives e.g. the within-group df to a mean that also carries the
  between-group variance;
* gaussian fits without random effects: the residual df N - rank(X);
* other families, MAP and sampled fits: infinite (z), as emmeans' asymptotic df for GLMMs
  (refs 02_cbpp: ``df = Inf``).
``type="response"``: inverse link of the estimate and of the CI limits, delta-method SE (as
emmeans ``type = "response"``).

Zero-inflated families: the link scale is that of the count part (log of the mean of the
counts that are not structural zeros; contrasts are log rate ratios); ``type="response"``
gives the mean including the zero part, (1 - zi) exp(eta), averaged with equal weights over
the reference-grid cells of each mean (zero-part predictors that are not in the model formula
at their mean or most frequent level), with a delta-method SE over the joint covariance of
(b, b_zi) or the draws of sampled fits.

Ordinal families (``ordered``; ``sequential`` with ``category_specific=False``), see
:mod:`bayesglmm.post.ordinal`: ``type="link"`` is emmeans' latent scale, x'b minus the mean of
the cutpoints (its SE includes the cutpoints' covariance; contrasts equal differences of x'b);
``type="response"`` the mean class and ``type="prob"`` the category probabilities, averaged
over the reference-grid cells. Category-specific sequential models are refused.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ._fixed import FixedInfo, design_of, fixed_info, grid, predictors
from ._table import PrintedTable
from ._zi import zi_weighted_estimates
from .anova import wald_statistic
from .fit_coefficients import model_spec
from .ordinal import ordinal_estimates, ordinal_response

__all__ = ["LSMeans", "holm", "lsmeans"]

HEADERS = {"estimate": "estimate", "se": "Std. Error", "df": "df", "lower": "Lower 95%",
           "upper": "Upper 95%", "t": "t value", "z": "z value", "p": "Pr"}
FORMATS = {"df": "{:.1f}", "t": "{:.3f}", "z": "{:.3f}", "F": "{:.3f}", "num_df": "{:.0f}",
           "den_df": "{:.1f}", "Chisq": "{:.3f}"}


def holm(p: Sequence[float]) -> np.ndarray:
    """Holm step-down adjusted p-values (R's p.adjust(method = "holm")).

    Parameters
    ----------
    p : sequence of float
        Unadjusted p-values.

    Returns
    -------
    numpy.ndarray
        Adjusted p-values, in the input order.

    Examples
    --------
    >>> holm([0.01, 0.04, 0.03]).round(2).tolist()
    [0.03, 0.06, 0.06]
    """
    p = np.asarray(p, dtype=float)
    m = p.size
    order = np.argsort(p)
    adj = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adj
    return out


ADJUST = {"holm": holm, "none": lambda p: np.asarray(p, dtype=float),
          "bonferroni": lambda p: np.minimum(1.0, np.asarray(p, dtype=float) * len(p))}


class LSMeans(PrintedTable):
    """Marginal means (rows labelled ``cond=0`` or ``a=1:b=2``) with ``contrasts`` (pairwise
    table or None) and ``simple_tests`` (per-level tests with ``simple=``) attached; printing
    shows all of them; :meth:`plot` draws the means."""

    _metadata = PrintedTable._metadata + ["contrasts", "simple_tests", "specs", "by", "ylabel"]

    @property
    def _constructor(self):
        return LSMeans

    def format(self) -> str:
        """The printed form: the heading, the table of means (and contrasts) and the notes.

        Returns
        -------
        str
            What ``print()`` shows.
        """
        shown = pd.DataFrame(self)
        shown = shown[[c for c in shown.columns if not str(c).startswith("_")]]
        parts = [PrintedTable(shown, heading=self.heading, formats=self.formats,
                              headers=self.headers).format()]
        st = getattr(self, "simple_tests", None)
        if st is not None:
            parts += ["", st.format()]
        ct = getattr(self, "contrasts", None)
        if ct is not None:
            parts += ["", ct.format()]
        return "\n".join(parts)

    def plot(self, error_bar: str = "se"):
        """Bar chart of the means with error bars, one colour per level of ``by``.

        Parameters
        ----------
        error_bar : {"se", "ci"}
            +-1 SE or the 95 % interval.

        Returns
        -------
        matplotlib.figure.Figure
        """
        import matplotlib.pyplot as plt

        if error_bar not in ("se", "ci"):
            raise ValueError(f"error_bar must be 'se' or 'ci', not {error_bar!r}")
        df = pd.DataFrame(self)
        fig, ax = plt.subplots(figsize=(6, 4))
        groups = df["_by"].unique() if "_by" in df else [None]
        width = 0.8 / len(groups)
        labels = list(dict.fromkeys(df["_spec"]))
        x = np.arange(len(labels))
        for k, g in enumerate(groups):
            sub = df if g is None else df[df["_by"] == g]
            pos = x[[labels.index(s) for s in sub["_spec"]]] + (k - (len(groups) - 1) / 2) * width
            if error_bar == "se":
                err = sub["se"].to_numpy()
            else:
                err = np.vstack([sub["estimate"] - sub["lower"], sub["upper"] - sub["estimate"]])
            ax.bar(pos, sub["estimate"], width=width * 0.95, yerr=err, capsize=4,
                   label=None if g is None else str(g))
        ax.set_xticks(x, labels)
        ax.set_xlabel(" : ".join(self.specs))
        ax.set_ylabel(getattr(self, "ylabel", None) or "Marginal mean")
        ax.set_title("Marginal Means")
        if groups[0] is not None:
            ax.legend(title=" : ".join(self.by))
        fig.tight_layout()
        return fig


def _as_list(x, what: str, factors: dict) -> list[str]:
    if x is None:
        return []
    xs = [x] if isinstance(x, str) else list(x)
    for v in xs:
        if v not in factors:
            raise ValueError(
                f"{what}={v!r} must be a categorical predictor of the model "
                f"(categorical: {', '.join(factors) or 'none'}; convert numeric codes with factors=)"
            )
    return xs


def _label(keys: Sequence[str], values: Sequence) -> str:
    return ":".join(f"{k}={v}" for k, v in zip(keys, values))


def _infer(info: FixedInfo, L: np.ndarray, fit) -> dict[str, np.ndarray]:
    """estimate, se, df, lower, upper (and stat, p) of the rows of L (link scale)."""
    if info.draws is not None:
        d = info.draws @ L.T
        lo, hi = np.quantile(d, [0.025, 0.975], axis=0)
        return {"estimate": d.mean(axis=0), "se": d.std(axis=0, ddof=1),
                "df": np.full(L.shape[0], np.nan), "lower": lo, "upper": hi, "draws": d}
    est = L @ info.beta
    se = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", L, info.V, L), 0.0))
    df = np.array([info.df(row) for row in L])
    q = np.where(np.isfinite(df), stats.t.ppf(0.975, np.where(np.isfinite(df), df, 1.0)),
                 stats.norm.ppf(0.975))
    stat = est / se
    p = np.where(np.isfinite(df), 2 * stats.t.sf(np.abs(stat), np.where(np.isfinite(df), df, 1.0)),
                 2 * stats.norm.sf(np.abs(stat)))
    return {"estimate": est, "se": se, "df": df, "lower": est - q * se, "upper": est + q * se,
            "stat": stat, "p": p}


def _to_response(r: dict, linkinv, info: FixedInfo) -> dict:
    if "draws" in r:
        d = linkinv(r["draws"])
        lo, hi = np.quantile(d, [0.025, 0.975], axis=0)
        return {**r, "estimate": d.mean(axis=0), "se": d.std(axis=0, ddof=1), "lower": lo,
                "upper": hi}
    est = r["estimate"]
    h = 1e-6
    deriv = (linkinv(est + h) - linkinv(est - h)) / (2 * h)
    return {**r, "estimate": linkinv(est), "se": np.abs(deriv) * r["se"],
            "lower": linkinv(r["lower"]), "upper": linkinv(r["upper"])}


def lsmeans(fit, specs: str | Sequence[str], by: str | Sequence[str] | None = None,
            pairwise: bool = False, simple: str | None = None, adjust: str = "holm",
            type: str = "link", protect: bool = False) -> LSMeans:
    """Estimated marginal means of ``specs`` (within levels of ``by``), as emmeans.

    Parameters
    ----------
    fit
        A fit from ``classic()``, ``optimize()`` or ``sample()`` of a formula model.
    specs, by
        Categorical predictors (names or lists of names).
    pairwise
        Add all pairwise differences of the ``specs`` means (within ``by``), "(a=1) - (a=2)",
        with tests adjusted by ``adjust`` ("holm", "bonferroni" or "none") per ``by`` group.
    simple
        A categorical predictor: the ``specs`` means within each of its levels, a Wald test
        (F with Satterthwaite df for gaussian classic fits, chi-square otherwise) of equal
        means per level, and the pairwise comparisons within each level.
    type
        "link" (default) or "response" (inverse link; delta-method SE; back-transformed CI).
        Ordinal families (ordered, and sequential with ``category_specific=False``): "link" is
        the latent scale, the linear predictor minus the mean cutpoint (emmeans' default
        ``mode = "latent"``); "response" the mean class sum_k k P(y = k) (emmeans
        ``mode = "mean.class"``) and "prob" the probability of each category (``mode =
        "prob"``), one row per mean and category, averaged over the reference grid; the
        contrasts stay on the latent scale, where they equal the coefficients.
    protect
        With ``simple``: pairwise p set to 1 in levels whose simple-effect test has p > .05.

    Returns
    -------
    LSMeans
        A table (a DataFrame) of the means with SE, df and interval, followed by the
        contrasts when asked; printed with its heading and notes, and drawn by ``.plot()``.

    Raises
    ------
    ValueError
        A predictor that is not a categorical predictor of the model, or a bad ``type`` or
        ``adjust``.

    Examples
    --------
    >>> fit = bayesglmm.lmer("sat ~ cond * skill + (1 | group)", debate).classic()  # doctest: +SKIP
    >>> bayesglmm.lsmeans(fit, "cond", by="skill", pairwise=True)  # doctest: +SKIP
    """
    if type not in ("link", "response", "prob"):
        raise ValueError(f"type must be 'link', 'response' or 'prob', not {type!r}")
    if adjust not in ADJUST:
        raise ValueError(f"adjust must be one of {', '.join(ADJUST)}, not {adjust!r}")
    spec = model_spec(fit, "lsmeans()")
    ordinal = ordinal_response(spec)
    if type == "prob" and not ordinal:
        raise ValueError(f"type='prob' (probabilities of the response categories) needs an "
                         f"ordinal family, not '{spec.family.name}'; use 'link' or 'response'")
    info = fixed_info(fit, cutpoints=ordinal)
    factors, numeric = predictors(spec)
    specs_l = _as_list(specs, "specs", factors)
    if not specs_l:
        raise ValueError("specs must name at least one categorical predictor")
    by_l = _as_list(by, "by", factors) + _as_list(simple, "simple", factors)
    if set(specs_l) & set(by_l):
        raise ValueError("a variable cannot be both in specs and in by/simple")
    g = grid(spec, {k: [float(spec.data[k].mean())] for k in numeric})
    d = design_of(spec, g, "fit")
    pos = {n: i for i, n in enumerate(d.names)}
    nb = sum(n in pos for n in info.names)  # Intercept, b[...]; an ordinal fit's cutpoints after
    Xb = d.X[:, [pos[n] for n in info.names[:nb]]]
    # latent scale of an ordinal family: x'b - mean(cutpoints)
    ncut = len(info.names) - nb
    X = np.column_stack([Xb, np.full((len(g), ncut), -1 / max(ncut, 1))])
    keys = by_l + specs_l
    combos = list(itertools.product(*[factors[k] for k in keys]))
    W = np.zeros((len(combos), len(g)))  # equal weights of the grid rows of each mean
    for r, vals in enumerate(combos):
        mask = np.ones(len(g), dtype=bool)
        for k, v in zip(keys, vals):
            mask &= (g[k] == v).to_numpy()
        W[r] = mask / mask.sum()
    L = W @ X
    res = _infer(info, L, fit)
    zero_part = spec.zi is not None
    if type == "response" and zero_part:  # average of the cell means (1 - zi) exp(eta)
        A = d.X[:, [pos[n] for n in ["Intercept"] + [f"b[{n}]" for n in spec.fixed.names]]]
        zm = zi_weighted_estimates(fit, spec, g, A, np.zeros(len(g)), W, 0.95)
        res = {**res, **{c: zm[c].to_numpy() for c in zm.columns}}
    elif ordinal and type != "link":  # mean class or category probabilities
        om = ordinal_estimates(fit, spec, Xb, info.names[:nb], np.zeros(len(g)), W, 0.95,
                               categories=type == "prob")
        res = {"df": np.full(len(om), np.nan if info.draws is not None else math.inf),
               **{c: om[c].to_numpy() for c in om.columns}}
    elif type == "response" and spec.family.link != "identity":
        res = _to_response(res, spec.family.linkinv, info)
    rows = [(_label(keys, v), _label(specs_l, v[len(by_l):]), _label(by_l, v[: len(by_l)]))
            for v in combos]
    by_shown = by_l
    if type == "prob":  # one row per mean and category
        resp = spec.response.name
        rows = [(f"{lab}:{resp}={c}", sp, f"{b}:{resp}={c}" if b else f"{resp}={c}")
                for lab, sp, b in rows for c in spec.response.levels]
        by_shown = by_l + [resp]
    means = pd.DataFrame({c: res[c] for c in ("estimate", "se", "df", "lower", "upper")},
                         index=pd.Index([r[0] for r in rows], name="level"))
    means["_spec"] = [r[1] for r in rows]
    means["_by"] = [r[2] for r in rows]
    if not by_shown:
        means = means.drop(columns="_by")
    scale = "response scale" if type == "response" and spec.family.link != "identity" else "link scale"
    if zero_part:
        scale = ("response scale: mean including the zero part" if type == "response"
                 else "link scale of the count part")
    if ordinal:
        scale = {"link": "latent scale: linear predictor minus the mean cutpoint",
                 "response": f"response scale: mean class, sum of k P({spec.response.name} = k)",
                 "prob": f"probabilities of the categories of {spec.response.name}"}[type]
    out = LSMeans(means, heading=f"Estimated marginal means ({scale}, equal weights)",
                  formats=FORMATS, headers=HEADERS)
    out.specs, out.by = specs_l, by_shown
    out.ylabel = "Probability" if type == "prob" else "Marginal mean"
    out.contrasts = out.simple_tests = None
    # contrasts within each by group
    n_spec = int(np.prod([len(factors[k]) for k in specs_l]))
    rows, simple_rows = [], []
    stat_name = "t" if (info.gaussian and info.draws is None and info.kind == "classic") else "z"
    for start in range(0, len(combos), n_spec):
        block = list(range(start, start + n_spec))
        byl = _label(by_l, combos[start][: len(by_l)]) if by_l else ""
        pairs = list(itertools.combinations(block, 2))
        Lc = np.array([L[i] - L[j] for i, j in pairs])
        rc = _infer(info, Lc, fit)
        simple_p = math.nan
        if simple is not None:
            Ld = Lc[: n_spec - 1]  # first level minus each other level: spans the differences
            if info.draws is None:
                sat = getattr(fit, "satterthwaite", None)
                if stat_name == "t" and sat is not None:
                    F, num, den, simple_p = sat.ftest(Ld, info.beta)
                    simple_rows.append((byl, num, den, F, simple_p))
                else:

                    W, k = wald_statistic(Ld, info.beta, info.V)
                    simple_p = float(stats.chi2.sf(W, k))
                    simple_rows.append((byl, k, W, simple_p))
        p = ADJUST[adjust](rc["p"]) if "p" in rc else np.full(len(pairs), np.nan)
        if protect and simple is not None and simple_p > 0.05:
            p = np.ones_like(p)
        for k, (i, j) in enumerate(pairs):
            lab = f"({_label(specs_l, combos[i][len(by_l):])}) - ({_label(specs_l, combos[j][len(by_l):])})"
            row = {"contrast": (f"{byl}: " if byl else "") + lab, "estimate": rc["estimate"][k],
                   "se": rc["se"][k], "df": rc["df"][k]}
            if "p" in rc:
                row[stat_name] = rc["stat"][k]
                row["p"] = p[k]
            else:
                row["lower"], row["upper"] = rc["lower"][k], rc["upper"][k]
            rows.append(row)
    if pairwise or simple is not None:
        note = [f"P values adjusted by the {adjust} method" + (" within each level of " + ", ".join(by_l) if by_l else "")] if info.draws is None else []
        out.contrasts = PrintedTable(pd.DataFrame(rows).set_index("contrast"),
                                     heading=f"Pairwise comparisons ({'latent' if ordinal else 'link'} scale)",
                                     formats=FORMATS,
                                     headers=HEADERS, notes=note)
    if simple_rows:
        cols = (["level", "num_df", "den_df", "F", "p"] if len(simple_rows[0]) == 5
                else ["level", "df", "Chisq", "p"])
        out.simple_tests = PrintedTable(pd.DataFrame(simple_rows, columns=cols).set_index("level"),
                                        heading=f"Simple effects of {', '.join(specs_l)}",
                                        formats=FORMATS, headers=HEADERS)
    return out
