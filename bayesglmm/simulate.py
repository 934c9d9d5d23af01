"""Simulated response datasets from a model: ``Model.simulate(n, params=None, seed=None)``.

Each dataset keeps the model's data (predictors, groups, trials, ...) and replaces the response
by a draw from the model: fixed effects and family parameters at the given values (or drawn from
the prior), new group-level effects ``r ~ N(0, diag(sd) Omega diag(sd))`` for every group of
every grouping term, correlated residuals (``resid_corr="ar1"``/``"cs"``) drawn jointly within
their blocks, and the response from the family table's random-number generator. The linear
predictor is computed as the Stan program computes it (intercept, ``X beta``, offsets, ``Z r``).

Parameter values use the reported names, e.g. ``{"Intercept": 3, "b[talk]": 0.3,
"sigma": 1, "sd[group:Int]": 0.5}``; :func:`required_parameters` lists them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .formula import parse_formula, used_columns
from .zero_inflation import zi_columns, zi_design, zi_names, zi_probability

__all__ = ["SimulatedData", "model_rows", "required_parameters", "simulate"]

# kinds of reported quantities that define the data-generating process (the others are
# derived: Intercept_c; or drawn per dataset: the group-level effects)
_GENERATIVE = ("Intercept", "b", "cutpoints", "family", "sd", "corr", "aux")
_CORR_RX = re.compile(r"^corr_(\d+)\[(\d+),(\d+)\]$")
_BETA_RX = re.compile(r"^beta\[(\d+)(?:,(\d+))?\]$")


@dataclass(eq=False)
class SimulatedData(Sequence):
    """``n`` simulated datasets: a sequence of DataFrames (the model's data with a simulated
    response), with the parameter values they were drawn from.

    Attributes
    ----------
    truth : pandas.DataFrame
        One row per dataset, one column per parameter (reported names): the values used.
    y : numpy.ndarray
        The simulated responses as passed to Stan, shape (n, rows).
    """

    truth: pd.DataFrame
    y: np.ndarray = field(repr=False)
    _base: pd.DataFrame = field(repr=False)
    _rows: np.ndarray = field(repr=False)  # positions in _base of the model's rows
    _writer: Any = field(repr=False)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):  # a SimulatedData of those datasets (truth kept)
            idx = list(range(*i.indices(len(self))))
            return SimulatedData(self.truth.iloc[idx].reset_index(drop=True), self.y[idx],
                                 self._base, self._rows, self._writer)
        if not -len(self) <= i < len(self):
            raise IndexError(f"dataset {i} out of range (n = {len(self)})")
        df = self._base.copy()
        self._writer(df, self._rows, self.y[i])
        return df

    def __iter__(self) -> Iterator[pd.DataFrame]:
        return (self[i] for i in range(len(self)))

    def __repr__(self) -> str:
        return (f"<SimulatedData: {len(self)} datasets of {self.y.shape[1]} rows; "
                f"parameters {', '.join(self.truth.columns)}>")


# --------------------------------------------------------------------------- parameters


def required_parameters(model: Any) -> list[str]:
    """The reported names of the parameters ``simulate(params=...)`` needs for ``model``."""
    spec = _spec(model)
    held = {f"b[{spec.fixed.names[j]}]" for j, _ in spec.held}
    return [p.user for p in model.program.params if p.kind in _GENERATIVE and p.user not in held]


def _spec(model: Any):
    spec = getattr(model, "spec", None)
    if spec is None:
        raise ValueError("simulate() needs a model built from a formula (glmer, lmer, glm, lm); "
                         "a from_stan() program has no formula to generate data from")
    return spec


def _given_values(model: Any, params: Mapping[str, Any], n: int) -> pd.DataFrame:
    if not isinstance(params, Mapping):
        raise TypeError('params must be a dict {parameter name: value}, e.g. {"b[talk]": 0.3}, '
                        f"or None (draw from the prior); got {type(params).__name__}")
    need = required_parameters(model)
    keys = {str(k).replace(" ", ""): v for k, v in params.items()}
    missing = [p for p in need if p.replace(" ", "") not in keys]
    if missing:
        raise ValueError(f"simulate(): params lacks the value(s) of {', '.join(missing)} "
                         f"(needed: {', '.join(need)})")
    extra = [k for k in params if str(k).replace(" ", "") not in {p.replace(" ", "") for p in need}]
    if extra:
        raise ValueError(
            f"simulate(): unknown parameter(s) {', '.join(map(str, extra))} in params "
            f"(the model's parameters: {', '.join(need)}; group-level effects are drawn anew "
            "for every dataset)")
    row = {}
    for p in need:
        try:
            v = float(keys[p.replace(" ", "")])
        except (TypeError, ValueError):
            raise ValueError(f"simulate(): the value of {p} must be a number, "
                             f"got {keys[p.replace(' ', '')]!r}") from None
        if not math.isfinite(v):
            raise ValueError(f"simulate(): the value of {p} must be finite, got {v!r}")
        row[p] = v
    return pd.DataFrame([row] * n)


# --------------------------------------------------------------------------- the generator


def _design_rows(spec: Any) -> tuple[np.ndarray, np.ndarray]:
    """(X, offset) of the model's rows."""
    X = np.asarray(spec.fixed.X, dtype=float).reshape(spec.n_obs, spec.fixed.K)
    off = np.zeros(spec.n_obs) if spec.fixed.offset is None else np.asarray(spec.fixed.offset, float)
    return X, off


