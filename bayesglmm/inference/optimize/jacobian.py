"""Constrained quantities as functions of the unconstrained parameters and their Jacobians
(dense, or column-coloured when random effects make it sparse)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ['constrain_fn', 'constrained_jacobian', 're_colours', 'sparse_jacobian']


def constrain_fn(bs_model: Any, seed: int) -> Callable[[np.ndarray], np.ndarray]:
    def c(u):
        rng = bs_model.new_rng(seed)  # same stream every call: differences are smooth
        return bs_model.param_constrain(u, include_tp=True, include_gq=True, rng=rng)

    return c


def constrained_jacobian(
    constrain: Callable[[np.ndarray], np.ndarray], u: np.ndarray, index: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """(values, Jacobian) of the constrained quantities ``index`` at the unconstrained point
    ``u``, the Jacobian by central differences (step 1e-6 relative)."""
    index = np.asarray(index, dtype=int)
    est = constrain(u)[index].astype(float)
    n = u.size
    J = np.zeros((index.size, n))
    for i in range(n):
        h = 1e-6 * max(1.0, abs(u[i]))
        up = u.copy()
        dn = u.copy()
        up[i] += h
        dn[i] -= h
        J[:, i] = (constrain(up)[index] - constrain(dn)[index]) / (2 * h)
    return est, J


def re_colours(bs_model: Any, index: np.ndarray) -> dict[int, tuple[np.ndarray, list]]:
    """Random-effect coordinates whose Jacobian columns can be differenced together: z_k[m, :]
    (all groups j of one coefficient m of term k). In the generated programs the only indexed
    quantities that depend on z_k are r_re_k[j, :] = ((L_k) z_k)'[j, :], and row j depends on
    z_k[:, j] only, so perturbing z_k[m, j] for every j at once gives, on row r_re_k[j, m'],
    exactly the arithmetic of perturbing z_k[m, j] alone. Returns {first coordinate: (the
    coordinates, per coordinate the positions in ``index`` of its rows)}."""
    import re

    unc = bs_model.param_unc_names()
    con = bs_model.param_names(include_tp=True, include_gq=True)
    zpat = re.compile(r"^z_(\d+)\.(\d+)\.(\d+)$")
    rpat = re.compile(r"^r_re_(\d+)\.(\d+)\.(\d+)$")
    rows_of: dict[tuple[int, int], list[int]] = {}
    for r, i in enumerate(index):
        mm = rpat.match(con[i])
        if mm:
            rows_of.setdefault((int(mm.group(1)), int(mm.group(2))), []).append(r)
    colours: dict[tuple[int, int], tuple[list, list]] = {}
    for i, nm in enumerate(unc):
        mm = zpat.match(nm)
        if mm:
            k, m, j = int(mm.group(1)), int(mm.group(2)), int(mm.group(3))
            cc = colours.setdefault((k, m), ([], []))
            cc[0].append(i)
            cc[1].append(np.asarray(rows_of.get((k, j), []), dtype=int))
    return {v[0][0]: (np.asarray(v[0], dtype=int), v[1]) for v in colours.values()
            if len(v[0]) > 1}


def sparse_jacobian(constrain: Callable[[np.ndarray], np.ndarray], u: np.ndarray,
                     index: Sequence[int], colours: dict | None = None):
    """As :func:`constrained_jacobian` (the same central differences), the Jacobian kept as a
    scipy CSR matrix of its non-zero entries; the coordinates of one entry of ``colours`` (see
    :func:`re_colours`) are differenced together (checked: the rows outside the attributed
    ones must not move, else one by one)."""
    from scipy.sparse import csc_matrix

    index = np.asarray(index, dtype=int)
    est = constrain(u)[index].astype(float)
    n = u.size
    cols: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    done = np.zeros(n, dtype=bool)
    for coords, rowlists in (colours or {}).values():
        h = 1e-6 * np.maximum(1.0, np.abs(u[coords]))
        up = u.copy()
        dn = u.copy()
        up[coords] += h
        dn[coords] -= h
        diff = constrain(up)[index] - constrain(dn)[index]
        seen = np.zeros(index.size, dtype=bool)
        for rr in rowlists:
            seen[rr] = True
        if np.any(diff[~seen] != 0):
            continue  # not the expected structure: these columns one by one below
        for i, hi, rr in zip(coords, h, rowlists):
            col = diff[rr] / (2 * hi)
            nz = col != 0
            cols[int(i)] = (rr[nz], col[nz])
        done[coords] = True
    rows, vals, ptr = [], [], [0]
    for i in range(n):
        if done[i]:
            r_i, v_i = cols[i]
            o = np.argsort(r_i, kind="stable")
            rows.append(r_i[o])
            vals.append(v_i[o])
            ptr.append(ptr[-1] + r_i.size)
            continue
        h = 1e-6 * max(1.0, abs(u[i]))
        up = u.copy()
        dn = u.copy()
        up[i] += h
        dn[i] -= h
        col = (constrain(up)[index] - constrain(dn)[index]) / (2 * h)
        nz = np.flatnonzero(col)
        rows.append(nz)
        vals.append(col[nz])
        ptr.append(ptr[-1] + nz.size)
    J = csc_matrix((np.concatenate(vals) if vals else np.zeros(0),
                    np.concatenate(rows) if rows else np.zeros(0, dtype=int), np.array(ptr)),
                   shape=(index.size, n))
    return est, J.tocsr()
