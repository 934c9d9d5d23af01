"""Factorisations for the exact linear mixed model (:mod:`bayesglmm.inference.lmm`).

With the relative covariance factor T (block diagonal: per grouping term k and group,
the M_k x M_k factor T_k = diag(sd_k / sigma) L_k), the penalised least-squares problem needs

    A = T' Z'Z T + I

factorised at every evaluation of the profiled deviance. :class:`Layout` holds what does not
change between evaluations (Z'Z and its block structure); :class:`AFactor` factorises A for one
T in one of four ways:

* ``blocks``: one grouping term; Z'Z is block diagonal, so A is a batch of small dense blocks;
* ``schur``: several terms; the term with the most random effects (its own Z_k'Z_k is block
  diagonal: each observation is in one group) is eliminated per group, and the Schur complement
  of the other terms (at most ``DENSE_MAX`` random effects) is factorised densely, as a
  fill-reducing ordering would do for nested and crossed terms;
* ``dense``: several terms, at most ``DENSE_MAX`` random effects in all;
* ``sparse``: otherwise, a sparse LU with a symmetric fill-reducing ordering and no pivoting
  (a Cholesky factor).

:class:`WFactor` adds the fixed effects (REML) with the interface of the generic Laplace factor;
:class:`CentredFactor` maps it to a program whose centred terms declare the effects themselves.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import linalg as sla
from scipy import sparse

__all__ = ["AFactor", "CentredFactor", "DENSE_MAX", "Layout", "SparseLowRank", "WFactor"]

#: Largest dense factorisation (random effects) of the ``dense`` and ``schur`` modes.
DENSE_MAX = 1000
#: Largest dense Z_1'Z_rest block (entries) of the ``schur`` mode.
SCHUR_MAX = 4_000_000


def _right(R: np.ndarray, parts: list[tuple[int, int, int, np.ndarray]]) -> np.ndarray:
    """R T for a dense R of shape (r, c): ``parts`` = (column offset, M, G, T_k) per term,
    T = kron(I_G, T_k) on the term's columns (group-major, coefficient-minor)."""
    out = np.empty_like(R)
    r = R.shape[0]
    for off, M, G, T in parts:
        w = M * G
        if M == 1:
            out[:, off:off + w] = R[:, off:off + w] * T[0, 0]
        else:
            out[:, off:off + w] = (R[:, off:off + w].reshape(r, G, M) @ T).reshape(r, w)
    return out


