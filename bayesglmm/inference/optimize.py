"""Posterior modes through BridgeStan (in-process log density, gradient and Hessian).

``find_joint_mode`` maximises log p(y, theta) over *all* parameters in the natural (constrained)
parameterisation, i.e. without Jacobian terms (features §8.1), working on Stan's unconstrained
scale u: L-BFGS first, then Newton steps with the Hessian until the gradient vanishes.
``wald_table`` turns the mode and the inverse Hessian on the u scale into estimates, delta-method
SEs and Wald intervals for any list of constrained quantities (parameters, transformed
parameters, generated quantities).

The objective is a small object (``Objective``) so that the Laplace-over-random-effects optimiser
(later issue) can supply its own (outer parameters only, random-effect blocks integrated out) and
reuse ``find_joint_mode``'s driver and ``wald_table``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import linalg as sla
from scipy import optimize as sopt

__all__ = ["Z95", "JointMode", "Objective", "find_joint_mode", "initial_point", "wald_table"]

Z95 = 1.959963984540054


@dataclass
class Objective:
    """Negative log posterior f(u) on the unconstrained scale (all constants, no Jacobian)."""

    bs_model: Any

    def value(self, u: np.ndarray) -> float:
        return -self.bs_model.log_density(u, propto=False, jacobian=False)

    def value_grad(self, u: np.ndarray) -> tuple[float, np.ndarray]:
        lp, g = self.bs_model.log_density_gradient(u, propto=False, jacobian=False)
        return -lp, -np.asarray(g)

    def hessian(self, u: np.ndarray) -> np.ndarray:
        _, _, h = self.bs_model.log_density_hessian(u, propto=False, jacobian=False)
        h = -np.asarray(h)
        return 0.5 * (h + h.T)

    def log_jacobian(self, u: np.ndarray) -> float:
        """Sum of log-Jacobians of the unconstraining transforms at u."""
        return self.bs_model.log_density(u, propto=False, jacobian=True) - self.bs_model.log_density(
            u, propto=False, jacobian=False
        )


@dataclass
class JointMode:
    theta_unc: np.ndarray
    objective: float
    converged: bool
    message: str
    iterations: int
    hessian: np.ndarray  # of the objective (negative log posterior) w.r.t. u
    cov_unc: np.ndarray | None  # inverse Hessian, None if not positive definite
    log_jacobian: float
    log_ml: float  # Laplace approximation of log p(y); NaN if the Hessian is not PD
    grad_norm: float = math.nan
    extra: dict = field(default_factory=dict)


def initial_point(bs_model: Any, init: Any = None, seed: int | None = None) -> np.ndarray:
    """Unconstrained starting point.

    ``init=None``: u = 0 (sigma = 1, sd = 1, b = 0, ...); a number r: uniform(-r, r) on the
    unconstrained scale (Stan's convention, seeded); a dict of Stan-named values (constrained
    scale, possibly partial: unnamed parameters start at u = 0); an array: the unconstrained
    vector itself.
    """
    n = bs_model.param_unc_num()
    if init is None:
        return np.zeros(n)
    if isinstance(init, (int, float)) and not isinstance(init, bool):
        if init < 0:
            raise ValueError(f"init must be a non-negative radius, not {init}")
        rng = np.random.default_rng(seed)
        return rng.uniform(-init, init, size=n)
    if isinstance(init, Mapping):
        rng = bs_model.new_rng(seed if seed is not None else 1)
        try:
            return bs_model.param_initialize(rng, dict(init), init_radius=0.0, jacobian=False)
        except RuntimeError as e:
            raise ValueError(f"invalid init values: {e}") from None
    arr = np.asarray(init, dtype=float)
    if arr.shape != (n,):
        raise ValueError(f"an array init must be the unconstrained vector of length {n}")
    return arr


def find_joint_mode(
    objective: Objective,
    u0: np.ndarray,
    *,
    gtol: float = 1e-8,
    maxiter: int = 20000,
    newton_steps: int = 50,
) -> JointMode:
    """Minimise ``objective`` from ``u0``: L-BFGS-B, then damped Newton polishing."""
    u = np.asarray(u0, dtype=float).copy()
    n = u.size

    def fg(x):
        try:
            f, g = objective.value_grad(x)
        except RuntimeError:
            return np.inf, np.zeros(n)
        if not np.isfinite(f):
            return np.inf, np.zeros(n)
        return f, g

    f0, _ = fg(u)
    if not np.isfinite(f0):
        raise ValueError(
            "the log density is not finite at the initial values; give other init= values"
        )
    iters = 0
    message = ""
    if n > 0:
        res = sopt.minimize(
            fg, u, jac=True, method="L-BFGS-B",
            options={"maxiter": maxiter, "maxfun": 2 * maxiter, "gtol": gtol, "ftol": 1e-15,
                     "maxcor": 20},
        )
        u = res.x
        iters = int(res.nit)
        message = str(res.message)

    # Newton polishing: quadratic convergence to the mode, gradient from autodiff.
    f, g = fg(u)
    H = None
    for _ in range(newton_steps if n else 0):
        if np.max(np.abs(g)) < gtol:
            break
        try:
            H = objective.hessian(u)
            L = np.linalg.cholesky(H)
        except (np.linalg.LinAlgError, RuntimeError):
            break
        step = sla.cho_solve((L, True), g, check_finite=False)
        t = 1.0
        while t > 1e-6:
            f_new, g_new = fg(u - t * step)
            if np.isfinite(f_new) and f_new <= f + 1e-12 * abs(f):
                break
            t *= 0.5
        else:
            break
        u, f, g = u - t * step, f_new, g_new
        iters += 1
    gnorm = float(np.max(np.abs(g))) if n else 0.0
    H = objective.hessian(u) if n else np.zeros((0, 0))
    converged = bool(np.isfinite(f) and gnorm < 1e-3)  # max |d log p / du|
    log_ml = math.nan
    logjac = objective.log_jacobian(u)
    cov, logdet_cov, bad = hessian_inverse(H)
    if logdet_cov is not None:
        log_ml = -f + logjac + 0.5 * n * math.log(2 * math.pi) + 0.5 * logdet_cov
    if not converged:
        message = f"gradient norm {gnorm:.2g} after {iters} iterations; {message}"
    return JointMode(u, float(f), converged, message, iters, H, cov, float(logjac), float(log_ml),
                     gnorm, extra={"degenerate": bad})


def hessian_inverse(H: np.ndarray, rtol: float = 1e-9) -> tuple[np.ndarray, float | None, np.ndarray]:
    """(covariance, log det of it or None, mask of degenerate coordinates) from a Hessian.

    Well-conditioned and positive definite: the inverse. Otherwise (a parameter on a boundary,
    e.g. a random-effect SD going to 0, makes the objective flat in its direction; curvature
    below ``rtol`` times the largest one counts as flat): the pseudo-inverse on the
    eigen-directions with positive curvature; coordinates that load on the dropped directions
    are flagged so that their standard errors are reported as unavailable.
    """
    n = H.shape[0]
    H = 0.5 * (H + H.T)
    if n > 500:  # large joint problems: Cholesky only (an eigen-decomposition is too costly)
        try:
            L = np.linalg.cholesky(H)
            Linv = sla.solve_triangular(L, np.eye(n), lower=True, check_finite=False)
            return Linv.T @ Linv, -2.0 * float(np.sum(np.log(np.diag(L)))), np.zeros(n, dtype=bool)
        except np.linalg.LinAlgError:
            pass
    w, V = np.linalg.eigh(H)
    top = float(w.max()) if n else 0.0
    keep = w > rtol * top if top > 0 else np.zeros(n, dtype=bool)
    cov = (V[:, keep] / w[keep]) @ V[:, keep].T
    if keep.all():
        return cov, -float(np.sum(np.log(w))), np.zeros(n, dtype=bool)
    bad = np.sum(V[:, ~keep] ** 2, axis=1) > 1e-2
    return cov, None, bad


def _constrain_fn(bs_model: Any, seed: int) -> Callable[[np.ndarray], np.ndarray]:
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


def wald_table(
    bs_model: Any,
    u: np.ndarray,
    cov: np.ndarray | None,
    index: Sequence[int],
    kinds: Sequence[str],
    *,
    seed: int = 1,
    z: float = Z95,
    degenerate: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Estimates, SEs, lower and upper 95% limits of the constrained quantities ``index``
    (positions in ``param_constrain(include_tp=True, include_gq=True)``).

    SE: delta method, J cov J' with J from central differences of the constraining map.
    Intervals (features §8.1): a quantity that is a function of one unconstrained coordinate
    (sigma, sd, b, Intercept_c, ...) gets the back-transform of u_i ± z se(u_i), so scale
    parameters have log-symmetric intervals; correlations get Fisher-z intervals; other
    transformed quantities (e.g. Intercept) est ± z SE. Quantities that depend on a
    ``degenerate`` coordinate (see :func:`hessian_inverse`) get NaN.
    """
    constrain = _constrain_fn(bs_model, seed)
    index = np.asarray(index, dtype=int)
    if cov is None or u.size == 0:
        est = constrain(u)[index].astype(float)
        nan = np.full(index.size, np.nan)
        return est, nan, nan.copy(), nan.copy()
    est, J = constrained_jacobian(constrain, u, index)
    se = np.sqrt(np.maximum(np.sum((J @ cov) * J, axis=1), 0.0))
    lower = est - z * se
    upper = est + z * se
    absJ = np.abs(J)
    for r in range(index.size):
        nz = np.flatnonzero(absJ[r] > 1e-9 * max(1.0, absJ[r].max()))
        if degenerate is not None and np.any(degenerate[nz]):
            se[r] = lower[r] = upper[r] = np.nan
        elif kinds[r] == "corr" and abs(est[r]) < 1 and se[r] > 0:
            zr = math.atanh(est[r])
            sz = se[r] / (1 - est[r] ** 2)
            lower[r], upper[r] = math.tanh(zr - z * sz), math.tanh(zr + z * sz)
        elif nz.size == 1:
            i = nz[0]
            su = math.sqrt(max(cov[i, i], 0.0))
            a = u.copy()
            b = u.copy()
            a[i] -= z * su
            b[i] += z * su
            va, vb = constrain(a)[index[r]], constrain(b)[index[r]]
            lower[r], upper[r] = min(va, vb), max(va, vb)
    return est, se, lower, upper


