"""The covariance of a Laplace mode kept factored (``LaplaceCov``): Cov(theta), dz^/dtheta and
H_zz^-1, never the dense n x n matrix unless asked for."""

from __future__ import annotations

from typing import Any

import numpy as np

from .sparsity import Factor

__all__ = ['LaplaceCov']


class LaplaceCov:
    """Covariance of all unconstrained parameters after a Laplace fit, kept factored (TMB's
    construction): with theta the outer parameters (covariance ``cov_t`` = inverse Hessian of
    the Laplace objective), z the integrated ones, A = dz^/dtheta = -H_zz^-1 H_ztheta and
    z = z^(theta) + e, Cov(e) = H_zz^-1 (``fac``, a :class:`Factor`)::

        Cov(theta) = cov_t,  Cov(z, theta) = A cov_t,  Cov(z) = H_zz^-1 + A cov_t A'.

    Memory and the products used by the delta method are linear in the number of random
    effects (never the dense n x n matrix, 800 MB for 10,000 groups); ``toarray()`` (also
    ``np.asarray(cov)`` and indexing) builds it for small problems. ``J @ cov``, ``cov @ M``,
    ``diagonal()``, ``quad_diag(J)`` (= diag(J cov J')) and ``block(idx)`` work factored."""

    __array_ufunc__ = None  # ndarray @ LaplaceCov -> LaplaceCov.__rmatmul__

    def __init__(self, n: int, t: np.ndarray, z: np.ndarray, cov_t: np.ndarray, A: np.ndarray,
                 fac: Factor):
        self.n, self.t, self.z = n, np.asarray(t, dtype=int), np.asarray(z, dtype=int)
        self.cov_t, self.A, self.fac = cov_t, A, fac
        self._dense: np.ndarray | None = None
        self._hinv: Any = None

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.n)

    @property
    def ndim(self) -> int:
        return 2

    def _h_inverse(self) -> Any:
        """H_zz^-1: sparse block diagonal when H_zz is, else dense (cached)."""
        if self._hinv is None:
            self._hinv = self.fac.inverse_sparse() if self.fac.mode == "blocks" else self.fac.inverse()
        return self._hinv

    def toarray(self) -> np.ndarray:
        if self._dense is None:
            t, z, A, C = self.t, self.z, self.A, self.cov_t
            hinv = self._h_inverse()
            cov = np.empty((self.n, self.n))
            AC = A @ C
            cov[np.ix_(t, t)] = C
            cov[np.ix_(z, t)] = AC
            cov[np.ix_(t, z)] = AC.T
            cov[np.ix_(z, z)] = (hinv.toarray() if hasattr(hinv, "toarray") else hinv) + AC @ A.T
            self._dense = cov
        return self._dense

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        a = self.toarray()
        return a if dtype is None else a.astype(dtype)

    def __getitem__(self, key: Any) -> Any:
        """``cov[i, j]`` (two integers) without the dense matrix; anything else on it."""
        if (isinstance(key, tuple) and len(key) == 2
                and all(isinstance(k, (int, np.integer)) for k in key)):
            i, j = (int(k) % self.n for k in key)
            return float(self.block([i] if i == j else [i, j])[0, -1])
        return self.toarray()[key]

    def diagonal(self) -> np.ndarray:
        d = np.empty(self.n)
        d[self.t] = np.diag(self.cov_t)
        hinv = self._h_inverse()
        d[self.z] = hinv.diagonal() + np.einsum("ij,jk,ik->i", self.A, self.cov_t, self.A)
        return d

    def block(self, idx: Any) -> np.ndarray:
        """The dense sub-matrix cov[idx, idx]."""
        idx = np.asarray(idx, dtype=int)
        pos = np.searchsorted(self.t, idx)
        if idx.size and np.all(pos < self.t.size) and np.all(self.t[np.minimum(pos, self.t.size - 1)] == idx):
            return self.cov_t[np.ix_(pos, pos)]
        J = np.zeros((idx.size, self.n))
        J[np.arange(idx.size), idx] = 1.0
        return self.__rmatmul__(J)[:, idx]

    def _split(self, J: Any) -> tuple[Any, Any, np.ndarray]:
        from scipy import sparse

        if sparse.issparse(J):
            J = sparse.csc_matrix(J)
            Jt, Jz = J[:, self.t], J[:, self.z]
            B = np.asarray(Jt.toarray()) + np.asarray(Jz @ self.A)
            return Jt, sparse.csr_matrix(Jz), B
        J = np.atleast_2d(np.asarray(J, dtype=float))
        Jz = J[:, self.z]
        return J[:, self.t], Jz, J[:, self.t] + Jz @ self.A

    def __rmatmul__(self, J: Any) -> np.ndarray:
        """J @ cov (dense (m, n))."""
        from scipy import sparse

        _Jt, Jz, B = self._split(J)
        left = B @ self.cov_t
        out = np.empty((B.shape[0], self.n))
        out[:, self.t] = left
        hz = self.fac.solve_many(np.asarray(Jz.T.toarray() if sparse.issparse(Jz) else Jz.T))
        out[:, self.z] = left @ self.A.T + hz.T
        return out

    def __matmul__(self, M: Any) -> np.ndarray:
        """cov @ M (= (M' cov)', the covariance is symmetric)."""
        M = np.asarray(M, dtype=float)
        if M.ndim == 1:
            return self.__rmatmul__(M[None, :])[0]
        return self.__rmatmul__(M.T).T

    def quad_diag(self, J: Any) -> np.ndarray:
        """diag(J cov J') for a (sparse or dense) J with n columns, linear in the number of
        random effects when H_zz is block diagonal."""
        from scipy import sparse

        _Jt, Jz, B = self._split(J)
        out = np.einsum("ij,jk,ik->i", B, self.cov_t, B)
        hinv = self._h_inverse()
        if hasattr(hinv, "quad_diag"):  # structured (e.g. lmm.SparseLowRank)
            out += hinv.quad_diag(Jz)
        elif sparse.issparse(Jz):
            if Jz.nnz:
                prod = Jz @ hinv
                prod = (prod.multiply(Jz) if sparse.issparse(prod)
                        else np.multiply(prod, Jz.toarray()))
                out += np.asarray(prod.sum(axis=1)).ravel()
        elif Jz.size:
            out += np.einsum("ij,ij->i", np.asarray(Jz @ hinv), Jz)
        return out
