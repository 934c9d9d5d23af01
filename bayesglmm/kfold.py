"""K-fold cross-validation: :func:`kfold` (brms's ``kfold()``), fitted through the batch
machinery of :func:`bayesglmm.fit_many` (in this process or on Dask).

The rows are split into K folds (at random, balanced; or by ``group`` so that all rows of a
group are in one fold; or by given fold labels). For each fold the model is fitted to the other
rows (``Model.update(data=...)``: the same compiled program) and the held-out rows are scored
by the log predictive density, computed by the Stan program itself: the parameters of the
training fit are carried over to the model of all rows (same names; the group-level effects by
group label) and its pointwise ``log_lik`` is read through BridgeStan.

* ``method="sample"``: ``elpd_i = log mean_s p(y_i | theta_s)`` over the posterior draws of
  the fit without row i's fold. Groups absent from the training rows (grouped folds) get new
  effects drawn from their distribution at every draw.
* ``method="optimize"``: the plug-in ``log p(y_i | theta_hat)`` at the training fit's mode
  (random effects at their conditional modes; groups absent from the training rows at the
  population mean, effect 0). Cheaper, but it ignores the parameter uncertainty, so it is
  optimistic compared with ``"sample"``.

``elpd_kfold`` is the sum of the pointwise values and ``se`` is ``sqrt(N var(elpd_i))``, as
for LOO. With correlated residuals (``resid_corr=``) the density of a row is conditional on the
earlier rows of its block, as the model's ``log_lik``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import logsumexp

from .batch import execute
from .core.naming import bracket_name
from .inference.loglik import log_lik_model

__all__ = ["KFoldResult", "kfold", "make_folds"]

KFOLD_METHODS = ("sample", "optimize")


@dataclass(eq=False)
class KFoldResult:
    """K-fold cross-validation.

    Attributes
    ----------
    elpd_kfold : float
        Expected log predictive density of the held-out rows (sum of ``pointwise``).
    se : float
        Its standard error, ``sqrt(N * var(pointwise))``.
    pointwise : numpy.ndarray
        ``elpd_i`` of every row (model row order).
    folds : numpy.ndarray
        The fold (1..K) of every row.
    K : int
    method : str
    errors : dict
        {fold: error text} of training fits that failed (then ``elpd_kfold`` is NaN).
    """

    elpd_kfold: float
    se: float
    pointwise: np.ndarray = field(repr=False)
    folds: np.ndarray = field(repr=False)
    K: int
    method: str
    errors: dict[int, str] = field(default_factory=dict)

    @property
    def looic(self) -> float:
        """The information criterion ``-2 elpd_kfold`` (``kfoldic``)."""
        return -2.0 * self.elpd_kfold

    def to_frame(self) -> pd.DataFrame:
        """One row per observation: row (0-based), fold, elpd.

        Returns
        -------
        pandas.DataFrame
        """
        return pd.DataFrame({"row": np.arange(len(self.pointwise)), "fold": self.folds,
                             "elpd": self.pointwise})

    def __repr__(self) -> str:
        return (f"Based on {self.K}-fold cross-validation ({self.method}()):\n"
                f"           Estimate     SE\n"
                f"elpd_kfold {self.elpd_kfold:9.1f} {self.se:6.1f}\n"
                f"kfoldic    {self.looic:9.1f} {2 * self.se:6.1f}")


def make_folds(n: int, K: int, group: Any = None, seed: int | None = None) -> np.ndarray:
    """Fold labels 1..K of ``n`` rows: a random balanced split, or with ``group`` (one label per
    row) whole groups assigned to folds (groups shuffled, then dealt out in turn)."""
    rng = np.random.default_rng(seed)
    if group is None:
        if K > n:
            raise ValueError(f"K = {K} folds for {n} rows: K must be at most the number of rows")
        return rng.permutation(np.arange(n) % K) + 1
    codes, uniq = pd.factorize(pd.Series(group), sort=True)
    if K > len(uniq):
        raise ValueError(f"K = {K} folds but only {len(uniq)} groups: K must be at most the "
                         "number of groups")
    fold_of_group = np.empty(len(uniq), dtype=int)
    fold_of_group[rng.permutation(len(uniq))] = np.arange(len(uniq)) % K + 1
    return fold_of_group[codes]


def _model_data(model: Any) -> pd.DataFrame:
    """The rows of the user's data the model uses, in model row order."""
    from .simulate import model_rows

    args = getattr(model, "_build_args", None)
    if args is None:
        raise ValueError("kfold() needs a model built by glmer(), lmer(), glm() or lm()")
    if args.get("within") is not None:
        raise ValueError("kfold() is not available for models fitted to wide data (within=)")
    data = args["data"]
    return data.iloc[model_rows(model, data)].reset_index(drop=True)