def _beta(model: Any, spec: Any, values: pd.DataFrame) -> np.ndarray:
    """Coefficients (n, K) or (n, K, C-1) for category-specific families."""
    n, K = len(values), spec.fixed.K
    cat = spec.family.category_specific
    shape = (n, K, int(spec.response.n_categories) - 1) if cat else (n, K)
    beta = np.zeros(shape)
    for j, v in spec.held:
        beta[:, j] = v
    for p in model.program.params:
        m = _BETA_RX.match(p.stan)
        if p.kind == "b" and m and p.user in values.columns:
            j = int(m.group(1)) - 1
            if cat:
                beta[:, j, int(m.group(2)) - 1] = values[p.user].to_numpy()
            else:
                beta[:, j] = values[p.user].to_numpy()
    return beta


def _check_values(model: Any, values: pd.DataFrame) -> None:
    """Bounds of the values (SDs and family parameters > their lower bound, |corr| < 1,
    ordered cutpoints), with the parameter named."""
    spec = model.spec
    lower = {p.name: p.lower for p in spec.family.extra}
    for p in model.program.params:
        if p.user not in values.columns:
            continue
        v = values[p.user].to_numpy()
        if p.kind == "sd" and np.any(v < 0):
            raise ValueError(f"simulate(): {p.user} is a standard deviation and must be >= 0")
        if p.kind == "family" and np.any(v <= lower.get(p.stan, -np.inf)):
            raise ValueError(f"simulate(): {p.user} must be > {lower[p.stan]:g}")
        if p.kind in ("corr", "aux") and np.any(np.abs(v) >= 1):
            raise ValueError(f"simulate(): {p.user} is a correlation and must be in (-1, 1)")
    cuts = [p.user for p in model.program.params if p.kind == "cutpoints"]
    if cuts and spec.family.link == "cumulative_logit":  # ordered cutpoints
        c = values[cuts].to_numpy()
        if np.any(np.diff(c, axis=1) <= 0):
            raise ValueError(f"simulate(): the cutpoints {', '.join(cuts)} must be increasing")


