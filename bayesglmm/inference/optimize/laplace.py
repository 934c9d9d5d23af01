"""The Laplace objective F(theta) = f(theta, z^) + 1/2 log det H_zz - (q/2) log 2 pi, with its
inner Newton solve over the random effects and envelope-theorem gradients; finite differences."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .objective import Objective
from .sparsity import Factor, small_blocks

__all__ = ['LaplaceObjective', 'fd_grad', 'fd_hess']


class LaplaceObjective:
    """Negative log posterior of the outer parameters theta with the random-effect blocks z
    integrated out by the Laplace approximation:

        F(theta) = f(theta, z^) + 1/2 log det H_zz(theta, z^) - (q/2) log(2 pi),

    f = -log p(y, theta, z) (no Jacobian), z^ = argmin_z f(theta, z) (Newton, warm-started),
    H_zz = the Hessian of f in z at z^. ``pattern``: the sparsity of H_zz and the integrated
    coordinates that are not random effects (see :func:`re_pattern`); None probes it with one
    dense Hessian (no spec; or fixed effects integrated out and q <= ``DENSE_PROBE_MAX``).
    """

    DENSE_PROBE_MAX = 2000

    def __init__(self, objective: Objective, z_idx: np.ndarray, n: int, u_probe: np.ndarray,
                 pattern: Any = None, quadratic: bool = False):
        self.base = objective
        self.n = n
        self.quadratic = quadratic  # f quadratic in z: H_zz does not depend on z
        self.z = np.asarray(z_idx, dtype=int)
        mask = np.ones(n, dtype=bool)
        mask[self.z] = False
        self.t = np.flatnonzero(mask)
        self.zhat = np.zeros(self.z.size)
        # step of the gradient differences that give H_zz (fixed: the truncation error is then
        # smooth in theta and F stays differentiable). f quadratic in z: the differences are
        # exact whatever the step and only rounding is left, eps |g| / h, where |g| is the size
        # of the terms the gradient sums: a unit step. Centred coordinates (each group's own
        # coefficients, ~250 on sleepstudy) make those terms large, and with 1e-4 the noise in
        # log det H_zz (~1e-8, so ~1e-3 in the outer gradient) stopped L-BFGS short of the mode
        self.hzz_step = 1.0 if quadratic else 1e-4
        self._colour(u_probe, pattern)

    def _colour(self, u_probe: np.ndarray, pattern: Any = None) -> None:
        """Sparsity of H_zz (``pattern``, or from one full Hessian at a generic point) and a
        greedy colouring of its columns that exploits symmetry: with the columns ordered by
        decreasing number of non-zeros, column j only has to deliver the entries (i, j) with i at
        or after j in that order (the others come from column i). Columns of one colour never
        put a non-zero on a row another one needs, so H_zz costs one gradient difference per
        colour: 1 for a single random-intercept term, q for (x | g), 1 + G_2 for crossed terms."""
        from scipy.sparse import csc_matrix

        q = self.z.size
        rng = np.random.default_rng(12345)
        u = np.asarray(u_probe, dtype=float) + rng.uniform(-0.3, 0.3, size=self.n)
        if pattern is not None and pattern[1].size and q <= self.DENSE_PROBE_MAX:
            # fixed effects integrated out too (REML / marginal="auto") and q small: the dense
            # probe, whose pattern (it keeps a few entries that the gradient differences find
            # exactly 0) the published REML outputs were computed with
            pattern = None
        if pattern is None:
            H = self.base.hessian(u)[np.ix_(self.z, self.z)]
            dense = np.abs(H) > 1e-12 * max(1.0, float(np.abs(H).max()))
            np.fill_diagonal(dense, True)
            pattern = csc_matrix(dense)
        else:
            pattern, other = pattern
            if other.size:
                # columns of the other integrated coordinates (fixed effects): central
                # gradient differences at the probe point (no dense Hessian; a gradient entry
                # that does not depend on the coordinate comes out bitwise unchanged, so its
                # difference is exactly 0)
                hv = np.empty((q, other.size))
                for a, o in enumerate(other):
                    e = np.zeros(self.n)
                    e[self.z[o]] = 1e-4
                    hv[:, a] = ((self.base.value_grad(u + e)[1] - self.base.value_grad(u - e)[1])
                                / 2e-4)[self.z]
                nzr, nzc = np.nonzero(np.abs(hv) > 1e-12 * max(1.0, float(np.abs(hv).max())))
                P = pattern.tocoo()
                rr = np.concatenate([P.row, nzr, other[nzc], other])
                cc = np.concatenate([P.col, other[nzc], nzr, other])
                pattern = csc_matrix((np.ones(rr.size, dtype=bool), (rr, cc)), shape=(q, q))
        pattern = csc_matrix(pattern, dtype=bool)
        pattern.sum_duplicates()
        pattern.sort_indices()
        ip, ind = pattern.indptr, pattern.indices
        colrows = [ind[ip[j]:ip[j + 1]] for j in range(q)]
        order = np.argsort(-np.diff(ip), kind="stable")
        pos = np.empty(q, dtype=int)
        pos[order] = np.arange(q)
        need = [r[pos[r] >= pos[j]] for j, r in enumerate(colrows)]
        colour = -np.ones(q, dtype=int)
        touched: list[np.ndarray] = []  # rows where some column of the colour is non-zero
        needed: list[np.ndarray] = []  # rows some column of the colour must deliver
        for j in order:
            col = colrows[j]
            for c in range(len(touched)):
                if not touched[c][need[j]].any() and not needed[c][col].any():
                    colour[j] = c
                    touched[c][col] = True
                    needed[c][need[j]] = True
                    break
            else:
                colour[j] = len(touched)
                t = np.zeros(q, dtype=bool)
                t[col] = True
                touched.append(t)
                nd = np.zeros(q, dtype=bool)
                nd[need[j]] = True
                needed.append(nd)
        self.pattern = pattern
        self.blocks = small_blocks(pattern)
        self.need = need
        self.colour = colour
        self.n_colours = len(touched)
        # the symmetric pattern as (rows, cols) and, per colour, which of those entries it
        # delivers (both (i, j) and (j, i) from the same column difference)
        rows = ind.astype(np.int64)
        cols = np.repeat(np.arange(q, dtype=np.int64), np.diff(ip))
        self._rows, self._cols = rows, cols
        key = cols * q + rows  # sorted: CSC order (by column, then row)
        self._entries = []
        for c in range(self.n_colours):
            cc = np.flatnonzero(colour == c)
            rr = [need[j] for j in cc]
            ii = np.concatenate(rr) if rr else np.zeros(0, dtype=np.int64)
            jj = np.repeat(cc, [r.size for r in rr]) if rr else np.zeros(0, dtype=np.int64)
            p1 = np.searchsorted(key, jj * q + ii)  # entry (ii, jj)
            p2 = np.searchsorted(key, ii * q + jj)  # entry (jj, ii)
            self._entries.append((cc, ii, p1, p2))
        self._key = key
        self._diag = np.searchsorted(key, np.arange(q, dtype=np.int64) * (q + 1))
        self._bpos = None
        if self.blocks is not None:
            self._bpos = []
            for idx in self.blocks:  # entries of a block outside the pattern: the 0 at the end
                kk = idx[:, None, :] * q + idx[:, :, None]
                pp = np.minimum(np.searchsorted(key, kk), key.size - 1)
                pp[key[pp] != kk] = key.size
                self._bpos.append(pp)
        self._vals = np.zeros(rows.size + 1)  # the last entry stays 0

    def hzz(self, u: np.ndarray) -> np.ndarray:
        """The values of H_zz on the pattern (``self._rows``, ``self._cols``) at u, from one
        central gradient difference per colour (the returned array is a buffer overwritten by
        the next call)."""
        q = self.z.size
        out = self._vals
        if self.n_colours > max(8, q // 4):  # nearly dense: a full Hessian is cheaper
            H = self.base.hessian(u)[np.ix_(self.z, self.z)]
            out[:-1] = H[self._rows, self._cols]
            return out
        h = self.hzz_step
        for cols, ii, p1, p2 in self._entries:
            v = np.zeros(self.n)
            v[self.z[cols]] = h
            _, g_up = self.base.value_grad(u + v)
            _, g_dn = self.base.value_grad(u - v)
            with np.errstate(invalid="ignore", over="ignore"):  # outside the support: the
                hv = ((g_up - g_dn) / (2 * h))[self.z]  # factorisation fails, F = inf
            out[p1] = hv[ii]
            out[p2] = hv[ii]
        return out

    def factor(self, vals: np.ndarray) -> Factor:
        return Factor(vals[:-1] if self.blocks is None else vals, self._rows, self._cols,
                       self.z.size, self.blocks, self._bpos)

    def full(self, theta: np.ndarray, z: np.ndarray) -> np.ndarray:
        u = np.empty(self.n)
        u[self.t] = theta
        u[self.z] = z
        return u

    def inner(self, theta: np.ndarray, z0: np.ndarray | None = None, tol: float = 1e-10,
              maxit: int = 100):
        """(z^, f(theta, z^), factorisation of H_zz at z^ (see ``Factor``)).

        Newton's method from ``z0`` (default: the last z^). With ``quadratic`` H_zz does not
        depend on z: it is computed and factorised once and every Newton step reuses it (one
        step is exact up to rounding), else once per step."""
        z = (self.zhat if z0 is None else z0).copy()
        f, g = self.base.value_grad(self.full(theta, z))
        fac = None
        for _ in range(maxit):
            if fac is None or not self.quadratic:
                Hzz = self.hzz(self.full(theta, z))
                try:
                    fac = self.factor(Hzz)
                except np.linalg.LinAlgError:
                    fac = None
            gz = g[self.z]
            if fac is not None and np.max(np.abs(gz)) < tol:
                self._grad = g
                return z, f, fac
            if fac is not None:
                step = fac.solve(gz)
            else:  # not convex here: a damped gradient step
                step = gz / max(1.0, float(np.max(np.abs(Hzz[self._diag]))))
            t = 1.0
            while t > 1e-10:
                f_new, g_new = self.base.value_grad(self.full(theta, z - t * step))
                if np.isfinite(f_new) and f_new <= f + 1e-14 * abs(f):
                    break
                t *= 0.5
            else:
                break
            z, f, g = z - t * step, f_new, g_new
        if fac is None or not self.quadratic:
            try:
                fac = self.factor(self.hzz(self.full(theta, z)))
            except np.linalg.LinAlgError:
                raise FloatingPointError(
                    "the random-effect Hessian is not positive definite") from None
        self._grad = g
        return z, f, fac

    def value(self, theta: np.ndarray) -> float:
        try:
            z, f, fac = self.inner(theta)
        except (FloatingPointError, RuntimeError):
            return np.inf
        if not np.isfinite(f):
            return np.inf
        self.zhat = z
        self._at = (np.array(theta, dtype=float), fac, z.copy(), self._grad)
        return f + fac.half_logdet() - 0.5 * self.z.size * math.log(2 * math.pi)

    def grad(self, theta: np.ndarray, h: float = 1e-5) -> np.ndarray | None:
        """dF/dtheta by the envelope theorem, without inner re-solves:

            dF/dtheta_k = df/dtheta_k (theta, z^)  +  1/2 d log det H_zz(theta, z^(theta)) / dtheta_k,

        the first term exact (the gradient at z^ of the last inner solve), the second by central
        differences of log det H_zz along (e_k, dz^/dtheta_k), dz^/dtheta = -H_zz^-1 H_ztheta
        (H_ztheta by gradient differences; not needed when H_zz does not depend on z,
        ``quadratic``). Costs 2 n_theta H_zz (+ 2 n_theta gradients) instead of 2 n_theta inner
        solves. None when a Hessian is not positive definite (the caller differences F)."""
        at = getattr(self, "_at", None)
        if at is None or not np.array_equal(at[0], theta):
            if not np.isfinite(self.value(theta)):
                return None
            at = self._at
        fac, z, g = at[1], at[2], at[3]
        steps = h * np.maximum(1.0, np.abs(theta))
        A = np.zeros((self.z.size, self.t.size))
        u = self.full(theta, z)
        if not self.quadratic:
            Hzt = np.empty_like(A)
            for k, i in enumerate(self.t):
                e = np.zeros(self.n)
                e[i] = steps[k]
                Hzt[:, k] = ((self.base.value_grad(u + e)[1] - self.base.value_grad(u - e)[1])
                             / (2 * steps[k]))[self.z]
            A = -fac.solve_many(Hzt)
        out = np.asarray(g, dtype=float)[self.t].copy()
        for k in range(self.t.size):
            d = np.zeros(self.n)
            d[self.t[k]] = steps[k]
            d[self.z] = steps[k] * A[:, k]
            try:
                up = self.factor(self.hzz(u + d)).half_logdet()
                dn = self.factor(self.hzz(u - d)).half_logdet()
            except (np.linalg.LinAlgError, RuntimeError):
                return None
            out[k] += (up - dn) / (2 * steps[k])
        return out if np.all(np.isfinite(out)) else None


def fd_grad(F: Callable[[np.ndarray], float], x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    g = np.empty(x.size)
    for i in range(x.size):
        e = np.zeros(x.size)
        e[i] = h * max(1.0, abs(x[i]))
        g[i] = (F(x + e) - F(x - e)) / (2 * e[i])
    return g


def fd_hess(F: Callable[[np.ndarray], float], x: np.ndarray, h: float = 1e-3) -> np.ndarray:
    """Central second differences, step ``h`` relative. F carries rounding noise (the inner
    solve, H_zz by gradient differences: ~1e-11 for F ~ 100) that the division by the squared
    step amplifies: 1e-3 balances it against the truncation error, O(h^2) (the entries come out
    ~1e-6 relative instead of ~1e-4 with 1e-4; cbpp SEs vs glmmTMB 4e-7 instead of 3e-5)."""
    n = x.size
    H = np.empty((n, n))
    f0 = F(x)
    steps = h * np.maximum(1.0, np.abs(x))
    for i in range(n):
        ei = np.zeros(n)
        ei[i] = steps[i]
        H[i, i] = (F(x + ei) - 2 * f0 + F(x - ei)) / steps[i] ** 2
        for j in range(i):
            ej = np.zeros(n)
            ej[j] = steps[j]
            H[i, j] = H[j, i] = (
                F(x + ei + ej) - F(x + ei - ej) - F(x - ei + ej) + F(x - ei - ej)
            ) / (4 * steps[i] * steps[j])
    return H
