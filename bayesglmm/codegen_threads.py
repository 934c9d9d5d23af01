"""The threaded variant of a model's own Stan program: the likelihood as a ``reduce_sum``.

``sample(threads_per_chain=k)`` with ``k > 1`` runs this variant. It declares the same
parameters and computes the same log density as the plain program (the sum over observations
is split into slices whose partial sums Stan's ``reduce_sum`` evaluates on ``k`` threads per
chain); only the model block's likelihood statement, one function and two lines of data
differ. It is a different program text, so it has its own entry in the compiled-model cache:
plain fits never pay for it.

Slicing: the observations ``1..N`` are cut into contiguous slices (``obs_seq``, at least
``grainsize`` rows each). A slice computes its own part of the linear predictor (rows of the
design matrix, the offsets, each row's group effects ``r_k[J_k]`` or, for a term with design
columns, the slice's rows of its CSR form ``Zw_k``/``Zv_k`` times ``r_k``; a design in CSR form is cut to the slice's rows: its
entries ``X_u[start]`` to ``X_u[end + 1] - 1`` and row starts shifted to 1) and returns the family's log density of its rows: the
family's ``*_glm`` density where the plain program uses it, else its vectorised density. The
group-level effects ``r_k`` are computed once per evaluation in the model block and shared by
the slices; their priors stay in the model block.

This module builds the template context from the family's snippet (the macros are rendered with
the environment of :func:`bayesglmm.codegen.jinja_env`, passed in): the response variables that
are per observation (their first dimension is ``N``) are sliced with ``[start:end]``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["default_grainsize", "threads_context", "threads_unsupported"]

_DECL = re.compile(
    r"^(?:array\[(?P<adims>[^\]]*)\]\s+)?"
    r"(?P<base>[a-z_]+)"
    r"(?:<[^>]*>)?(?:\[(?P<dims>[^\]]*)\])?\s+(?P<name>[A-Za-z]\w*)\s*(?:=.*)?;$"
)


def _fn_type(base: str) -> str:
    """The function-argument type of a declared Stan type (constraints dropped)."""
    if base in ("int", "real", "row_vector", "matrix"):
        return base
    if base.endswith("matrix") or base.startswith("cholesky_factor"):
        return "matrix"
    return "vector"  # vector and the constrained vectors (simplex, sum_to_zero_vector, ...)


def threads_unsupported(spec: Any) -> str | None:
    """Why the threaded program cannot express ``spec``'s likelihood, or None."""
    if getattr(spec, "resid", None) is not None:
        return ("residual correlation (resid_corr=) is evaluated block by block and is not "
                "sliced")
    return None


def default_grainsize(n_obs: int, threads_per_chain: int) -> int:
    """The smallest slice: about four slices per thread (each slice copies the shared
    parameters, so slices far smaller than N / threads only add copying)."""
    return max(1, math.ceil(n_obs / (4 * max(1, threads_per_chain))))


def _declarations(text: str) -> list[dict[str, Any]]:
    """The Stan declarations of a snippet macro's text: name, function-argument type, and
    whether it has one entry per observation (first dimension N)."""
    out = []
    for raw in text.splitlines():
        line = raw.split("//", 1)[0].strip()
        if not line:
            continue
        m = _DECL.match(line)
        if m is None:
            raise ValueError(f"threaded program: cannot read the declaration {line!r}")
        adims, dims = m.group("adims"), m.group("dims")
        base = _fn_type(m.group("base"))
        if adims is not None:
            ftype = f"array[{',' * adims.count(',')}] {base}"
            first = adims.split(",")[0].strip()
        else:
            ftype = base
            first = (dims or "").split(",")[0].strip()
        out.append({"name": m.group("name"), "type": ftype, "per_obs": first == "N"})
    return out


def _uses(expr: str, name: str) -> bool:
    return re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", expr) is not None


def _slice(expr: str, names: list[str]) -> str:
    """``expr`` with every whole-vector use of ``names`` cut to the rows ``start:end``."""
    for name in names:
        expr = re.sub(rf"(?<![\w.]){re.escape(name)}(?![\w\[])", f"{name}[start:end]", expr)
    return expr


def _macro(module: Any, name: str, *args: str) -> str:
    fn = getattr(module, name, None)
    return str(fn(*args)).strip() if fn is not None else ""