# --------------------------------------------------------------------------- Laplace


def block_indices(bs_model: Any, re_blocks: Sequence[str]) -> np.ndarray:
    """Positions of the random-effect blocks (e.g. ``z_1``) in the unconstrained vector."""
    heads = set(re_blocks)
    names = bs_model.param_unc_names()
    return np.array([i for i, n in enumerate(names) if n.split(".", 1)[0] in heads], dtype=int)


class _Factor:
    """Cholesky factorisation of H_zz, block-wise when H_zz is block diagonal (one grouping
    term: a q x q block per group), dense otherwise. Raises LinAlgError if not PD."""

    def __init__(self, H: np.ndarray, blocks: list[np.ndarray] | None):
        self.q = H.shape[0]
        self.blocks = blocks
        if blocks is None:
            self.L = np.linalg.cholesky(H)
        else:
            self.B = [H[idx[:, :, None], idx[:, None, :]] for idx in blocks]
            self.L = [np.linalg.cholesky(B) for B in self.B]

    def solve(self, g: np.ndarray) -> np.ndarray:
        if self.blocks is None:
            return sla.cho_solve((self.L, True), g, check_finite=False)
        out = np.empty(self.q)
        for idx, B in zip(self.blocks, self.B):
            out[idx] = np.linalg.solve(B, g[idx][:, :, None])[:, :, 0]
        return out

    def half_logdet(self) -> float:
        if self.blocks is None:
            return float(np.sum(np.log(np.diag(self.L))))
        return float(sum(np.sum(np.log(np.diagonal(L, axis1=1, axis2=2))) for L in self.L))

    def inverse(self) -> np.ndarray:
        if self.blocks is None:
            return sla.cho_solve((self.L, True), np.eye(self.q), check_finite=False)
        out = np.zeros((self.q, self.q))
        for idx, B in zip(self.blocks, self.B):
            out[idx[:, :, None], idx[:, None, :]] = np.linalg.inv(B)
        return out


