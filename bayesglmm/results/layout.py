"""The random-effect layout of a fit, read from its parameter names (``sd[group:Int]``,
``r_re_2[7,1]``) and completed by the model spec: grouping terms, coefficients, level labels."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..core.naming import ParamName

__all__ = ["RE_RX", "SD_RX", "ReTerm", "re_index", "re_layout"]


RE_RX = re.compile(r"^r_re(?:_(\d+))?\[(\d+)(?:,(\d+))?\]$")


SD_RX = re.compile(r"^sd(?:_(\d+))?\[(.*)\]$")


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
            m = SD_RX.match(p.user)
            if m:
                sds.setdefault(int(m.group(1) or 1), []).append(p)
        elif p.kind == "re":
            m = RE_RX.match(p.user)
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
        inner = [(SD_RX.match(p.user).group(2)) for p in sd_params]
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


def re_index(params: Sequence[ParamName]) -> dict[tuple[int, int, int], int]:
    """(term k, level j, coef c) -> position in ``params`` of r_re_k[j,c]."""
    out = {}
    for i, p in enumerate(params):
        if p.kind == "re":
            m = RE_RX.match(p.user)
            if m:
                out[(int(m.group(1) or 1), int(m.group(2)), int(m.group(3) or 1))] = i
    return out
