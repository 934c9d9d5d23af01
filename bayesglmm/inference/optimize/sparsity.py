"""The random-effect blocks of the unconstrained vector and the sparsity of H_zz: which
random effects share observations (``re_pattern``) and a block-wise factorisation (``Factor``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import linalg as sla

__all__ = ['Factor', 'block_indices', 're_pattern', 'small_blocks', 'unc_name']


def unc_name(stan: str) -> str:
    """Stan element name -> BridgeStan unconstrained name ('beta[1,2]' -> 'beta.1.2')."""
    return stan.replace("[", ".").replace(",", ".").replace("]", "")


def block_indices(bs_model: Any, re_blocks: Sequence[str]) -> np.ndarray:
    """Positions of the random-effect blocks (e.g. ``z_1``) in the unconstrained vector."""
    heads = set(re_blocks)
    names = bs_model.param_unc_names()
    return np.array([i for i, n in enumerate(names) if n.split(".", 1)[0] in heads], dtype=int)


class Factor:
    """Cholesky factorisation of H_zz given as its values ``vals`` on the symmetric pattern
    (``rows``, ``cols``): block-wise when H_zz is block diagonal (one grouping term: a q x q block
    per group, ``blocks`` with the positions ``bpos`` of their entries in ``vals``), dense for a
    small q, a sparse LU with a symmetric fill-reducing ordering and no pivoting (= Cholesky)
    otherwise. Raises LinAlgError if not PD."""

    DENSE_MAX = 400  # up to this q a dense Cholesky (cheaper than the sparse machinery)

    def __init__(self, vals: np.ndarray, rows: np.ndarray, cols: np.ndarray, q: int,
                 blocks: list[np.ndarray] | None, bpos: list[np.ndarray] | None = None):
        self.q = q
        self.blocks = blocks
        self.mode = "blocks" if blocks is not None else ("dense" if q <= self.DENSE_MAX else "sparse")
        if self.mode == "blocks":
            self.B = [vals[pp] for pp in bpos]
            self.L = [np.linalg.cholesky(B) for B in self.B]
        elif self.mode == "dense":
            H = np.zeros((q, q))
            H[rows, cols] = vals
            self.L = np.linalg.cholesky(H)
        else:
            from scipy.sparse import csc_matrix
            from scipy.sparse.linalg import splu

            H = csc_matrix((vals, (rows, cols)), shape=(q, q))
            try:
                self.lu = splu(H, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                               options={"SymmetricMode": True})
            except RuntimeError:  # exactly singular
                raise np.linalg.LinAlgError("singular") from None
            d = self.lu.U.diagonal()
            if not np.all(d > 0) or not np.all(np.isfinite(d)):
                raise np.linalg.LinAlgError("not positive definite")
            self.d = d

    def solve(self, g: np.ndarray) -> np.ndarray:
        if self.mode == "dense":
            return sla.cho_solve((self.L, True), g, check_finite=False)
        if self.mode == "sparse":
            return self.lu.solve(np.asarray(g, dtype=float))
        out = np.empty(self.q)
        for idx, B in zip(self.blocks, self.B):
            out[idx] = np.linalg.solve(B, g[idx][:, :, None])[:, :, 0]
        return out

    def solve_many(self, G: np.ndarray) -> np.ndarray:
        """H_zz^-1 G for a (q, m) matrix G."""
        G = np.asarray(G, dtype=float)
        if self.mode == "dense":
            return sla.cho_solve((self.L, True), G, check_finite=False)
        if self.mode == "sparse":
            return self.lu.solve(G) if G.shape[1] else np.zeros_like(G)
        out = np.empty_like(G)
        for idx, B in zip(self.blocks, self.B):
            out[idx] = np.linalg.solve(B, G[idx])
        return out

    def inverse_sparse(self) -> Any:
        """H_zz^-1 as a scipy CSR matrix (block mode: block diagonal, O(q) memory)."""
        from scipy.sparse import coo_matrix

        rr, cc, vv = [], [], []
        for idx, B in zip(self.blocks, self.B):
            Binv = np.linalg.inv(B)
            s = idx.shape[1]
            rr.append(np.repeat(idx, s, axis=1).ravel())
            cc.append(np.tile(idx, (1, s)).ravel())
            vv.append(Binv.ravel())
        return coo_matrix((np.concatenate(vv), (np.concatenate(rr), np.concatenate(cc))),
                          shape=(self.q, self.q)).tocsr()

    def half_logdet(self) -> float:
        if self.mode == "dense":
            return float(np.sum(np.log(np.diag(self.L))))
        if self.mode == "sparse":
            return 0.5 * float(np.sum(np.log(self.d)))
        return float(sum(np.sum(np.log(np.diagonal(L, axis1=1, axis2=2))) for L in self.L))

    def inverse(self) -> np.ndarray:
        """The dense inverse (q x q: for small problems only)."""
        if self.mode == "dense":
            return sla.cho_solve((self.L, True), np.eye(self.q), check_finite=False)
        if self.mode == "sparse":
            return self.lu.solve(np.eye(self.q))
        out = np.zeros((self.q, self.q))
        for idx, B in zip(self.blocks, self.B):
            out[idx[:, :, None], idx[:, None, :]] = np.linalg.inv(B)
        return out


def re_pattern(program: Any, bs_model: Any, z_idx: np.ndarray):
    """Sparsity pattern of the Hessian over the integrated coordinates ``z_idx`` from the model
    structure: (symmetric boolean scipy CSC matrix, positions in ``z_idx`` of the integrated
    coordinates that are not random effects), or None when it cannot be derived (residual
    correlation: then it is probed numerically). Two random effects (z_k[m, j], z_l[m', j'])
    interact iff some observation uses both (J_k[i] = j and J_l[i] = j', with Z_k[i, m] and
    Z_l[i, m'] non-zero). The other integrated coordinates (fixed effects, ``marginal="auto"`` /
    REML) only get their diagonal here: :class:`LaplaceObjective` probes their columns."""
    from scipy.sparse import coo_matrix, csc_matrix

    spec = getattr(program, "spec", None)
    if spec is None or getattr(spec, "resid", None) is not None:
        return None  # residual correlation couples observations
    groups = {f"z_{g.k}": g for g in getattr(spec, "groups", ())}
    names = bs_model.param_unc_names()
    z_idx = np.asarray(z_idx, dtype=int)
    q = z_idx.size
    N = int(spec.n_obs)
    obs_r, other = [], []
    for loc, i in enumerate(z_idx):
        parts = names[i].split(".")
        g = groups.get(parts[0])
        if g is None:
            other.append(loc)
            continue
        if len(parts) != 3:
            return None
        obs_r.append((g.k, int(parts[1]), int(parts[2]), loc))
    # observations of each (term, group): incidence matrix A (N x q)
    by_term: dict[int, list[tuple[int, int, int]]] = {}
    for k, m, j, loc in obs_r:
        by_term.setdefault(k, []).append((j, m, loc))
    ai, aj, aw = [], [], []
    for g in spec.groups:
        lst = by_term.get(g.k)
        if not lst:
            continue
        idx = np.asarray(g.index, dtype=np.int64)
        if idx.size != N:
            return None
        js = np.array([j for j, _, _ in lst], dtype=np.int64)
        ms = np.array([m for _, m, _ in lst], dtype=np.int64)
        locs = np.array([l for _, _, l in lst], dtype=np.int64)
        # coordinates of each group j (several coefficients m per group)
        order = np.argsort(js, kind="stable")
        js, ms, locs = js[order], ms[order], locs[order]
        Z = None if g.intercept_only else np.asarray(g.Z, dtype=float).reshape(N, -1)
        start = np.searchsorted(js, idx, side="left")
        stop = np.searchsorted(js, idx, side="right")
        cnt = stop - start
        obs = np.repeat(np.arange(N), cnt)
        off = np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        sel = np.repeat(start, cnt) + off
        ai.append(obs)
        aj.append(locs[sel])
        # an effect is used by an observation only where its column of Z is non-zero
        aw.append(np.ones(obs.size) if Z is None else np.abs(Z[obs, ms[sel] - 1]))
    if ai:
        ai_, aj_, aw_ = np.concatenate(ai), np.concatenate(aj), np.concatenate(aw)
        keep = aw_ != 0
        A = csc_matrix((aw_[keep], (ai_[keep], aj_[keep])), shape=(N, q))
        P = (A.T @ A).tocoo()
        r, c = [P.row], [P.col]
    else:
        r, c = [], []
    r.append(np.arange(q))
    c.append(np.arange(q))
    if other:
        # fixed effects integrated out (REML, marginal="auto"): their columns are probed by
        # Hessian-vector products in LaplaceObjective; here a placeholder marks them
        o = np.asarray(other, dtype=np.int64)
        r.append(o)
        c.append(o)
    r_, c_ = np.concatenate(r), np.concatenate(c)
    P = coo_matrix((np.ones(r_.size, dtype=bool), (r_, c_)), shape=(q, q)).tocsc()
    P.sum_duplicates()
    P.data[:] = True
    return P, np.asarray(other, dtype=np.int64)


def small_blocks(pattern: np.ndarray, max_size: int = 16) -> list[np.ndarray] | None:
    """Index arrays (n_blocks, size), one per block size, if the pattern is block diagonal
    with blocks of at most ``max_size``; else None."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    q = pattern.shape[0]
    if q == 0:
        return None
    k, labels = connected_components(csr_matrix(pattern), directed=False)
    comps: dict[int, list[np.ndarray]] = {}
    for c in range(k):
        idx = np.flatnonzero(labels == c)
        if idx.size > max_size:
            return None
        comps.setdefault(idx.size, []).append(idx)
    return [np.array(v) for _, v in sorted(comps.items())]
