"""Fit objects: what ``Model.sample()`` and ``Model.optimize()`` return.

Every fit shares one base (:class:`Fit`): the model it came from, the list of user-facing
parameters (``ParamName(stan, user, kind)``, :mod:`bayesglmm.core.naming`) and the random-effect layout.
All tables use the user's names (``Intercept``, ``b[talk]``, ``sd[group:Int]``, ``r_re[3]``);
Stan's internal names (``beta[2]``, ``z_1[1,3]``) never appear, except for programs loaded with
:func:`bayesglmm.from_stan`, where the Stan names *are* the user's names.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from .core.arviz_adapter import SAMPLER_STATS as SAMPLER_STATS
from .core.arviz_adapter import inference_data, load_arviz
from .core.naming import ParamName
from .core.naming import bracket_name as bracket_name
from .core.naming import log_lik_names as log_lik_names
from .core.naming import resolve_params as resolve_params

__all__ = ["Fit", "MAPFit", "MCMCFit", "kde_mode", "mcmc_summary_table"]

Param = ParamName  # the parameter-name record lives in bayesglmm.core.naming

SUMMARY_COLUMNS = ("mean", "sd", "map", "q2.5", "q97.5", "ess_bulk", "ess_tail", "rhat")
MAP_COLUMNS = ("estimate", "se", "lower", "upper")

# ------------------------------------------------------------------ random-effect layout

_RE_RX = re.compile(r"^r_re(?:_(\d+))?\[(\d+)(?:,(\d+))?\]$")
_SD_RX = re.compile(r"^sd(?:_(\d+))?\[(.*)\]$")


@dataclass(frozen=True)
class ReTerm:
    index: int  # 1-based grouping-term number (the _k suffix; 1 when there is one term)
    group: str  # grouping factor name, e.g. 'group', 'Subject', 'a:b'
    coefs: tuple[str, ...]  # 'Int', 'Days', ...
    levels: tuple[str, ...]  # group level labels in index order
    sd_names: tuple[str, ...]  # user names of the SDs, one per coefficient


def re_layout(params: Sequence[ParamName], spec: Any = None) -> list[ReTerm]:
    """Grouping terms, their coefficients and level labels, from the parameter names
    (``sd[group:Int]``, ``r_re_2[7,1]``) completed by the model spec when it is available."""
    sds: dict[int, list[ParamName]] = {}
    n_levels: dict[int, int] = {}
    n_coefs: dict[int, int] = {}
    for p in params:
        if p.kind == "sd":
            m = _SD_RX.match(p.user)
            if m:
                sds.setdefault(int(m.group(1) or 1), []).append(p)
        elif p.kind == "re":
            m = _RE_RX.match(p.user)
            if m:
                k = int(m.group(1) or 1)
                n_levels[k] = max(n_levels.get(k, 0), int(m.group(2)))
                n_coefs[k] = max(n_coefs.get(k, 0), int(m.group(3) or 1))
    # the spec's grouping terms (bayesglmm.spec.GroupTerm: factor, coefs, levels), in k order
    spec_terms = list(getattr(spec, "groups", None) or ())
    out = []
    for k in sorted(set(sds) | set(n_levels)):
        term = spec_terms[k - 1] if len(spec_terms) >= k else None
        sd_params = sds.get(k, [])
        group = getattr(term, "factor", None)
        coefs = tuple(getattr(term, "coefs", None) or ()) or None
        inner = [(_SD_RX.match(p.user).group(2)) for p in sd_params]
        if group is None:
            group = inner[0].rsplit(":", 1)[0] if inner else f"group_{k}"
        if coefs is None or len(coefs) != len(sd_params):
            coefs = tuple(s[len(group) + 1 :] if s.startswith(group + ":") else s for s in inner)
        nc = max(n_coefs.get(k, 0), len(coefs))
        if len(coefs) < nc:
            coefs = tuple(coefs) + tuple(str(i + 1) for i in range(len(coefs), nc))
        levels = getattr(term, "levels", None)
        levels = tuple(str(x) for x in levels) if levels is not None else None
        G = n_levels.get(k, 0)
        if levels is None or len(levels) != G:
            levels = tuple(str(i + 1) for i in range(G))
        out.append(ReTerm(k, group, tuple(coefs), tuple(levels), tuple(p.user for p in sd_params)))
    return out


def _re_index(params: Sequence[ParamName]) -> dict[tuple[int, int, int], int]:
    """(term k, level j, coef c) -> position in ``params`` of r_re_k[j,c]."""
    out = {}
    for i, p in enumerate(params):
        if p.kind == "re":
            m = _RE_RX.match(p.user)
            if m:
                out[(int(m.group(1) or 1), int(m.group(2)), int(m.group(3) or 1))] = i
    return out


# --------------------------------------------------------------------------- statistics


def kde_mode(x: np.ndarray, n_grid: int = 512, cut: float = 3.0) -> float:
    """Location of the maximum of a Gaussian kernel density estimate (features §8.2).

    Silverman's rule of thumb (R's ``bw.nrd0``) and a 512-point grid spanning
    ``[min - 3 bw, max + 3 bw]`` as R's ``density()``; the data are linearly binned on the grid
    and convolved with the kernel (R does the same through an FFT).
    """
    x = np.asarray(x, dtype=float).ravel()
    x = x[np.isfinite(x)]
    n = x.size
    if n == 0:
        return math.nan
    if n == 1 or np.ptp(x) == 0:
        return float(x[0])
    sd = x.std(ddof=1)
    iqr = np.subtract(*np.percentile(x, [75, 25]))
    lo = min(sd, iqr / 1.34)
    if not lo > 0:
        lo = sd if sd > 0 else (abs(x[0]) if x[0] != 0 else 1.0)
    bw = 0.9 * lo * n ** (-0.2)
    grid = np.linspace(x.min() - cut * bw, x.max() + cut * bw, n_grid)
    step = grid[1] - grid[0]
    pos = (x - grid[0]) / step
    i0 = np.clip(np.floor(pos).astype(int), 0, n_grid - 2)
    frac = pos - i0
    w = np.bincount(i0, weights=1 - frac, minlength=n_grid) + np.bincount(
        i0 + 1, weights=frac, minlength=n_grid
    )
    offsets = np.arange(-(n_grid - 1), n_grid) * step / bw
    dens = np.convolve(w, np.exp(-0.5 * offsets * offsets))[n_grid - 1 : 2 * n_grid - 1]
    return float(grid[int(np.argmax(dens))])


def mcmc_summary_table(arr: np.ndarray, names: Sequence[str]) -> pd.DataFrame:
    """Summary of draws ``arr`` with shape (chain, draw, variable), one row per name.

    Columns as features §8.2, plus ``mcse_mean`` (Monte Carlo SE of the mean, arviz) kept
    as the last column for tests and diagnostics.
    """
    import xarray as xr

    az = load_arviz()
    arr = np.asarray(arr, dtype=float)
    C, D, P = arr.shape
    pooled = arr.reshape(C * D, P)
    ds = xr.Dataset(
        {"x": (("chain", "draw", "v"), arr)},
        coords={"chain": np.arange(C), "draw": np.arange(D), "v": np.arange(P)},
    )
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        ess_bulk = az.ess(ds, method="bulk")["x"].values
        ess_lo = az.ess(ds, method="quantile", prob=0.025)["x"].values
        ess_hi = az.ess(ds, method="quantile", prob=0.975)["x"].values
        # split R-hat compares chains: NaN for one chain (single variational runs)
        rhat = az.rhat(ds, method="rank")["x"].values if C > 1 else np.full(P, np.nan)
        mcse = az.mcse(ds, method="mean")["x"].values
    q = np.percentile(pooled, [2.5, 97.5], axis=0)  # linear interpolation (R type 7)
    df = pd.DataFrame(
        {
            "mean": pooled.mean(axis=0),
            "sd": pooled.std(axis=0, ddof=1) if C * D > 1 else np.full(P, np.nan),
            "map": [kde_mode(pooled[:, i]) for i in range(P)],
            "q2.5": q[0],
            "q97.5": q[1],
            "ess_bulk": ess_bulk,
            "ess_tail": np.minimum(ess_lo, ess_hi),
            "rhat": rhat,
            "mcse_mean": mcse,
        },
        index=pd.Index(list(names), name="variable"),
    )
    return df


# --------------------------------------------------------------------------- formatting


def _fmt_table(df: pd.DataFrame, fmts: dict[str, Any], headers: dict[str, str] | None = None) -> str:
    headers = headers or {}
    cols = ["variable"] + list(df.columns)
    rows = [[str(i) for i in df.index]]
    for c in df.columns:
        f = fmts.get(c, "{:.2f}")
        rows.append(
            ["NA" if (v is None or (isinstance(v, float) and not np.isfinite(v))) else f.format(v) for v in df[c]]
        )
    heads = [headers.get(c, c) for c in cols]
    widths = [max(len(h), *(len(s) for s in col)) if len(col) else len(h) for h, col in zip(heads, rows)]
    def just(c, text, w):
        return text.ljust(w) if c == 0 else text.rjust(w)

    lines = [" ".join(just(c, h, w) for c, (h, w) in enumerate(zip(heads, widths)))]
    for r in range(len(df)):
        lines.append(" ".join(just(c, rows[c][r], widths[c]) for c in range(len(cols))))
    return "\n".join(lines)


def _ess_fmt(v: float) -> str:
    return str(round(v))


class _IntFmt:
    def format(self, v):
        return _ess_fmt(v)


# --------------------------------------------------------------------------- base


class Fit:
    """Shared base of the fit classes."""

    method = "fit"

    def __init__(self, model: Any, params: Sequence[ParamName]):
        self.model = model
        self._params = list(params)

    # names ------------------------------------------------------------------
    @property
    def program(self):
        return self.model.program

    @property
    def spec(self):
        return getattr(self.model.program, "spec", None)

    @property
    def parameter_names(self) -> list[str]:
        """User-facing names of every reported quantity, in display order."""
        return [p.user for p in self._params]

    def _select(self, pars: Sequence[str] | str | None, inc_random: bool) -> list[int]:
        if pars is None:
            return [i for i, p in enumerate(self._params) if inc_random or p.kind != "re"]
        if isinstance(pars, str):
            pars = [pars]
        pos = {p.user: i for i, p in enumerate(self._params)}
        out = []
        for name in pars:
            if name == "lp":  # always the first row of MCMC summaries
                continue
            if name in pos:
                out.append(pos[name])
                continue
            # a base name selects all its elements: 'b' -> b[talk], b[perf]; 'r_re' -> r_re[...]
            hits = [i for i, p in enumerate(self._params) if p.user.split("[", 1)[0] == name]
            if not hits:
                raise KeyError(
                    f"unknown parameter {name!r}; available: "
                    + ", ".join(p.user for p in self._params if p.kind != "re")
                )
            out.extend(hits)
        return out

    @cached_property
    def re_terms(self) -> list[ReTerm]:
        return re_layout(self._params, self.spec)

    def _re_rows(self):
        """(term, level label, coef label, index of r_re, index of sd) for every random effect."""
        idx = _re_index(self._params)
        pos = {p.user: i for i, p in enumerate(self._params)}
        for t in self.re_terms:
            for j, level in enumerate(t.levels, start=1):
                for c, coef in enumerate(t.coefs, start=1):
                    if (t.index, j, c) in idx:
                        sd_i = pos.get(t.sd_names[c - 1]) if c - 1 < len(t.sd_names) else None
                        yield t, level, coef, idx[(t.index, j, c)], sd_i

    def __repr__(self) -> str:
        return self.format()

    def show(self, **kwargs) -> None:
        """Print the fit (keyword arguments as :meth:`format`)."""
        print(self.format(**kwargs))

    def format(self, **kwargs) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    # post-estimation (bayesglmm.post, bayesglmm.plots) --------------------------------
    def predict(self, newdata: Any = None, re: str = "include", prob: float = 0.95,
                summary: bool = True, seed: int | None = None):
        """Expected response for ``newdata``: see :func:`bayesglmm.post.predict.predict`."""
        from .post.predict import predict

        return predict(self, newdata, re=re, prob=prob, summary=summary, seed=seed)

    def posterior_predict(self, newdata: Any = None, re: str = "include", seed: int | None = None):
        """Draws of new observations: see :func:`bayesglmm.post.predict.posterior_predict`."""
        from .post.predict import posterior_predict

        return posterior_predict(self, newdata, re=re, seed=seed)

    def loo(self):
        """PSIS-LOO through arviz (see :func:`bayesglmm.post.loo.loo`)."""
        from .post.loo import loo

        return loo(self)

    def waic(self):
        """WAIC through arviz (see :func:`bayesglmm.post.loo.waic`)."""
        from .post.loo import waic

        return waic(self)

    def plot_trace(self, pars: Any = None):
        from .plots import plot_trace

        return plot_trace(self, pars)

    def plot_dens(self, pars: Any = None):
        from .plots import plot_dens

        return plot_dens(self, pars)

    def plot_acf(self, pars: Any = None, max_lag: int = 40):
        from .plots import plot_acf

        return plot_acf(self, pars, max_lag)

    def plot_forest(self, pars: Any = None, prob: float = 0.95):
        from .plots import plot_forest

        return plot_forest(self, pars, prob)

    def plot_pairs(self, pars: Any = None):
        from .plots import plot_pairs

        return plot_pairs(self, pars)

    def plot_ppc(self, num_draws: int = 100, seed: int | None = None):
        from .plots import plot_ppc

        return plot_ppc(self, num_draws, seed)


# --------------------------------------------------------------------------- MCMC


class MCMCFit(Fit):
    """Posterior draws from NUTS (``Model.sample()``).

    Attributes: ``chains``, ``warmup``, ``sampling``, ``thin``, ``seed``, ``elapsed`` (seconds),
    ``stan_fit`` (the underlying ``cmdstanpy.CmdStanMCMC``).
    """

    method = "sample"

    def __init__(
        self,
        model: Any,
        params: Sequence[ParamName],
        draws: np.ndarray,
        sample_stats: dict[str, np.ndarray],
        log_lik: np.ndarray | None = None,
        *,
        chains: int,
        warmup: int,
        sampling: int,
        thin: int = 1,
        seed: int | None = None,
        delta: float = 0.8,
        max_treedepth: int = 10,
        elapsed: float = math.nan,
        stan_fit: Any = None,
    ):
        super().__init__(model, params)
        self._draws = np.asarray(draws, dtype=float)  # (chain, draw, P)
        self._stats = {k: np.asarray(v) for k, v in sample_stats.items()}
        self._log_lik = log_lik
        self.chains, self.warmup, self.sampling, self.thin = chains, warmup, sampling, thin
        self.seed, self.delta, self.max_treedepth = seed, delta, max_treedepth
        self.elapsed = elapsed
        self.stan_fit = stan_fit

    # raw access --------------------------------------------------------------
    @property
    def lp(self) -> np.ndarray:
        """Log posterior per draw incl. Jacobians (Stan ``lp__``), shape (chain, draw)."""
        return self._stats["lp"]

    @property
    def num_divergent(self) -> int:
        d = self._stats.get("diverging")
        return int(np.sum(d)) if d is not None else 0

    def draws_array(self, inc_random: bool = True) -> tuple[np.ndarray, list[str]]:
        """Draws as an array [iteration, chain, variable] (features §11) and the variable names."""
        sel = self._select(None, inc_random)
        return np.transpose(self._draws[:, :, sel], (1, 0, 2)), [self._params[i].user for i in sel]

    def draws(self, pars: Sequence[str] | str | None = None, inc_random: bool = True) -> pd.DataFrame:
        """One row per draw: ``chain`` (1-based), ``draw`` (1-based within chain), ``lp``,
        then every parameter under its user name."""
        sel = self._select(pars, inc_random)
        C, D, _ = self._draws.shape
        cols: dict[str, Any] = {
            "chain": np.repeat(np.arange(1, C + 1), D),
            "draw": np.tile(np.arange(1, D + 1), C),
            "lp": self.lp.reshape(-1),
        }
        for i in sel:
            cols[self._params[i].user] = self._draws[:, :, i].reshape(-1)
        return pd.DataFrame(cols)

    # summaries ---------------------------------------------------------------
    def _summary_rows(self, sel: Sequence[int]) -> pd.DataFrame:
        """Summary rows for ``lp`` and the parameters at positions ``sel`` (computed once)."""
        cache = self.__dict__.setdefault("_summary_cache", {})
        todo = [i for i in sel if i not in cache]
        if "lp" not in cache or todo:
            arr = np.concatenate([self.lp[:, :, None], self._draws[:, :, todo]], axis=2)
            tab = mcmc_summary_table(arr, ["lp"] + [self._params[i].user for i in todo])
            cache.setdefault("lp", tab.iloc[[0]])
            for r, i in enumerate(todo, start=1):
                cache[i] = tab.iloc[[r]]
        return pd.concat([cache["lp"]] + [cache[i] for i in sel])

    def summary(
        self, pars: Sequence[str] | str | None = None, inc_random: bool = False, mcse: bool = False
    ) -> pd.DataFrame:
        """Posterior summary, one row per quantity (``lp`` first, then display order).

        Columns: mean, sd, map (KDE mode), q2.5, q97.5, ess_bulk, ess_tail, rhat
        (+ ``mcse_mean`` with ``mcse=True``). ``inc_random=True`` adds the standardised random
        effects ``r_re``; ``pars`` selects quantities by name (``"b"`` selects every ``b[...]``).
        """
        sel = self._select(pars, inc_random)
        df = self._summary_rows(sel)
        cols = list(SUMMARY_COLUMNS) + (["mcse_mean"] if mcse else [])
        return df[cols].copy()

    def _method_lines(self) -> list[str]:
        """The printed lines describing the method (subclasses for other algorithms)."""
        return [
            "MCMC sampling via Stan (NUTS)",
            f"Chains: {self.chains}, warmup: {self.warmup}, sampling: {self.sampling}, thin: {self.thin}",
            f"Divergent transitions: {self.num_divergent}",
        ]

    def format(self, max_rows: int = 10, digits: int = 2, inc_random: bool = False) -> str:
        df = self.summary(inc_random=inc_random)
        f = "{:.%sf}".replace("%s", str(int(digits)))
        fmts = {c: f for c in ("mean", "sd", "map", "q2.5", "q97.5", "rhat")}
        fmts.update(ess_bulk=_IntFmt(), ess_tail=_IntFmt())
        head = ["Call:", _call_line(self.model), ""] + self._method_lines() + [""]
        body = _fmt_table(df.iloc[:max_rows], fmts)
        lines = head + [body]
        if len(df) > max_rows:
            lines.append(f"... {len(df) - max_rows} more rows: use summary() for the full table")
        if self.num_divergent:
            lines.append(
                f"Warning: {self.num_divergent} divergent transitions after warmup; "
                "consider a larger delta (adapt_delta)."
            )
        bad = df["rhat"].to_numpy()
        if np.any(bad[np.isfinite(bad)] > 1.01):
            lines.append("Warning: some rhat > 1.01; run longer chains.")
        return "\n".join(lines)

    def random_effects(self, scale: str = "standardised") -> pd.DataFrame:
        """Random effects per grouping term, level and coefficient.

        ``scale="standardised"`` (default): the standardised effects ``r_re`` (features §4);
        ``scale="natural"``: the effects on the linear-predictor scale, ``sd * r_re``.
        Columns: group, level, term, parameter, mean, sd, q2.5, q97.5.
        """
        scale = _check_scale(scale)
        recs = []
        for t, level, coef, i, sd_i in self._re_rows():
            x = self._draws[:, :, i].reshape(-1)
            if scale == "natural":
                if sd_i is None:
                    raise ValueError("natural-scale random effects need the SD parameters")
                x = x * self._draws[:, :, sd_i].reshape(-1)
            q = np.percentile(x, [2.5, 97.5])
            recs.append(
                dict(
                    group=t.group, level=level, term=coef, parameter=self._params[i].user,
                    mean=x.mean(), sd=x.std(ddof=1), **{"q2.5": q[0], "q97.5": q[1]},
                )
            )
        return pd.DataFrame(
            recs, columns=["group", "level", "term", "parameter", "mean", "sd", "q2.5", "q97.5"]
        )

    # arviz --------------------------------------------------------------------
    @cached_property
    def idata(self):
        """arviz InferenceData: posterior (user names), sample_stats, log_likelihood, observed_data."""
        posterior = {p.user: self._draws[:, :, i] for i, p in enumerate(self._params)}
        return inference_data(posterior, self._stats, self._log_lik, observed_response(self.model))

    # bridge sampling and Bayes factors (bayesglmm/post) ---------------------------
    def bridgesampling(self, method: str = "normal", repetitions: int = 1, maxiter: int = 1000,
                       tol: float = 1e-10, seed: int | None = None, verbose: bool = True,
                       split: str = "halves", shrink: bool = True):
        """Log marginal likelihood by bridge sampling (features §9.5); see
        :func:`bayesglmm.post.bridge.bridge_sampler`. Every call is cached by its arguments."""
        from .post.bridge import bridge_sampler

        key = (method, repetitions, maxiter, tol, seed, split, shrink)
        cache = self.__dict__.setdefault("_bridge_cache", {})
        if key not in cache:
            cache[key] = bridge_sampler(self, method, repetitions, maxiter, tol, seed,
                                        verbose=False, split=split, shrink=shrink)
        if verbose:
            print(cache[key].format())
        return cache[key]

    def bayes_factor(self, fixed: dict[str, float] | None = None, comparison_fit: Any = None,
                     **kwargs: Any):
        """Bayes factor BF12 of this fit (Model 1) against the same model with ``fixed``
        parameters held at values (e.g. ``{"b[talk]": 0}``, re-sampled with the same settings)
        or against ``comparison_fit``; see :func:`bayesglmm.post.bayes_factor.bayes_factor`."""
        from .post.bayes_factor import bayes_factor

        return bayes_factor(self, comparison_fit, fixed=fixed, **kwargs)


# --------------------------------------------------------------------------- MAP


class MAPFit(Fit):
    """Joint posterior mode (``Model.optimize()``): estimates, delta-method SEs, Wald CIs.

    Attributes: ``objective`` (negative log posterior at the mode, all constants kept, no
    Jacobian; with ``laplace=True`` the Laplace-integrated one), ``log_ml`` (Laplace
    approximation of the log marginal likelihood, NaN if the Hessian is not positive definite),
    ``converged``, ``theta_unc`` (unconstrained mode; random effects at their conditional
    modes), ``cov_unc`` (covariance on the unconstrained scale used for the delta method; with
    ``laplace=True`` a :class:`bayesglmm.inference.optimize.LaplaceCov`, kept factored so that
    its size is linear in the number of random effects: ``np.asarray(fit.cov_unc)`` gives the
    dense matrix, ``J @ fit.cov_unc`` and ``fit.cov_unc.diagonal()`` work without it),
    ``laplace`` (True: random effects integrated out; False: joint mode).
    """

    method = "optimize"

    def __init__(
        self,
        model: Any,
        params: Sequence[ParamName],
        estimate: np.ndarray,
        se: np.ndarray,
        lower: np.ndarray,
        upper: np.ndarray,
        *,
        objective: float,
        log_ml: float = math.nan,
        converged: bool = True,
        message: str = "",
        theta_unc: np.ndarray | None = None,
        cov_unc: np.ndarray | None = None,
        laplace: bool = False,
        elapsed: float = math.nan,
    ):
        super().__init__(model, params)
        self._table = pd.DataFrame(
            {"estimate": estimate, "se": se, "lower": lower, "upper": upper},
            index=pd.Index([p.user for p in params], name="variable"),
        )
        self.objective = float(objective)
        self.log_ml = float(log_ml)
        self.converged = bool(converged)
        self.message = message
        self.theta_unc = theta_unc
        self.cov_unc = cov_unc
        self.laplace = laplace
        self.elapsed = elapsed

    @property
    def estimates(self) -> dict[str, float]:
        """{user name: estimate} for every reported quantity (random effects included)."""
        return self._table["estimate"].to_dict()

    def summary(self, pars: Sequence[str] | str | None = None, inc_random: bool = False) -> pd.DataFrame:
        """Point estimates with delta-method standard errors and 95% Wald intervals.

        Columns estimate, se, lower, upper; rows in display order (view order, then e.g.
        ``Intercept_c``); ``inc_random=True`` adds the standardised random effects.
        """
        sel = self._select(pars, inc_random)
        return self._table.iloc[sel].copy()

    def format(self, max_rows: int = 10, digits: int = 5, ranef: bool = False) -> str:
        df = self.summary()
        f = "{:.%sf}".replace("%s", str(int(digits)))
        has_re = any(p.kind == "re" for p in self._params)
        lines = [
            "Call:",
            _call_line(self.model),
            "",
            "MAP Estimation via Stan" + (" (joint mode)" if has_re and not self.laplace else ""),
            f"Negative Log-Posterior: {self.objective:.2f}",
            "Approx. Log Marginal Likelihood (Laplace): "
            + (f"{self.log_ml:.2f}" if np.isfinite(self.log_ml) else "NA"),
        ]
        if not self.converged:
            lines.append(f"Warning: the optimiser did not converge ({self.message})")
        if has_re and not self.laplace:
            lines.append(
                "Note: joint mode over all parameters incl. the standardised random effects; "
                "random-effect SDs are overestimated (use optimize(laplace=True))"
            )
        if has_re and not ranef:
            lines.append(
                "Note: Random effects are stored in fit.random_effects() (use ranef=True to show them)"
            )
        lines.append("Point Estimates and 95% Wald CI:")
        heads = {"estimate": "Estimate", "se": "Std. Error", "lower": "Lower 95%", "upper": "Upper 95%"}
        lines.append(_fmt_table(df.iloc[:max_rows], {c: f for c in MAP_COLUMNS}, heads))
        if len(df) > max_rows:
            lines.append(f"... {len(df) - max_rows} more rows: use summary() for the full table")
        if ranef and has_re:
            re_df = self.random_effects().set_index("parameter")[list(MAP_COLUMNS)]
            lines += ["", "Random effects (standardised, conditional modes):",
                      _fmt_table(re_df, {c: f for c in MAP_COLUMNS}, heads)]
        return "\n".join(lines)

    def random_effects(self, scale: str = "standardised") -> pd.DataFrame:
        """Random effects at the mode, per grouping term, level and coefficient.

        ``scale="standardised"``: ``r_re`` with SE and Wald CI; ``scale="natural"``:
        ``sd * r_re`` (SE/CI not computed: NaN). Columns: group, level, term, parameter,
        estimate, se, lower, upper.
        """
        scale = _check_scale(scale)
        t_ = self._table
        recs = []
        for t, level, coef, i, sd_i in self._re_rows():
            row = t_.iloc[i]
            if scale == "natural":
                s = t_.iloc[sd_i]["estimate"] if sd_i is not None else math.nan
                vals = {"estimate": row["estimate"] * s, "se": math.nan, "lower": math.nan, "upper": math.nan}
            else:
                vals = dict(row[list(MAP_COLUMNS)])
            recs.append(dict(group=t.group, level=level, term=coef, parameter=self._params[i].user, **vals))
        return pd.DataFrame(
            recs, columns=["group", "level", "term", "parameter", "estimate", "se", "lower", "upper"]
        )


# --------------------------------------------------------------------------- helpers


def _check_scale(scale: str) -> str:
    s = {"standardised": "standardised", "standardized": "standardised", "std": "standardised",
         "natural": "natural"}.get(scale)
    if s is None:
        raise ValueError(f"scale must be 'standardised' or 'natural', not {scale!r}")
    return s


def _call_line(model: Any) -> str:
    fn = getattr(model, "call", None)
    if callable(fn):
        return fn()
    return str(fn) if fn else repr(model)


def observed_response(model: Any) -> np.ndarray | None:
    fn = getattr(model, "observed_response", None)
    if callable(fn):
        try:
            return fn()
        except (AttributeError, TypeError, ValueError):  # pragma: no cover - best effort
            return None
    return None
