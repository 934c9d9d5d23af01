"""Parameter names: the one record of a user-facing quantity and the conversions between Stan's
element names and the names users see.

A generated program declares, for every quantity it reports, its Stan element name
(``beta[2]``, ``sd_1[1]``), the name users see (``b[talk]``, ``sd[group:Int]``) and its kind.
Fit tables, draws and post-estimation functions all work from that list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "KINDS",
    "ParamName",
    "bracket_name",
    "bridgestan_names",
    "is_hidden_stan_name",
    "log_lik_names",
    "resolve_params",
    "sd_name",
]

KINDS = ("Intercept", "Intercept_c", "b", "cutpoints", "family", "sd", "corr", "re", "aux", "stan")


@dataclass(frozen=True)
class ParamName:
    """A user-facing quantity of a Stan program.

    Parameters
    ----------
    stan : str
        Element name as CmdStan writes it: ``"Intercept"``, ``"beta[2]"``, ``"sd_1[1]"``,
        ``"corr_1[1,2]"``, ``"r_re_1[3,1]"``.
    user : str
        The name shown in tables: ``"Intercept"``, ``"b[perf]"``, ``"sd[group:Int]"``,
        ``"corr[Int,Days]"``, ``"r_re[3]"``.
    kind : str
        One of ``"Intercept"``, ``"Intercept_c"``, ``"b"``, ``"cutpoints"``, ``"family"``,
        ``"sd"``, ``"corr"``, ``"re"``, ``"aux"``; ``"stan"`` for programs loaded with
        :func:`bayesglmm.from_stan`, whose names are Stan's own.

    Examples
    --------
    >>> ParamName("beta[1]", "b[talk]", "b").user
    'b[talk]'
    """

    stan: str
    user: str
    kind: str


def bracket_name(name: str) -> str:
    """Convert a BridgeStan name (``a.1.2``) to the CmdStan form (``a[1,2]``).

    Parameters
    ----------
    name : str
        A BridgeStan parameter name; names without dots are returned unchanged.

    Examples
    --------
    >>> bracket_name("L_1.2.1")
    'L_1[2,1]'
    >>> bracket_name("sigma")
    'sigma'
    """
    if "." not in name:
        return name
    head, *idx = name.split(".")
    return f"{head}[{','.join(idx)}]"


def is_hidden_stan_name(name: str) -> bool:
    """True for CmdStan's sampler columns (``lp__``, ``divergent__``, ...) and ``log_lik``."""
    base = name.split("[", 1)[0]
    return base.endswith("__") or base == "log_lik"


def log_lik_names(available: Sequence[str]) -> list[str]:
    """The pointwise log-likelihood columns (``log_lik[1]``, ...) among ``available``."""
    return [n for n in available if n == "log_lik" or n.startswith("log_lik[")]


def resolve_params(program: Any, available: Sequence[str]) -> list[ParamName]:
    """The user-facing parameters of ``program`` present among the Stan output names.

    Parameters
    ----------
    program : StanProgram or ExternalProgram
        Generated programs carry ``params`` (display order, user names). Programs loaded by
        :func:`bayesglmm.from_stan` have none: then every output quantity is shown under its
        Stan name, except sampler columns and ``log_lik``.
    available : sequence of str
        The CmdStan-style names the fit produced (``beta[1]``, ``lp__``, ...).

    Returns
    -------
    list of ParamName
        In the program's display order.

    Raises
    ------
    RuntimeError
        If the output lacks a quantity the program declares (an internal inconsistency).
    """
    avail = set(available)
    declared = tuple(getattr(program, "params", None) or ())
    if declared:
        out = [ParamName(p.stan, p.user, p.kind) for p in declared if p.stan in avail]
        missing = [p.stan for p in declared if p.stan not in avail]
        if missing:
            raise RuntimeError(
                "internal error: the Stan output lacks quantities the program declares: "
                + ", ".join(missing[:5])
            )
        return out
    return [ParamName(n, n, "stan") for n in available if not is_hidden_stan_name(n)]


def sd_name(k: int, m: int, factor: str, coef: str, several: bool) -> ParamName:
    """The random-effect SD of coefficient ``coef`` (1-based ``m``) of grouping term ``k``.

    Parameters
    ----------
    k : int
        1-based number of the grouping term (the ``_k`` suffix of its Stan names).
    m : int
        1-based position of the coefficient within the term.
    factor : str
        The grouping factor, e.g. ``"Subject"``.
    coef : str
        The coefficient's label, e.g. ``"Int"`` or ``"Days"``.
    several : bool
        Whether the model has more than one grouping term (then user names carry ``_k``).

    Examples
    --------
    >>> sd_name(1, 2, "Subject", "Days", False)
    ParamName(stan='sd_1[2]', user='sd[Subject:Days]', kind='sd')
    """
    sfx = f"_{k}" if several else ""
    return ParamName(f"sd_{k}[{m}]", f"sd{sfx}[{factor}:{coef}]", "sd")


def bridgestan_names(bs: Any) -> list[str]:
    """Every quantity of a BridgeStan model (parameters, transformed parameters, generated
    quantities) under its CmdStan name, in BridgeStan's order."""
    return [bracket_name(n) for n in bs.param_names(include_tp=True, include_gq=True)]