def _small_blocks(pattern: np.ndarray, max_size: int = 16) -> list[np.ndarray] | None:
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


class LaplaceObjective:
    """Negative log posterior of the outer parameters theta with the random-effect blocks z
    integrated out by the Laplace approximation (features §8.1):

        F(theta) = f(theta, z^) + 1/2 log det H_zz(theta, z^) - (q/2) log(2 pi),

    f = -log p(y, theta, z) (no Jacobian), z^ = argmin_z f(theta, z) (Newton, warm-started),
    H_zz = the Hessian of f in z at z^.
    """

    def __init__(self, objective: Objective, z_idx: np.ndarray, n: int, u_probe: np.ndarray):
        self.base = objective
        self.n = n
        self.z = np.asarray(z_idx, dtype=int)
        mask = np.ones(n, dtype=bool)
        mask[self.z] = False
        self.t = np.flatnonzero(mask)
        self.zhat = np.zeros(self.z.size)
        self._colour(u_probe)

    def _colour(self, u_probe: np.ndarray) -> None:
        """Sparsity of H_zz (from one full Hessian at a generic point) and a greedy colouring of
        its columns that exploits symmetry: with the columns ordered by decreasing number of
        non-zeros, column j only has to deliver the entries (i, j) with i at or after j in that
        order (the others come from column i). Columns of one colour never put a non-zero on a
        row another one needs, so H_zz costs one gradient difference per colour: 1 for a
        single random-intercept term, q for (x | g), 1 + G_2 for crossed terms."""
        rng = np.random.default_rng(12345)
        u = np.asarray(u_probe, dtype=float) + rng.uniform(-0.3, 0.3, size=self.n)
        H = self.base.hessian(u)[np.ix_(self.z, self.z)]
        pattern = np.abs(H) > 1e-12 * max(1.0, float(np.abs(H).max()))
        np.fill_diagonal(pattern, True)
        q = self.z.size
        order = np.argsort(-pattern.sum(axis=0), kind="stable")
        pos = np.empty(q, dtype=int)
        pos[order] = np.arange(q)
        need = [np.flatnonzero(pattern[:, j] & (pos >= pos[j])) for j in range(q)]
        colour = -np.ones(q, dtype=int)
        touched: list[np.ndarray] = []  # rows where some column of the colour is non-zero
        needed: list[np.ndarray] = []  # rows some column of the colour must deliver
        for j in order:
            col = pattern[:, j]
            for c in range(len(touched)):
                if not touched[c][need[j]].any() and not (needed[c] & col).any():
                    colour[j] = c
                    touched[c] |= col
                    needed[c][need[j]] = True
                    break
            else:
                colour[j] = len(touched)
                touched.append(col.copy())
                nd = np.zeros(q, dtype=bool)
                nd[need[j]] = True
                needed.append(nd)
        self.pattern = pattern
        self.blocks = _small_blocks(pattern)
        self.need = need
        self.colour = colour
        self.n_colours = len(touched)
        # per colour: the (row, column) entries it delivers
        self._entries = []
        for c in range(self.n_colours):
            cols = np.flatnonzero(colour == c)
            rows = [need[j] for j in cols]
            ii = np.concatenate(rows) if rows else np.zeros(0, dtype=int)
            jj = np.repeat(cols, [r.size for r in rows]) if rows else np.zeros(0, dtype=int)
            self._entries.append((cols, ii, jj))
        self._buf = np.zeros((q, q))

    def hzz(self, u: np.ndarray) -> np.ndarray:
        """H_zz at u from one central gradient difference per colour (the returned array is a
        buffer overwritten by the next call)."""
        q = self.z.size
        if self.n_colours > max(8, q // 4):  # nearly dense: a full Hessian is cheaper
            return self.base.hessian(u)[np.ix_(self.z, self.z)]
        out = self._buf  # reused: the entries outside the pattern stay 0
        h = 1e-4  # fixed step: the truncation error is smooth in theta (F stays differentiable)
        for cols, ii, jj in self._entries:
            v = np.zeros(self.n)
            v[self.z[cols]] = h
            _, g_up = self.base.value_grad(u + v)
            _, g_dn = self.base.value_grad(u - v)
            hv = ((g_up - g_dn) / (2 * h))[self.z]
            out[ii, jj] = hv[ii]
            out[jj, ii] = hv[ii]
        return out

    def full(self, theta: np.ndarray, z: np.ndarray) -> np.ndarray:
        u = np.empty(self.n)
        u[self.t] = theta
        u[self.z] = z
        return u

    def inner(self, theta: np.ndarray, z0: np.ndarray | None = None, tol: float = 1e-10,
              maxit: int = 100):
        """(z^, f(theta, z^), factorisation of H_zz at z^ (see ``_Factor``))."""
        z = (self.zhat if z0 is None else z0).copy()
        f, g = self.base.value_grad(self.full(theta, z))
        for _ in range(maxit):
            Hzz = self.hzz(self.full(theta, z))
            try:
                fac = _Factor(Hzz, self.blocks)
            except np.linalg.LinAlgError:
                fac = None
            gz = g[self.z]
            if fac is not None and np.max(np.abs(gz)) < tol:
                return z, f, fac
            if fac is not None:
                step = fac.solve(gz)
            else:  # not convex here: a damped gradient step
                step = gz / max(1.0, float(np.max(np.abs(np.diag(Hzz)))))
            t = 1.0
            while t > 1e-10:
                f_new, g_new = self.base.value_grad(self.full(theta, z - t * step))
                if np.isfinite(f_new) and f_new <= f + 1e-14 * abs(f):
                    break
                t *= 0.5
            else:
                break
            z, f, g = z - t * step, f_new, g_new
        try:
            fac = _Factor(self.hzz(self.full(theta, z)), self.blocks)
        except np.linalg.LinAlgError:
            raise FloatingPointError("the random-effect Hessian is not positive definite") from None
        return z, f, fac

    def value(self, theta: np.ndarray) -> float:
        try:
            z, f, fac = self.inner(theta)
        except (FloatingPointError, RuntimeError):
            return np.inf
        if not np.isfinite(f):
            return np.inf
        self.zhat = z
        return f + fac.half_logdet() - 0.5 * self.z.size * math.log(2 * math.pi)


def _fd_grad(F: Callable[[np.ndarray], float], x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    g = np.empty(x.size)
    for i in range(x.size):
        e = np.zeros(x.size)
        e[i] = h * max(1.0, abs(x[i]))
        g[i] = (F(x + e) - F(x - e)) / (2 * e[i])
    return g


def _fd_hess(F: Callable[[np.ndarray], float], x: np.ndarray, h: float = 1e-4) -> np.ndarray:
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


def find_laplace_mode(objective: Objective, z_idx: np.ndarray, u0: np.ndarray, *,
                      gtol: float = 1e-6, maxiter: int = 500) -> JointMode:
    """Maximise the Laplace-approximate marginal posterior of the outer parameters.

    Returns a :class:`JointMode` whose ``theta_unc`` is the full unconstrained vector
    (theta^, z^(theta^)) and whose ``cov_unc`` is the full covariance used for the delta method
    (TMB's construction): Cov(theta) = inverse Hessian of F; z = z^(theta) + e with
    Cov(e) = H_zz^-1 and dz^/dtheta = -H_zz^-1 H_ztheta.
    """
    n = u0.size
    lap = LaplaceObjective(objective, z_idx, n, np.asarray(u0, dtype=float))
    lap.zhat = np.asarray(u0)[lap.z].copy()
    theta = np.asarray(u0)[lap.t].copy()
    if not np.isfinite(lap.value(theta)):
        raise ValueError("the log density is not finite at the initial values; give other init=")

    def fg(x):
        f = lap.value(x)
        if not np.isfinite(f):
            return np.inf, np.zeros(x.size)
        return f, _fd_grad(lap.value, x)

    res = sopt.minimize(fg, theta, jac=True, method="L-BFGS-B",
                        options={"maxiter": maxiter, "gtol": 1e-4, "ftol": 1e-12})
    theta = res.x
    iters = int(res.nit)
    # Newton polishing on F with a finite-difference Hessian
    F = lap.value(theta)
    for _ in range(20):
        g = _fd_grad(lap.value, theta)
        if np.max(np.abs(g)) < gtol:
            break
        Ht = _fd_hess(lap.value, theta)
        try:
            step = np.linalg.solve(Ht, g)
            np.linalg.cholesky(Ht)
        except np.linalg.LinAlgError:
            break
        t = 1.0
        while t > 1e-6:
            F_new = lap.value(theta - t * step)
            if np.isfinite(F_new) and F_new <= F + 1e-12 * abs(F):
                break
            t *= 0.5
        else:
            break
        theta, F = theta - t * step, F_new
        iters += 1
    g = _fd_grad(lap.value, theta)
    gnorm = float(np.max(np.abs(g))) if g.size else 0.0
    F = lap.value(theta)
    Ht = _fd_hess(lap.value, theta)
    Ht = 0.5 * (Ht + Ht.T)
    z, _f, fac = lap.inner(theta)
    u = lap.full(theta, z)
    # cross derivatives d2f / dz dtheta by central gradient differences along theta
    Hzt = np.empty((lap.z.size, lap.t.size))
    for k, i in enumerate(lap.t):
        e = np.zeros(n)
        e[i] = 1e-5 * max(1.0, abs(u[i]))
        Hzt[:, k] = ((objective.value_grad(u + e)[1] - objective.value_grad(u - e)[1])
                     / (2 * e[i]))[lap.z]
    logjac = objective.log_jacobian(u)  # only theta is constrained-transformed in the outer problem
    log_ml = math.nan
    cov_t, logdet_t, bad_t = hessian_inverse(Ht)
    if logdet_t is not None:
        # log|J| of the outer parameters: the z are unconstrained, their Jacobian terms are 0
        log_ml = -F + logjac + 0.5 * lap.t.size * math.log(2 * math.pi) + 0.5 * logdet_t
    Hzz_inv = fac.inverse()
    A = -Hzz_inv @ Hzt  # dz^/dtheta
    cov = np.empty((n, n))
    cov[np.ix_(lap.t, lap.t)] = cov_t
    cov[np.ix_(lap.z, lap.t)] = A @ cov_t
    cov[np.ix_(lap.t, lap.z)] = (A @ cov_t).T
    cov[np.ix_(lap.z, lap.z)] = Hzz_inv + A @ cov_t @ A.T
    bad = np.zeros(n, dtype=bool)
    bad[lap.t[bad_t]] = True
    converged = bool(np.isfinite(F) and gnorm < 1e-3)
    msg = "" if converged else f"gradient norm {gnorm:.2g} after {iters} iterations; {res.message}"
    return JointMode(u, float(F), converged, msg, iters, Ht, cov, float(logjac), float(log_ml),
                     gnorm, extra={"theta_index": lap.t, "z_index": lap.z, "degenerate": bad})


def sampling_table(
    bs_model: Any,
    u: np.ndarray,
    cov: np.ndarray | None,
    index: Sequence[int],
    *,
    seed: int = 1,
    n_draws: int = 1000,
    degenerate: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``se_method="sampling"`` (features §8.1): ``n_draws`` multivariate normal draws of the
    unconstrained estimates (mean u, covariance ``cov``), constrained; SE = SD of the draws,
    CI = their 2.5 % and 97.5 % quantiles. Estimates stay the mode."""
    constrain = _constrain_fn(bs_model, seed)
    index = np.asarray(index, dtype=int)
    est = constrain(u)[index].astype(float)
    if cov is None or u.size == 0:
        nan = np.full(index.size, np.nan)
        return est, nan, nan.copy(), nan.copy()
    rng = np.random.default_rng(seed)
    w, V = np.linalg.eigh(0.5 * (cov + cov.T))
    root = V * np.sqrt(np.maximum(w, 0.0))
    draws = np.empty((n_draws, index.size))
    for d in range(n_draws):
        draws[d] = constrain(u + root @ rng.standard_normal(u.size))[index]
    se = draws.std(axis=0, ddof=1)
    lower, upper = np.quantile(draws, [0.025, 0.975], axis=0)
    if degenerate is not None and degenerate.any():
        # quantities moved by a degenerate coordinate: not available
        J0 = np.zeros(index.size, dtype=bool)
        for i in np.flatnonzero(degenerate):
            e = np.zeros(u.size)
            e[i] = 1e-6 * max(1.0, abs(u[i]))
            J0 |= np.abs(constrain(u + e)[index] - est) > 1e-12
        se[J0] = lower[J0] = upper[J0] = np.nan
    return est, se, lower, upper