def kfold(fit_or_model: Any, K: int = 10, folds: Any = None, group: str | None = None,
          seed: int | None = None, method: str = "sample", workers: int | None = None,
          client: Any = None, progress: bool = True, **fit_args: Any) -> KFoldResult:
    """K-fold cross-validation of a model (or of the model of a fit).

    Parameters
    ----------
    fit_or_model : Model or fit
        The model; for an MCMC fit its chains, warmup, sampling, thin and delta are the
        defaults of the training fits.
    K : int
        Number of folds (ignored when ``folds`` is given).
    folds : array-like, optional
        Fold label of every row (any K distinct values).
    group : str, optional
        A data column: all rows of a group go to the same fold (leave-groups-out).
    seed : int, optional
        Seeds the split, the training fits (fold k: ``seed + k``) and the new group effects.
    method : {"sample", "optimize"}
        How the training sets are fitted and the held-out rows scored (see the module notes:
        the average of the likelihood over the draws, or the plug-in at the mode).
    workers, client
        Parallel execution as in :func:`bayesglmm.fit_many`.
    **fit_args
        Arguments of the fitting method.

    Returns
    -------
    KFoldResult
        ``elpd_kfold``, ``se``, ``pointwise``, ``folds``.
    """
    if method not in KFOLD_METHODS:
        raise ValueError(f"method must be 'sample' or 'optimize', not {method!r}")
    model = getattr(fit_or_model, "model", fit_or_model)
    if method == "sample" and hasattr(fit_or_model, "_draws") and hasattr(fit_or_model, "delta"):
        f = fit_or_model
        for k in ("chains", "warmup", "sampling", "thin", "delta", "max_treedepth"):
            fit_args.setdefault(k, getattr(f, k))
    data = _model_data(model)
    n = len(data)
    if folds is not None:
        if group is not None:
            raise ValueError("give folds= or group=, not both")
        labels = np.asarray(folds)
        if labels.shape != (n,):
            raise ValueError(f"folds must have one label per row ({n}), got shape {labels.shape}")
        codes, uniq = pd.factorize(pd.Series(labels), sort=True)
        fold = codes + 1
        K = len(uniq)
        if K < 2:
            raise ValueError("folds must have at least two distinct labels")
    else:
        if isinstance(K, bool) or not isinstance(K, (int, np.integer)) or K < 2:
            raise ValueError(f"K must be an integer >= 2, got {K!r}")
        if group is not None and group not in data.columns:
            raise ValueError(f"group=: unknown column '{group}'. Available columns: "
                             f"{', '.join(map(str, data.columns))}")
        fold = make_folds(n, int(K), None if group is None else data[group].to_numpy(), seed)
    test_rows = [np.flatnonzero(fold == k) for k in range(1, K + 1)]
    train = [data.iloc[np.flatnonzero(fold != k)].reset_index(drop=True)
             for k in range(1, K + 1)]
    seeds = [None if seed is None else (int(seed) + k) % (2**31 - 1) for k in range(K)]
    results, _ = execute(model, train, method, fit_args, seeds, workers=workers, client=client,
                         keep_fits=False, progress=progress, extract=heldout_elpd,
                         extract_args=lambda k: (test_rows[k], seeds[k]))
    pointwise = np.full(n, np.nan)
    errors = {}
    for k, r in enumerate(results):
        if r.error is not None:
            errors[k + 1] = r.error
        else:
            pointwise[test_rows[k]] = r.extra
    elpd = float(pointwise.sum())
    se = float(np.sqrt(n * np.var(pointwise, ddof=1)))
    return KFoldResult(elpd, se, pointwise, fold, int(K), method, errors)


