"""Centred or non-centred group-level effects, per grouping term (the ``param=`` argument).

Every grouping term k has group-level effects b_kj = diag(sd_k) L_k z_kj (L_k = I when its
coefficients are uncorrelated). The Stan program can sample them in two ways that define the
same model:

* **non-centred**: the standardised effects z_kj ~ normal(0, I) are the parameters and b_kj is
  computed from them. Right when the groups carry little information about their own effects
  (few observations per group): the posterior of z is then close to its prior, while b and
  sd_k form a funnel that NUTS cannot explore.
* **centred**: the group's coefficients mu_k + b_kj are the parameters (see below).
  Right when every group has many observations: the data then pin each b_kj, and in the
  non-centred coordinates z_kj = (diag(sd_k) L_k)^-1 b_kj is tied to sd_k (a funnel the other
  way round), which makes the sampler crawl.

Both programs declare the effects as the same M_k x N_k matrix ``z_k``: standardised effects
(non-centred) or, centred, each group's own coefficients: the population-level coefficient of
the same column (the intercept, or beta[j] when Z's column m is X's column j) plus the group's
effect, so z_kj ~ multi_normal_cholesky(mu_k, diag(sd_k) L_k) (hierarchical centring, Gelfand,
Sahu and Carlin 1995). Without it the intercept and the mean of the group effects form a ridge
(the data fix their sum much better than either) on which NUTS mixes slowly. The user-facing
quantities (``r_re``, the SDs, correlations, every table) are the same either way.

The ``"auto"`` rule (:func:`auto_centered`), from the data only: a term is centred when its
groups have a median of at least :data:`AUTO_MIN_ROWS` observations. Why a count: the
information the data give about a group's effect grows with its number of observations, while
the prior's is 1 / sd^2; the funnel of the non-centred form appears when the first dominates.
With the variance shares met in practice (group SDs between a fifth and the full residual SD)
20 observations give the data 0.8 to 20 times the prior's weight (n sd^2 / sigma^2). The sleepstudy (10 observations
per subject) and debate (3 per group) examples stay non-centred; the simulated 100k-row benchmark
(100 per group) is centred.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["AUTO_MIN_ROWS", "PARAM_CHOICES", "auto_centered", "resolve_param", "shared_means"]

AUTO_MIN_ROWS = 20  # median observations per group from which "auto" centres a term

# accepted spellings -> "centered" / "noncentered" / "auto"
_ALIASES = {
    "centered": "centered", "centred": "centered", "cp": "centered",
    "noncentered": "noncentered", "non-centered": "noncentered", "noncentred": "noncentered",
    "non-centred": "noncentered", "ncp": "noncentered",
    "auto": "auto",
}
PARAM_CHOICES = ("auto", "centered", "noncentered")


def auto_centered(group_sizes: np.ndarray) -> bool:
    """The ``"auto"`` rule for one grouping term: centred when the median number of
    observations per group is at least :data:`AUTO_MIN_ROWS` (see the module docstring)."""
    sizes = np.asarray(group_sizes)
    return bool(sizes.size and float(np.median(sizes)) >= AUTO_MIN_ROWS)


def _choice(value: Any, where: str) -> str:
    if isinstance(value, str) and value.strip().lower() in _ALIASES:
        return _ALIASES[value.strip().lower()]
    raise ValueError(f"{where} must be one of {', '.join(repr(c) for c in PARAM_CHOICES)}, "
                     f"got {value!r}.")


def _norm_label(text: str) -> str:
    return "".join(str(text).split()).strip("()")


def resolve_param(param: Any, groups: Sequence[Any]) -> tuple[bool, ...]:
    """The parameterisation of every grouping term: True = centred.

    Parameters
    ----------
    param : str or dict
        ``"auto"`` (the rule of :func:`auto_centered`), ``"centered"`` or ``"noncentered"``
        for every term, or a dict from a grouping factor (``"Subject"``, every term of that
        factor) or a term as written (``"(Days | Subject)"``, ``"Days | Subject"``) to one of
        these; terms not named are ``"auto"``. British spellings are accepted.
    groups : sequence of GroupTerm
        The model's grouping terms (``factor``, ``text``, ``group_sizes``).

    Raises
    ------
    ValueError
        An unknown choice, or a key that names no grouping term (the message lists them).
    """
    n = len(groups)
    if param is None:
        param = "auto"
    if isinstance(param, str):
        per = [_choice(param, "param")] * n
    elif isinstance(param, Mapping):
        per = ["auto"] * n
        for key, val in param.items():
            if not isinstance(key, str):
                raise TypeError(f"param keys must be grouping factors or terms (strings), got {key!r}.")
            hits = [i for i, g in enumerate(groups)
                    if key.strip() == g.factor or _norm_label(key) == _norm_label(g.text)]
            if not hits:
                known = ", ".join(f"'{g.factor}' {g.text}" for g in groups) or "none"
                raise ValueError(f"param={{{key!r}: ...}}: the model has no grouping term "
                                 f"{key!r}; its grouping terms are: {known}.")
            choice = _choice(val, f"param[{key!r}]")
            for i in hits:
                per[i] = choice
    else:
        raise TypeError("param must be 'auto', 'centered', 'noncentered' or a dict such as "
                        f"{{'Subject': 'centered'}}, got {param!r}.")
    return tuple(bool(auto_centered(g.group_sizes)) if c == "auto" else c == "centered"
                 for c, g in zip(per, groups))


def shared_means(g: Any, fixed_names: Sequence[str], X: np.ndarray, has_intercept: bool,
                 category_specific: bool) -> tuple[int, ...]:
    """For a centred term ``g``: per coefficient, the population-level coefficient that is its
    mean (0: none, 1: the intercept, j + 1: beta[j], when Z's column equals X's column j);
    () when the term is not centred or shares none (category-specific coefficients: none)."""
    if not g.centered or category_specific:
        return ()
    out = []
    names = list(fixed_names)
    for m, c in enumerate(g.coefs):
        if c == "Int":
            out.append(1 if has_intercept else 0)
        elif c in names and np.array_equal(np.asarray(g.Z)[:, m], np.asarray(X)[:, names.index(c)]):
            out.append(names.index(c) + 2)
        else:
            out.append(0)
    return tuple(out) if any(out) else ()