def threads_context(ctx: Mapping[str, Any], env: Any) -> dict[str, Any]:
    """The ``threads`` part of the model template's context (see ``templates/threads.stan.j2``).

    ``ctx`` is the model template's context (:func:`bayesglmm.codegen.render_code`) and ``env``
    the Jinja environment whose loader finds the family's snippet.
    """
    fam = env.get_template(ctx["family"]["snippet"]).module
    tdata_text = _macro(fam, "tdata")
    data = _declarations(_macro(fam, "data")) + _declarations(tdata_text)
    params = _declarations(_macro(fam, "params"))
    per_obs = [d["name"] for d in data if d["per_obs"]]
    X = f"{ctx['X']}[start:end]"
    sparse = bool(ctx.get("sparse"))
    # a family's transformed data are whole-data quantities (e.g. a sum over all rows), so the
    # *_glm form is used only by families without them (and not with a design in CSR form)
    glm = "" if tdata_text or sparse else _macro(fam, "glm", X, ctx["alpha"])
    expr = _slice(glm or _macro(fam, "vec"), per_obs)

    mu = ""
    if not glm:
        if ctx["family"]["category_specific"]:
            rest = " + rep_matrix(eta, C - 1)" if ctx["alpha_vector"] else ""
            mu = f"matrix[n, C - 1] mu = {X} * beta{rest};  // one column per transition"
        else:
            rest = f" + {ctx['alpha']}" if ctx["alpha"] != "0" else ""
            xb = f"{X} * beta"
            if sparse:  # the slice's rows of the CSR design (rows_csr)
                xb = ("csr_matrix_times_vector(n, rows(beta), X_w[a:b], X_v[a:b], u, beta)"
                      + (" - dot_product(means_X, beta)" if ctx["centred"] else ""))
            mu = f"vector[n] mu = {xb}{rest};  // linear predictor of the slice"
    used = f"{expr} {mu}"
    args: list[tuple[str, str]] = []  # (function argument type, name), in call order
    for d in data:
        if _uses(used, d["name"]):
            args.append((("data " if d["type"] != "int" else "") + d["type"], d["name"]))
    if sparse:
        args += [("data vector", "X_w"), ("data array[] int", "X_v"), ("data array[] int", "X_u")]
        if ctx["centred"]:
            args.append(("data vector", "means_X"))
    else:
        args.append(("data matrix", ctx["X"]))
    args.append(("matrix" if ctx["family"]["category_specific"] else "vector", "beta"))
    if ctx["intercept"]:
        args.append(("real", ctx["icpt"]))
    if ctx["offset"]:
        args.append(("data vector", "offsets"))
    eta_lines = []
    for g in ctx["groups"]:
        k = g["k"]
        args.append(("array[] int", f"J_{k}"))
        if g["intercept_only"]:
            eta_lines.append(f"eta += r_{k}[J_{k}[start:end], 1];  // term {k}: group intercepts")
        else:  # the slice's rows of the term's CSR form (transformed data), as in the plain
            # program: one sparse product per slice, not a node per row and coefficient
            args += [("int", f"M_{k}"), ("int", f"N_{k}"), ("data vector", f"Zw_{k}"),
                     ("data array[] int", f"Zv_{k}")]
            rows = f"((start - 1) * M_{k} + 1):(end * M_{k})"
            eta_lines += [
                f"array[n + 1] int u_{k};  // term {k}: row starts of the slice's rows of Zw_{k}",
                "for (i in 1:(n + 1)) {",
                f"  u_{k}[i] = (i - 1) * M_{k} + 1;",
                "}",
                f"eta += csr_matrix_times_vector(n, M_{k} * N_{k}, Zw_{k}[{rows}], Zv_{k}[{rows}], "
                f"u_{k}, to_vector(r_{k}'));  // term {k}: Z_{k} times the effects of each row's group",
            ]
        args.append(("matrix", f"r_{k}"))
    for p in ctx["family"]["extra"]:
        args.append(("real", p["name"]))
    for d in params:
        if _uses(used, d["name"]):
            args.append((d["type"], d["name"]))
    if ctx["offset"]:
        eta_lines.insert(0, "eta += offsets[start:end];")
    return {
        "args": [f"{t} {n}" for t, n in args],
        "call": [n for _, n in args],
        "eta_init": (ctx["icpt"] if ctx["intercept"] else "0.0") if ctx["alpha_vector"] else None,
        "eta_lines": eta_lines,
        "mu": mu,
        "expr": expr,
        "rows_csr": sparse,
    }