def _blocks(B: Any, M: int, G: int) -> np.ndarray | None:
    """The (G, M, M) diagonal blocks of a sparse matrix, or None if it is not block diagonal."""
    C = B.tocoo()
    if np.any(C.row // M != C.col // M):
        return None
    out = np.zeros((G, M, M))
    out[C.row // M, C.row % M, C.col % M] = C.data
    return out


class Layout:
    """What the factorisations of A reuse: the terms' positions and Z'Z in the form each mode
    needs. ``terms``: (column offset, M, G) per grouping term; ``ZtZ``: sparse (q, q)."""

    def __init__(self, terms: list[tuple[int, int, int]], ZtZ: Any):
        self.terms = terms
        self.q = int(ZtZ.shape[0])
        self.ZtZ = ZtZ
        self.mode = "sparse"
        self._pattern: tuple[np.ndarray, np.ndarray] | None = None
        if len(terms) == 1:
            _off, M, G = terms[0]
            self.block = _blocks(ZtZ, M, G)
            if self.block is not None:
                self.mode = "blocks"
                return
        k = max(range(len(terms)), key=lambda i: terms[i][1] * terms[i][2])
        off, M, G = terms[k]
        q1 = M * G
        q2 = self.q - q1
        if len(terms) > 1 and q2 <= DENSE_MAX and q1 * q2 <= SCHUR_MAX:
            idx1 = np.arange(off, off + q1)
            idx2 = np.setdiff1d(np.arange(self.q), idx1)
            Zc = ZtZ.tocsr()
            B11 = _blocks(Zc[idx1][:, idx1], M, G)
            if B11 is not None:
                self.mode = "schur"
                self.k, self.idx1, self.idx2 = k, idx1, idx2
                self.B11 = B11
                self.B12 = Zc[idx1][:, idx2].toarray().reshape(G, M, q2)
                self.B22 = Zc[idx2][:, idx2].toarray()
                rest, pos = [], 0
                for i, (_o, Mi, Gi) in enumerate(terms):
                    if i != k:
                        rest.append((i, pos, Mi, Gi))
                        pos += Mi * Gi
                self.rest = rest
                return
        if self.q <= DENSE_MAX:
            self.mode = "dense"
            self.dense = ZtZ.toarray()

    def parts(self, Ts: list[np.ndarray]) -> list[tuple[int, int, int, np.ndarray]]:
        return [(off, M, G, T) for (off, M, G), T in zip(self.terms, Ts)]

    def T_sparse(self, Ts: list[np.ndarray]) -> Any:
        """T as a CSR matrix (the sparsity pattern is built once)."""
        if self._pattern is None:
            indptr, indices, start = [np.zeros(1, dtype=np.int64)], [], 0
            for off, M, G in self.terms:
                cols = (off + np.arange(G)[:, None, None] * M
                        + np.zeros((1, M, 1), dtype=np.int64) + np.arange(M)[None, None, :])
                indices.append(cols.ravel())
                indptr.append(start + M * np.arange(1, M * G + 1))
                start += M * M * G
            self._pattern = (np.concatenate(indices), np.concatenate(indptr))
        indices, indptr = self._pattern
        data = np.concatenate([np.tile(T.ravel(), G) for (_o, _M, G), T in zip(self.terms, Ts)])
        return sparse.csr_matrix((data, indices, indptr), shape=(self.q, self.q))

    def Tt(self, Ts: list[np.ndarray], R: np.ndarray) -> np.ndarray:
        """T' R for R of shape (q,) or (q, m)."""
        R = np.asarray(R, dtype=float)
        R2 = R.reshape(self.q, -1)
        return _right(np.ascontiguousarray(R2.T), self.parts(Ts)).T.reshape(R.shape)


class AFactor:
    """A = T' Z'Z T + I factorised (the modes of the module docstring); ``logdet`` = log|A|.
    Raises ``numpy.linalg.LinAlgError`` when A is not numerically positive definite."""

    def __init__(self, lay: Layout, Ts: list[np.ndarray]):
        self.q = lay.q
        self.mode = lay.mode
        self.lay = lay
        if self.mode == "blocks":
            T = Ts[0]
            self.B = T.T @ lay.block @ T + np.eye(T.shape[0])  # (G, M, M): one block per group
            L = np.linalg.cholesky(self.B)  # LinAlgError if not positive definite
            self.logdet = 2.0 * float(np.sum(np.log(np.diagonal(L, axis1=1, axis2=2))))
            self.Binv = np.linalg.inv(self.B)  # small blocks, eigenvalues >= 1: well conditioned
            return
        if self.mode == "schur":
            T1 = Ts[lay.k]
            G, M, q2 = lay.B12.shape
            A11 = T1.T @ lay.B11 @ T1 + np.eye(M)
            L11 = np.linalg.cholesky(A11)
            self.A11inv = np.linalg.inv(A11)
            rest = [(pos, Mi, Gi, Ts[i]) for i, pos, Mi, Gi in lay.rest]
            A12 = _right((T1.T @ lay.B12).reshape(G * M, q2), rest)  # T_1' Z_1'Z_2 T_2
            A22 = _right(np.ascontiguousarray(_right(lay.B22, rest).T), rest)
            A22[np.diag_indices_from(A22)] += 1.0
            self.A12 = A12
            self.W = (self.A11inv @ A12.reshape(G, M, q2)).reshape(G * M, q2)  # A11^-1 A12
            self.Ls = np.linalg.cholesky(A22 - A12.T @ self.W)
            self.logdet = 2.0 * float(np.sum(np.log(np.diagonal(L11, axis1=1, axis2=2)))
                                      + np.sum(np.log(np.diag(self.Ls))))
            return
        if self.mode == "dense":
            # T' Z'Z T by per-term products with the small factors (no sparse algebra: its
            # set-up costs more than the arithmetic at this size)
            parts = lay.parts(Ts)
            A = _right(np.ascontiguousarray(_right(lay.dense, parts).T), parts)
            A[np.diag_indices_from(A)] += 1.0
            self.L = np.linalg.cholesky(A)
            self.logdet = 2.0 * float(np.sum(np.log(np.diag(self.L))))
            return
        from scipy.sparse.linalg import splu

        Tfull = lay.T_sparse(Ts)
        A = (Tfull.T @ lay.ZtZ @ Tfull + sparse.identity(self.q)).tocsc()
        self.lu = splu(A, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                       options={"SymmetricMode": True})
        d = self.lu.U.diagonal()
        if not np.all(d > 0):
            raise np.linalg.LinAlgError("not positive definite")
        self.logdet = float(np.sum(np.log(d)))

    def solve(self, R: np.ndarray) -> np.ndarray:
        """A^-1 R for R of shape (q,) or (q, m)."""
        R = np.asarray(R, dtype=float)
        if self.mode == "blocks":
            G, M = self.B.shape[0], self.B.shape[1]
            return (self.Binv @ R.reshape(G, M, -1)).reshape(R.shape)
        if self.mode == "schur":
            lay = self.lay
            G, M = self.A11inv.shape[0], self.A11inv.shape[1]
            R2 = R.reshape(self.q, -1)
            y1 = (self.A11inv @ R2[lay.idx1].reshape(G, M, -1)).reshape(G * M, -1)
            x2 = sla.cho_solve((self.Ls, True), R2[lay.idx2] - self.A12.T @ y1,
                               check_finite=False)
            out = np.empty_like(R2)
            out[lay.idx1] = y1 - self.W @ x2
            out[lay.idx2] = x2
            return out.reshape(R.shape)
        if self.mode == "dense":
            return sla.cho_solve((self.L, True), R, check_finite=False)
        return self.lu.solve(R) if R.ndim == 1 or R.shape[1] else np.zeros_like(R)

    def inverse(self) -> Any:
        """A^-1: sparse block diagonal (blocks) or dense."""
        if self.mode == "blocks":
            Binv = self.Binv
            G, M = Binv.shape[0], Binv.shape[1]
            base = (np.arange(G) * M)[:, None, None]
            rows = np.broadcast_to(base + np.arange(M)[None, :, None], Binv.shape)
            cols = np.broadcast_to(base + np.arange(M)[None, None, :], Binv.shape)
            return sparse.csr_matrix((Binv.ravel(), (rows.ravel(), cols.ravel())),
                                     shape=(self.q, self.q))
        return self.solve(np.eye(self.q))


class WFactor:
    """The Hessian H over the integrated coordinates, ordered (fixed effects, random effects):
    [[X'X / s^2, C' / s], [C / s, A]] with C = T' Z'X (the fixed-effect part absent for ML),
    with the interface of the generic Laplace factor (``q``, ``mode``, ``solve``,
    ``solve_many``, ``half_logdet``, ``inverse``, ``inverse_sparse``)."""

    def __init__(self, af: AFactor, B: np.ndarray | None, D: np.ndarray | None):
        self.af, self.B, self.D = af, B, D
        self.p = 0 if B is None else B.shape[1]
        self.q = af.q + self.p
        # "blocks": H^-1 is (block diagonal) + (rank p), see inverse_sparse
        self.mode = "blocks" if af.mode == "blocks" else "dense"
        if self.p:
            self.AiB = af.solve(B)
            S = D - B.T @ self.AiB
            self.Sc = np.linalg.cholesky(0.5 * (S + S.T))

    def half_logdet(self) -> float:
        out = 0.5 * self.af.logdet
        if self.p:
            out += float(np.sum(np.log(np.diag(self.Sc))))
        return out

    def solve_many(self, G: np.ndarray) -> np.ndarray:
        G = np.asarray(G, dtype=float)
        one = G.ndim == 1
        G = G[:, None] if one else G
        if not self.p:
            out = self.af.solve(G)
        else:
            gb, gz = G[:self.p], G[self.p:]
            Aig = self.af.solve(gz)
            xb = sla.cho_solve((self.Sc, True), gb - self.B.T @ Aig, check_finite=False)
            out = np.vstack([xb, Aig - self.AiB @ xb])
        return out[:, 0] if one else out

    solve = solve_many

    def fixed_inverse(self) -> np.ndarray:
        """The fixed-effect block of H^-1 (the inverse Schur complement)."""
        return sla.cho_solve((self.Sc, True), np.eye(self.p), check_finite=False)

    def inverse(self) -> np.ndarray:
        Ai = self.af.inverse()
        Ai = Ai.toarray() if sparse.issparse(Ai) else Ai
        if not self.p:
            return Ai
        Si = self.fixed_inverse()
        out = np.empty((self.q, self.q))
        p = self.p
        out[:p, :p] = Si
        out[p:, :p] = -self.AiB @ Si
        out[:p, p:] = out[p:, :p].T
        out[p:, p:] = Ai + self.AiB @ Si @ self.AiB.T
        return out

    def inverse_sparse(self) -> Any:
        """H^-1 without dense q x q storage: A^-1 (sparse) when nothing else is integrated,
        else a :class:`SparseLowRank`."""
        Ai = self.af.inverse()
        if not self.p:
            return Ai
        P = sparse.block_diag([sparse.csr_matrix((self.p, self.p)), Ai], format="csr")
        V = np.vstack([np.eye(self.p), -self.AiB])
        return SparseLowRank(P, V, self.fixed_inverse())


class SparseLowRank:
    """The symmetric matrix P + V W V' (P sparse, V tall and thin), with what the factored
    covariance needs: ``diagonal``, ``toarray``, ``quad_diag`` and ``J @ self``."""

    def __init__(self, P: Any, V: np.ndarray, W: np.ndarray):
        self.P, self.V, self.W = P, V, W
        self.shape = P.shape

    def diagonal(self) -> np.ndarray:
        return self.P.diagonal() + np.einsum("ij,jk,ik->i", self.V, self.W, self.V)

    def toarray(self) -> np.ndarray:
        return self.P.toarray() + self.V @ self.W @ self.V.T

    def quad_diag(self, J: Any) -> np.ndarray:
        """diag(J self J') for a sparse or dense J."""
        JV = np.asarray(J @ self.V)
        JP = J @ self.P
        first = (JP.multiply(J) if sparse.issparse(JP) else np.multiply(JP, J)).sum(axis=1)
        return np.asarray(first).ravel() + np.einsum("ij,jk,ik->i", JV, self.W, JV)

    def __rmatmul__(self, J: Any) -> np.ndarray:
        JP = J @ self.P
        JP = JP.toarray() if sparse.issparse(JP) else np.asarray(JP)
        return JP + np.asarray(J @ self.V) @ self.W @ self.V.T


class CentredFactor:
    """The Hessian over the program's integrated coordinates w = K v when the factor ``fac``
    is over v (the standardised effects) and the program declares the effects themselves for
    some terms (``K``: diag(sd) L per group of a centred term, identity elsewhere):
    H_w = K^-T H_v K^-1, so H_w^-1 = K H_v^-1 K' and log|H_w| = log|H_v| - 2 log|K|."""

    def __init__(self, fac: WFactor, K: Any, logdet_K: float):
        self.fac, self.K, self.logdet_K = fac, K, logdet_K
        self.q, self.mode, self.p, self.af = fac.q, fac.mode, fac.p, fac.af

    def half_logdet(self) -> float:
        return self.fac.half_logdet() - self.logdet_K

    def solve_many(self, G: np.ndarray) -> np.ndarray:
        G = np.asarray(G, dtype=float)
        return self.K @ self.fac.solve_many(self.K.T @ G)

    solve = solve_many

    def fixed_inverse(self) -> np.ndarray:
        return self.fac.fixed_inverse()  # K is the identity on the fixed effects

    def inverse(self) -> np.ndarray:
        return np.asarray(self.K @ (self.K @ self.fac.inverse()).T)

    def inverse_sparse(self) -> Any:
        Hi = self.fac.inverse_sparse()
        if isinstance(Hi, SparseLowRank):
            return SparseLowRank((self.K @ Hi.P @ self.K.T).tocsr(), np.asarray(self.K @ Hi.V), Hi.W)
        return (self.K @ Hi @ self.K.T).tocsr()