def _group_effects(model: Any, g: Any, values: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    """New group-level effects (n, groups, q) of term ``g``."""
    n, q = len(values), g.q
    by_stan = {p.stan: p.user for p in model.program.params}
    sd = np.column_stack([values[by_stan[f"sd_{g.k}[{m + 1}]"]].to_numpy() for m in range(q)])
    omega = np.broadcast_to(np.eye(q), (n, q, q)).copy()
    if g.has_corr:
        for p in model.program.params:
            m = _CORR_RX.match(p.stan)
            if m and int(m.group(1)) == g.k:
                r, c = int(m.group(2)) - 1, int(m.group(3)) - 1
                omega[:, r, c] = omega[:, c, r] = values[p.user].to_numpy()
    try:
        L = np.linalg.cholesky(omega)
    except np.linalg.LinAlgError:
        raise ValueError(f"simulate(): the correlations of {g.text} do not form a positive "
                         "definite correlation matrix") from None
    z = rng.standard_normal((n, g.n_groups, q))
    return np.einsum("sij,sgj->sgi", L, z) * sd[:, None, :]


def linear_predictor(model: Any, values: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    """The linear predictor (n, rows) (or (n, rows, C-1) for category-specific families) at
    ``values``, with new group-level effects drawn for every dataset."""
    spec = model.spec
    X, off = _design_rows(spec)
    beta = _beta(model, spec, values)
    n = len(values)
    if spec.family.category_specific:
        eta = np.einsum("nk,skc->snc", X, beta)
    else:
        eta = beta @ X.T
    base = np.broadcast_to(off, (n, spec.n_obs)).copy()
    if "Intercept" in values.columns and spec.has_intercept:
        base += values["Intercept"].to_numpy()[:, None]
    for g in spec.groups:
        r = _group_effects(model, g, values, rng)  # (n, G, q)
        idx = np.asarray(g.index) - 1
        Z = np.asarray(g.Z, dtype=float).reshape(spec.n_obs, g.q)
        base += np.einsum("sni,ni->sn", r[:, idx, :], Z)
    return eta + (base[:, :, None] if eta.ndim == 3 else base)


def _ar1_residuals(resid: Any, rho: np.ndarray, sigma: np.ndarray, rng) -> np.ndarray:
    n = rho.shape[0]
    e = np.zeros((n, resid.order.size))
    prev = np.zeros(n)
    for pos, (row, lag) in enumerate(zip(resid.order, resid.lag)):
        eps = rng.standard_normal(n) * sigma
        if lag == 0 or pos == 0:
            cur = eps
        else:
            a = rho ** lag
            cur = a * prev + np.sqrt(1 - a * a) * eps
        e[:, row] = prev = cur
    return e


def _cs_residuals(resid: Any, rho: np.ndarray, sigma: np.ndarray, rng) -> np.ndarray:
    # sequential conditionals: e_t | k earlier ~ N(rho S / (1 + (k-1) rho), sigma^2 (1 - k rho^2 / (1 + (k-1) rho)))
    n = rho.shape[0]
    e = np.zeros((n, resid.order.size))
    S, k = np.zeros(n), 0
    for row, lag in zip(resid.order, resid.lag):
        if lag == 0:
            S, k = np.zeros(n), 0
        d = 1 + (k - 1) * rho
        mean = rho * S / d if k else 0.0
        var = (1 - k * rho * rho / d) if k else np.ones(n)
        cur = mean + np.sqrt(np.maximum(var, 0)) * sigma * rng.standard_normal(n)
        e[:, row] = cur
        S, k = S + cur, k + 1
    return e


#: joint draws of correlated residuals, by ``ResidCorr.kind``
RESIDUAL_DRAWS = {"ar1": _ar1_residuals, "cs": _cs_residuals}


def draw_response(model: Any, values: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    """Responses (n, rows) as Stan sees them (codes 1..C for ordinal families)."""
    spec = model.spec
    fam = spec.family
    eta = linear_predictor(model, values, rng)
    if spec.resid is not None:
        # the families with residual correlation add normal residuals with SD sigma to eta
        sigma = values["sigma"].to_numpy()
        e = RESIDUAL_DRAWS[spec.resid.kind](spec.resid, values["rho_resid"].to_numpy(), sigma, rng)
        return eta + e
    p = {name: values[name].to_numpy()[:, None] for name in fam.extra_names}
    if spec.zi is not None:  # zero-inflated families: P(structural zero) per draw and row
        b_zi = values[[f"b_zi[{n}]" for n in zi_names(spec)]].to_numpy()
        p["zi"] = zi_probability(b_zi, zi_design(spec))
    if fam.ordinal:
        cuts = values[[q.user for q in model.program.params if q.kind == "cutpoints"]].to_numpy()
        p["cutpoints"] = cuts[:, None, :] if fam.category_specific else cuts
    return np.asarray(fam.rng(eta, p, rng, trials=spec.response.trials))


# --------------------------------------------------------------------------- writing datasets


def _response_writer(model: Any):
    """(base DataFrame, positions of the model's rows in it, writer(df, rows, y))."""
    args = getattr(model, "_build_args", None)
    if args is None:
        raise ValueError("simulate() needs a model built by glmer(), lmer(), glm() or lm()")
    if args.get("within") is not None or any(n.startswith("wide") for n in model.data_notes):
        raise ValueError("simulate() is not available for models fitted to wide data "
                         "(within=): reshape the data to long format and fit the long model")
    spec = model.spec
    data: pd.DataFrame = args["data"]
    rows = model_rows(model, data)
    parsed = parse_formula(args["formula"])
    resp = spec.response
    if parsed.cbind is not None:
        succ, fail = parsed.cbind
        if succ not in data.columns:
            raise ValueError(f"simulate(): the successes of the response '{parsed.response}' must "
                             f"be a data column, not the expression '{succ}'")

        def write(df: pd.DataFrame, rows: np.ndarray, y: np.ndarray) -> None:
            col = df.columns.get_loc(succ)
            df.iloc[rows, col] = y.astype(np.int64)
            if fail in df.columns:
                df.iloc[rows, df.columns.get_loc(fail)] = (resp.trials - y).astype(np.int64)

        if fail not in data.columns:
            # an expression such as size - successes: check it gives trials - y
            from .formula import evaluate as _evaluate

            probe = data.copy()
            write(probe, rows, np.zeros(len(rows), dtype=np.int64))
            if not np.allclose(_evaluate(fail, probe.iloc[rows]), resp.trials):
                raise ValueError(f"simulate(): cannot write the failures '{fail}' of the response "
                                 f"'{parsed.response}': use two data columns in cbind()")
        return data, rows, write
    col = parsed.response
    if col not in data.columns:
        raise ValueError(f"simulate(): the response '{col}' is an expression; simulate() writes "
                         "a data column, so create the transformed column first")
    s = data[col]
    if isinstance(s.dtype, pd.CategoricalDtype) or s.dtype == object:
        labels = _label_values(s, resp, args.get("levels"))

        def write(df: pd.DataFrame, rows: np.ndarray, y: np.ndarray) -> None:
            vals = np.asarray(labels, dtype=object)[np.asarray(y, dtype=np.int64) - offset]
            new = df[col].astype(object).to_numpy().copy()
            new[rows] = vals
            df[col] = (pd.Categorical(new, categories=s.cat.categories, ordered=s.cat.ordered)
                       if isinstance(s.dtype, pd.CategoricalDtype) else new)

        offset = 1 if spec.family.ordinal else 0
        return data, rows, write
    if pd.api.types.is_bool_dtype(s.dtype):
        def write(df: pd.DataFrame, rows: np.ndarray, y: np.ndarray) -> None:
            df.iloc[rows, df.columns.get_loc(col)] = np.asarray(y).astype(bool)

        return data, rows, write
    integer = spec.family.stan_y_type == "int"

    def write(df: pd.DataFrame, rows: np.ndarray, y: np.ndarray) -> None:
        if integer or not pd.api.types.is_float_dtype(df[col].dtype):
            df[col] = df[col].astype(np.int64 if integer else float)
        df.iloc[rows, df.columns.get_loc(col)] = y.astype(np.int64) if integer else y

    return data, rows, write


def _label_values(s: pd.Series, resp: Any, levels: Any) -> list[Any]:
    """The data values of response codes (ordinal 1..C, binary 0/1)."""
    if levels is not None:
        return list(levels)
    if isinstance(s.dtype, pd.CategoricalDtype):
        return list(s.cat.categories)
    raise ValueError(f"simulate(): cannot write the text response '{s.name}' (give levels=)")


def model_rows(model: Any, data: pd.DataFrame) -> np.ndarray:
    """Positions in the user's data of the rows the model uses (all, unless dropna=True)."""
    spec = model.spec
    if not spec.n_dropped:
        return np.arange(len(data))
    args = model._build_args
    cols = used_columns(parse_formula(args["formula"]), args.get("trials"))
    used = list(dict.fromkeys(c for v in cols.values() for c in v))
    used += [c for c in (args.get("resid_time"), args.get("resid_group")) if c]
    used += list(zi_columns(spec.zi.rhs)) if spec.zi is not None else []
    keep = ~data[[c for c in used if c in data.columns]].isna().any(axis=1).to_numpy()
    return np.flatnonzero(keep)


# --------------------------------------------------------------------------- entry point


def simulate(model: Any, n: int, params: Mapping[str, Any] | None = None,
             seed: int | None = None) -> SimulatedData:
    """``n`` response datasets from ``model`` (see :meth:`bayesglmm.Model.simulate`)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise ValueError(f"seed must be None or an integer, got {seed!r}")
    _spec(model)
    rng = np.random.default_rng(seed)
    base, rows, writer = _response_writer(model)
    if params is None:
        from .prior_draws import draw_prior

        values = draw_prior(model, int(n), rng, required_parameters(model))
    else:
        values = _given_values(model, params, int(n))
    _check_values(model, values)
    y = draw_response(model, values, rng)
    return SimulatedData(values, y, base, rows, writer)
