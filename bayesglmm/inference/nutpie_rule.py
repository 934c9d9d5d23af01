"""Which mass matrix nutpie adapts: ``sample(sampler="nutpie", low_rank="auto")``.

nutpie adapts a diagonal mass matrix by default; with ``low_rank_modified_mass_matrix`` it
adds a low-rank correction estimated from the warm-up draws and gradients, which follows
posterior correlations a diagonal one cannot. Each leapfrog step then costs more: on this
machine 0.3-0.7 microseconds of CPU per unconstrained parameter and step, growing with the
number D of them (6 at D = 20, 48 at D = 105, 187 at D = 306), against 3-150 for a whole
step with the diagonal one, so it pays only where the correlations are strong and D small. The
``"auto"`` rule (:func:`low_rank_choice`) reads the model's structure, known before sampling
(:func:`mass_matrix_features`), and picks the low-rank mass matrix when all three hold:

1. **No non-centred grouping term.** A non-centred term's posterior is a funnel (standardised
   effects against their SD) whose scale changes across the posterior; one linear
   correction fitted to the warm-up draws does not follow it. Measured (per CPU second,
   low-rank / diagonal, median of 5 seeds): non-centred sleepstudy 0.32 with 8 divergences
   against 1, debate ``(1 | group)`` 0.19, debate ``(1 + talk | group)`` 0.57, crossed
   terms one of them non-centred 0.76.
2. **At most** :data:`LOW_RANK_MAX_DIM` **(100) unconstrained parameters.** The extra cost
   per step grows faster than D while the gain per step shrinks: a centred, well informed
   ``(x | g)`` gained 2.23x per step with 40 groups (D = 86; 1.20x per CPU second), 1.05x
   with 70 (D = 146; 0.51x) and 1.07x with 150 (D = 306; 0.47x).
3. **Correlated coefficients a diagonal mass matrix cannot scale**: the standardised
   cross-product of the population-level design (:func:`fixed_condition`), or of one group's
   centred coefficients (:func:`group_condition`: intercept and slope over the group's rows,
   which is about their posterior correlation where the data dominate), has a
   condition number of at least :data:`LOW_RANK_MIN_CONDITION` (10). For a Gaussian
   posterior a diagonal mass matrix leaves that condition number, and NUTS needs about its
   square root as many steps per independent draw: at 10 that is ~3x, more than the extra
   cost of a low-rank step. Measured: predictors correlated 0.95 (condition number 80) 5.8x
   per CPU second, a logistic ``glm`` with predictors correlated 0.9 (30) 7.4x, an ``lmer``
   with correlated predictors (63) 5.8x, sleepstudy's ``(1 | Subject) + (0 + Days | Subject)``
   (Days 0-9 in every group: 11.7) 3.5x; uncorrelated predictors 0.66x and 0.76x. Centred
   intercepts and slopes of a centred predictor (condition number 1.3-1.5) gained 1.2x and
   1.18x on two simulated models and lost on a third (binomial, 0.79x): they stay diagonal.

A centred term only weakly informed by the data (data / prior precision ratio, the one
``param="auto"`` centres a term by, :func:`bayesglmm.reparam.term_information`, below
:data:`LOW_RANK_MIN_INFORMATION`, 3: twice the centring threshold) keeps a mild funnel, each
group's effects against their SD, and the larger steps of the low-rank mass matrix diverge
there at Stan's default target acceptance rate 0.8 (centred sleepstudy, ratio 1.7: 22
divergences over 5 seeds against 1 with the diagonal mass matrix). A higher rate, smaller
steps, removes them at a smaller cost than a diagonal mass matrix pays for the correlation:
for such a model the rule picks the low-rank mass matrix with ``delta`` at least
:data:`LOW_RANK_WEAK_DELTA` (0.9; :func:`run_delta`, never overriding a ``delta`` the user
gave). Measured at 0.9 against the diagonal mass matrix at 0.8: centred sleepstudy 1.82x per
CPU second with no divergences; on five weakly informed models added to check the rule
(ratios 1.6-2.8) 11.4x (23 divergences against 30), 3.9x (139 against 117), 1.9x and 2.4x
(0 against 0 and 1) and 0.91x (51 against 105): models this close to the centring threshold
can diverge whatever the mass matrix. nutpie's own knobs did not make it safe and fast at
once: ``mass_matrix_gamma`` = 1e-2 brought the divergences to 1 but cost a third or more of
the draws per CPU second on three other models, ``mass_matrix_eigval_cutoff`` 4 or 10 and
``mass_matrix_switch_freq`` 40 left 2-12 divergences (nutpie_lowrank_knobs.json).

``low_rank=True`` and ``False`` force either (nutpie's settings and the default ``delta``
otherwise unchanged). Every number here is in bench/results/nutpie_lowrank.json and
nutpie_lowrank_knobs.json (``python bench/bench_nutpie.py --settings default low_rank
low_rank_delta90 --models ...``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

__all__ = ["LOW_RANK_MAX_DIM", "LOW_RANK_MIN_CONDITION", "LOW_RANK_MIN_INFORMATION",
           "LOW_RANK_WEAK_DELTA", "MassMatrixChoice", "centred_information", "check_low_rank",
           "fixed_condition", "group_condition", "low_rank_choice", "mass_matrix_features",
           "resolve_low_rank", "run_delta"]

# the most unconstrained parameters for which "auto" picks the low-rank mass matrix
LOW_RANK_MAX_DIM = 100
# condition number of the standardised cross-product of the population-level design, or of
# a group's centred coefficients, from which it does
LOW_RANK_MIN_CONDITION = 10.0
# below this data / prior precision ratio of a centred term (param="auto" centres from 1.5:
# bayesglmm.reparam.AUTO_MIN_INFORMATION) the low-rank mass matrix needs smaller steps ...
LOW_RANK_MIN_INFORMATION = 3.0
# ... this target acceptance rate at least (sample()'s default delta is raised to it)
LOW_RANK_WEAK_DELTA = 0.9


def _condition(X: np.ndarray) -> float:
    """The condition number of X'X scaled to unit diagonal (1 for fewer than two columns or
    not more rows than columns; inf when singular)."""
    if X.ndim != 2 or X.shape[1] < 2 or X.shape[0] <= X.shape[1]:
        return 1.0
    P = X.T @ X
    d = np.sqrt(np.diag(P))
    if not np.all(d > 0):
        return float("inf")
    ev = np.linalg.eigvalsh(P / np.outer(d, d))
    return float(ev[-1] / ev[0]) if ev[0] > 0 else float("inf")


def fixed_condition(spec: Any) -> float:
    """The condition number of the population-level design's cross-product scaled to unit
    diagonal (columns centred when the model has an intercept, which absorbs their means):
    the condition number of the coefficients' posterior correlation under a flat prior.
    1 for fewer than two columns."""
    X = np.asarray(spec.fixed.X, dtype=float)
    if spec.has_intercept and X.ndim == 2 and X.shape[0]:
        X = X - X.mean(axis=0)
    return _condition(X)


def group_condition(spec: Any) -> float:
    """The same for one group's centred coefficients: per grouping factor, the columns of its
    centred terms (Z_j, the group's rows; the intercept column included), the median over its
    groups of the condition number of Z_j'Z_j scaled to unit diagonal; the largest over the
    factors (1 without a factor with two or more centred coefficients). Where the data
    dominate a group's coefficients (a well informed centred term), their posterior
    correlation is about that of Z_j'Z_j."""
    factors: dict[str, list[Any]] = {}
    for g in spec.groups:
        if g.centered:
            factors.setdefault(g.factor, []).append(g)
    out = 1.0
    for terms in factors.values():
        if sum(g.q for g in terms) < 2:
            continue
        Z = np.hstack([np.asarray(g.Z, dtype=float) for g in terms])
        index, n_groups = terms[0].index, terms[0].n_groups
        order = np.argsort(index, kind="stable")
        bounds = np.searchsorted(index[order], np.arange(1, n_groups + 2))
        per = [_condition(Z[order[bounds[j]:bounds[j + 1]]]) for j in range(n_groups)]
        out = max(out, float(np.median(per)))
    return out


def centred_information(spec: Any, g: Any) -> float:
    """How strongly the data inform a grouping term's coefficients relative to the group-level
    distribution (:func:`bayesglmm.reparam.term_information`, the quantity ``param="auto"``
    centres a term by)."""
    from ..reparam import term_information

    X = np.asarray(spec.fixed.X, dtype=float)
    return float(term_information(np.asarray(spec.response.y, dtype=float), spec.response.trials,
                                  X, g.index, g.Z, g.n_groups))


def mass_matrix_features(spec: Any, n_unconstrained: int, full: bool = False
                         ) -> dict[str, Any]:
    """The model's structure that :func:`low_rank_choice` reads.

    Parameters
    ----------
    spec : ModelSpec or None
        The model's specification (None for ``from_stan`` programs).
    n_unconstrained : int
        The number of unconstrained parameters of the program that runs.
    full : bool
        Compute every feature. False: the ones that cost a pass over the data
        (``fixed_condition``, ``centred_information``) are None when the rule does not need
        them (a non-centred term, or more than :data:`LOW_RANK_MAX_DIM` parameters).

    Returns
    -------
    dict
        ``n_unconstrained``, ``n_obs``, ``terms`` (per grouping term: text, centred,
        coefficients, correlated, groups), ``centred_coefficients`` (the most centred
        coefficients of one grouping factor, over its terms), ``fixed_condition``
        (:func:`fixed_condition`), ``group_condition`` (:func:`group_condition`) and
        ``centred_information`` (the least
        :func:`centred_information` of a centred term; None without one); ``formula`` False
        for a ``from_stan`` program.
    """
    if spec is None:
        return {"formula": False, "n_unconstrained": int(n_unconstrained)}
    per_factor: dict[str, int] = {}
    for g in spec.groups:
        if g.centered:
            per_factor[g.factor] = per_factor.get(g.factor, 0) + g.q
    needed = full or (n_unconstrained <= LOW_RANK_MAX_DIM
                      and all(g.centered for g in spec.groups))
    information = [centred_information(spec, g) for g in spec.groups if g.centered and needed]
    return {
        "formula": True,
        "n_unconstrained": int(n_unconstrained),
        "n_obs": int(spec.n_obs),
        "terms": [{"term": g.text, "centered": bool(g.centered), "q": g.q,
                   "correlated": bool(g.has_corr), "groups": g.n_groups} for g in spec.groups],
        "centred_coefficients": max(per_factor.values(), default=0),
        "fixed_condition": round(fixed_condition(spec), 3) if needed else None,
        "group_condition": round(group_condition(spec), 3) if needed else None,
        "centred_information": round(min(information), 3) if information else None,
    }


class MassMatrixChoice(NamedTuple):
    """The mass matrix nutpie adapts for a model, and why.

    Attributes
    ----------
    low_rank : bool
        nutpie's low-rank modified mass matrix (True) or its diagonal one.
    reason : str
        Why, in words (printed with the fit).
    min_delta : float or None
        The least target acceptance rate the choice is safe at (None: any); ``sample()``
        raises its default ``delta`` to it (:func:`run_delta`), never a ``delta`` the user gave.
    """

    low_rank: bool
    reason: str
    min_delta: float | None = None


def low_rank_choice(features: dict[str, Any]) -> MassMatrixChoice:
    """The ``"auto"`` rule (see the module docstring).

    Parameters
    ----------
    features : dict
        :func:`mass_matrix_features` of the model.

    Returns
    -------
    MassMatrixChoice

    Examples
    --------
    >>> low_rank_choice({"formula": True, "n_unconstrained": 42, "terms": [
    ...     {"term": "(Days | Subject)", "centered": True, "q": 2}], "centred_coefficients": 2,
    ...     "fixed_condition": 1.0, "group_condition": 11.7, "centred_information": 14.4})
    ... # doctest: +NORMALIZE_WHITESPACE
    MassMatrixChoice(low_rank=True, reason='correlated coefficients within groups (condition
    number 11.7), 42 parameters', min_delta=None)
    """
    if not features.get("formula", True):
        return MassMatrixChoice(False, "a from_stan program (no model structure to judge from)")
    noncentred = [t["term"] for t in features["terms"] if not t["centered"]]
    if noncentred:
        return MassMatrixChoice(False, f"non-centred grouping term {noncentred[0]}")
    dim = features["n_unconstrained"]
    if dim > LOW_RANK_MAX_DIM:
        return MassMatrixChoice(False, f"{dim} parameters (> {LOW_RANK_MAX_DIM})")
    if features["group_condition"] >= LOW_RANK_MIN_CONDITION:
        why = (f"correlated coefficients within groups (condition number "
               f"{features['group_condition']:.3g}), {dim} parameters")
    elif features["fixed_condition"] >= LOW_RANK_MIN_CONDITION:
        why = (f"correlated predictors (condition number {features['fixed_condition']:.3g}), "
               f"{dim} parameters")
    else:
        return MassMatrixChoice(False, "no strongly correlated coefficients")
    info = features["centred_information"]
    if info is not None and info < LOW_RANK_MIN_INFORMATION:
        return MassMatrixChoice(True, (
            f"{why}; a weakly informed centred term (data / prior precision {info:.3g} < "
            f"{LOW_RANK_MIN_INFORMATION:g}): target acceptance rate at least "
            f"{LOW_RANK_WEAK_DELTA:g}"), LOW_RANK_WEAK_DELTA)
    return MassMatrixChoice(True, why)


def run_delta(delta: float | None, default: float, choice: MassMatrixChoice) -> float:
    """The target acceptance rate nutpie runs at: ``delta`` when the user gave one, else the
    model's ``default`` raised to the choice's ``min_delta``.

    Examples
    --------
    >>> run_delta(None, 0.8, MassMatrixChoice(True, "", 0.9))
    0.9
    >>> run_delta(0.85, 0.8, MassMatrixChoice(True, "", 0.9))
    0.85
    """
    if delta is not None:
        return delta
    return default if choice.min_delta is None else max(default, choice.min_delta)


def check_low_rank(low_rank: Any) -> Any:
    """``low_rank`` of :meth:`bayesglmm.Model.sample`: "auto", True or False, else a
    ValueError naming it."""
    if isinstance(low_rank, bool) or (isinstance(low_rank, str) and low_rank == "auto"):
        return low_rank
    raise ValueError(f"low_rank must be 'auto', True or False, got {low_rank!r}")


def resolve_low_rank(low_rank: Any, spec: Any, n_unconstrained: int) -> MassMatrixChoice:
    """The mass matrix nutpie adapts: ``low_rank`` itself when True or False, else
    :func:`low_rank_choice` of the model's structure."""
    if low_rank is True or low_rank is False:
        return MassMatrixChoice(low_rank, f"low_rank={low_rank}")
    return low_rank_choice(mass_matrix_features(spec, n_unconstrained))