# --------------------------------------------------------------------------- held-out density


def heldout_elpd(fit: Any, train: Any, full: Any, rows: np.ndarray, seed: int | None) -> np.ndarray:
    """``elpd_i`` of ``rows`` of the full model ``full`` from the training fit ``fit`` (of the
    model ``train``): the log mean of the likelihood over the draws, or the plug-in at the mode.
    Runs where the fit ran (a worker)."""
    bs_train, bs_full = train.bridgestan_model(False), log_lik_model(full)
    names = [bracket_name(s) for s in bs_train.param_names(include_tp=True)]
    values = _training_values(fit, bs_train, names)  # (S, params + tparams)
    rng = np.random.default_rng(seed)
    theta = _carry_over(values, names, train, full, bs_full, rng, draws=values.shape[0] > 1
                        or getattr(fit, "theta_unc", None) is None)
    all_names = bs_full.param_names(include_tp=True, include_gq=True)
    ll_pos = {bracket_name(s): i for i, s in enumerate(all_names) if s.startswith("log_lik.")}
    idx = np.array([ll_pos[f"log_lik[{r + 1}]"] for r in rows])
    st_rng = bs_full.new_rng(int(rng.integers(2**31 - 1)))
    ll = np.empty((theta.shape[0], rows.size))
    for s in range(theta.shape[0]):
        unc = bs_full.param_unconstrain(theta[s])
        ll[s] = bs_full.param_constrain(unc, include_tp=True, include_gq=True, rng=st_rng)[idx]
    return logsumexp(ll, axis=0) - np.log(ll.shape[0])


def _training_values(fit: Any, bs: Any, names: list[str]) -> np.ndarray:
    """Parameters and transformed parameters of the training fit, (S, len(names))."""
    theta_unc = getattr(fit, "theta_unc", None)
    if theta_unc is not None:
        return bs.param_constrain(np.asarray(theta_unc, dtype=float), include_tp=True)[None, :]
    stan_fit = fit.stan_fit
    cols = {c: i for i, c in enumerate(stan_fit.column_names)}
    arr = np.asarray(stan_fit.draws(concat_chains=True))
    return arr[:, [cols[nm] for nm in names]]


def _centred_mean(values: np.ndarray, pos: dict[str, int], means: tuple[int, ...],
                  m: int) -> np.ndarray | float:
    """The mean of coefficient m of a centred term per draw: the intercept, beta[j] or 0."""
    code = means[m - 1] if means else 0
    if code == 1:
        return values[:, pos["Intercept_c"] if "Intercept_c" in pos else pos["Intercept"]]
    if code > 1:
        return values[:, pos[f"beta[{code - 1}]"]]
    return 0.0


def _new_centred_effect(values: np.ndarray, pos: dict[str, int], k: int, m: int, j: int,
                        fresh: dict, rng: np.random.Generator) -> np.ndarray:
    """Coefficient m of a new group j of centred term k per draw: sd_k[m] (L_k[m, ] e) with
    one standard normal vector e per group and draw, shared by the group's coefficients."""
    S = values.shape[0]
    M = sum(1 for nm in pos if nm.startswith(f"sd_{k}["))
    e = fresh.setdefault((k, j), rng.standard_normal((S, M)))
    sd = values[:, pos[f"sd_{k}[{m}]"]]
    if f"L_{k}[{m},1]" not in pos:
        return sd * e[:, m - 1]
    L_row = values[:, [pos[f"L_{k}[{m},{col}]"] for col in range(1, M + 1)]]
    return sd * np.sum(L_row * e, axis=1)


