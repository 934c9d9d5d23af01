"""Centred or non-centred group-level effects, per grouping term (the ``param=`` argument).

Every grouping term k has group-level effects b_kj = diag(sd_k) L_k z_kj (L_k = I when its
coefficients are uncorrelated). The Stan program can sample them in two ways that define the
same model:

* **non-centred**: the standardised effects z_kj ~ normal(0, I) are the parameters and b_kj is
  computed from them. Right when the groups carry little information about their own effects
  (few observations per group): the posterior of z is then close to its prior, while b and
  sd_k form a funnel that NUTS cannot explore.
* **centred**: b_kj itself is the parameter, b_kj ~ multi_normal_cholesky(0, diag(sd_k) L_k).
  Right when every group has many observations: the data then pin each b_kj, and in the
  non-centred coordinates z_kj = (diag(sd_k) L_k)^-1 b_kj is tied to sd_k (a funnel the other
  way round), which makes the sampler crawl.

Both programs declare the effects as the same M_k x N_k matrix ``z_k``: standardised effects
(non-centred) or the effects themselves (centred). The user-facing quantities (``r_re``, the
SDs, correlations, every table) are the same either way.

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

__all__ = ["AUTO_MIN_ROWS", "PARAM_CHOICES", "auto_centered", "resolve_param"]

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