def _carry_over(values: np.ndarray, names: list[str], train: Any, full: Any, bs_full: Any,
                rng: np.random.Generator, draws: bool) -> np.ndarray:
    """Parameter vectors of the full model (its parameter block, in its order): same-named
    parameters copied, the group-level effects ``z_k`` matched by group label
    (groups without training rows: N(0, 1) draws, or 0 at a mode), ``Intercept_c`` moved to
    the full data's predictor means. A centred term's ``z_k`` holds the groups' coefficients:
    a new group then gets mu_k + diag(sd_k) L_k e (mu_k: the intercept or beta[j] they scatter
    around, else 0), and at a mode mu_k (its effect 0)."""
    ts, fs = train.spec, full.spec
    if [g.centered for g in ts.groups] != [g.centered for g in fs.groups]:
        raise ValueError("the training model of a fold samples its group-level effects "
                         "centred/non-centred differently from the model of all rows: fit both "
                         "with the same param= (update() keeps it)")
    if tuple(ts.fixed.names) != tuple(fs.fixed.names):
        raise ValueError("the training rows of a fold lack a level of a categorical predictor "
                         f"(columns {', '.join(ts.fixed.names)} instead of "
                         f"{', '.join(fs.fixed.names)}): use fewer folds or grouped folds")
    pos = {nm: i for i, nm in enumerate(names)}
    target = [bracket_name(s) for s in bs_full.param_names()]
    S = values.shape[0]
    out = np.empty((S, len(target)))
    level_maps = {}
    centred = {g.k: g.centered for g in fs.groups}
    means = {g.k: tuple(getattr(g, "means", ()) or ()) for g in fs.groups}
    fresh: dict[tuple[int, int], np.ndarray] = {}  # (term, group) -> e, (S, M_k)
    for g_t, g_f in zip(ts.groups, fs.groups):
        where = {lab: j for j, lab in enumerate(g_t.levels)}
        level_maps[g_f.k] = [where.get(lab) for lab in g_f.levels]
    for i, nm in enumerate(target):
        head = nm.split("[", 1)[0]
        if head == "Intercept_c" and fs.centred:
            # the intercept at the predictor means moves with them (a program that does not
            # centre, e.g. the generic program under a flat prior, keeps it as it is)
            beta = values[:, [pos[f"beta[{j + 1}]"] for j in range(ts.fixed.K)]]
            shift = np.asarray(fs.fixed.means) - np.asarray(ts.fixed.means)
            out[:, i] = values[:, pos[nm]] + beta @ shift
        elif head.startswith("z_") and head[2:].isdigit():
            k = int(head[2:])
            m, j = (int(x) for x in nm[nm.index("[") + 1:-1].split(","))
            jt = level_maps[k][j - 1]
            if jt is not None:
                out[:, i] = values[:, pos[f"{head}[{m},{jt + 1}]"]]
            elif not draws:  # a group without training rows: its effect at the mode, 0
                out[:, i] = _centred_mean(values, pos, means[k], m) if centred[k] else 0.0
            elif not centred[k]:  # ... a new standardised effect, N(0, 1)
                out[:, i] = rng.standard_normal(S)
            else:  # ... a new effect diag(sd_k) L_k e of a centred term, e ~ N(0, I)
                out[:, i] = (_new_centred_effect(values, pos, k, m, j, fresh, rng)
                             + _centred_mean(values, pos, means[k], m))
        elif nm in pos:
            out[:, i] = values[:, pos[nm]]
        else:
            raise ValueError(f"the training model of a fold has no parameter {nm} (a category "
                             "of the response or a level missing from its rows?)")
    return out
