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
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import linalg as sla
from scipy import optimize as sopt

__all__ = ["Z95", "JointMode", "LaplaceCov", "Objective", "find_joint_mode", "initial_point",
           "wald_table"]

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
    cov_unc: Any  # inverse Hessian (ndarray; LaplaceCov for Laplace fits), None if not PD
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


def _re_colours(bs_model: Any, index: np.ndarray) -> dict[int, tuple[np.ndarray, list]]:
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


def _sparse_jacobian(constrain: Callable[[np.ndarray], np.ndarray], u: np.ndarray,
                     index: Sequence[int], colours: dict | None = None):
    """As :func:`constrained_jacobian` (the same central differences), the Jacobian kept as a
    scipy CSR matrix of its non-zero entries; the coordinates of one entry of ``colours`` (see
    :func:`_re_colours`) are differenced together (checked: the rows outside the attributed
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
    colours = _re_colours(bs_model, index)
    est, J = _sparse_jacobian(constrain, u, index, colours)
    # rows that depend on one random-effect coordinate of a colour only (see _re_colours): their
    # back-transformed limits are computed for the whole colour with two constrain calls
    colour_of: dict[tuple[int, int], int] = {}
    for key, (coords, rowlists) in colours.items():
        for i, rr in zip(coords, rowlists):
            for r in rr:
                colour_of[(int(r), int(i))] = key
    batches: dict[int, list[tuple[int, int, float]]] = {}
    # J cov J' row by row in chunks (J is sparse: each random effect depends on a few
    # coordinates; no dense (quantities x coordinates) products)
    if isinstance(cov, LaplaceCov):
        var = cov.quad_diag(J)  # factored: linear in the number of random effects
    else:
        var = np.empty(index.size)
        step = max(1, int(4e6 // max(1, u.size)))
        for a in range(0, index.size, step):
            Jc = J[a:a + step]
            var[a:a + step] = np.asarray((Jc @ cov) * Jc.toarray()).sum(axis=1)
    cdiag = cov_diagonal(cov)
    se = np.sqrt(np.maximum(var, 0.0))
    lower = est - z * se
    upper = est + z * se
    absJ = abs(J).tocsr()
    for r in range(index.size):
        cols_r = absJ.indices[absJ.indptr[r]:absJ.indptr[r + 1]]
        vals_r = absJ.data[absJ.indptr[r]:absJ.indptr[r + 1]]
        vmax = float(vals_r.max()) if vals_r.size else 0.0
        nz = np.sort(cols_r[vals_r > 1e-9 * max(1.0, vmax)])
        if degenerate is not None and np.any(degenerate[nz]):
            se[r] = lower[r] = upper[r] = np.nan
        elif kinds[r] == "corr" and abs(est[r]) < 1 and se[r] > 0:
            zr = math.atanh(est[r])
            sz = se[r] / (1 - est[r] ** 2)
            lower[r], upper[r] = math.tanh(zr - z * sz), math.tanh(zr + z * sz)
        elif nz.size == 1 and (r, int(nz[0])) in colour_of:
            i = int(nz[0])
            batches.setdefault(colour_of[(r, i)], []).append((r, i, math.sqrt(max(cdiag[i], 0.0))))
        elif nz.size == 1:
            i = nz[0]
            su = math.sqrt(max(cdiag[i], 0.0))
            a = u.copy()
            b = u.copy()
            a[i] -= z * su
            b[i] += z * su
            try:
                va, vb = constrain(a)[index[r]], constrain(b)[index[r]]
            except RuntimeError:  # u +- z se outside what the program accepts (overflow)
                va = vb = math.nan
            lower[r], upper[r] = min(va, vb), max(va, vb)
    for batch in batches.values():
        a = u.copy()
        b = u.copy()
        for _r, i, su in batch:
            a[i] = u[i] - z * su
            b[i] = u[i] + z * su
        ca, cb = constrain(a), constrain(b)
        for r, _i, _su in batch:
            va, vb = ca[index[r]], cb[index[r]]
            lower[r], upper[r] = min(va, vb), max(va, vb)
    return est, se, lower, upper


# --------------------------------------------------------------------------- Laplace


def unc_name(stan: str) -> str:
    """Stan element name -> BridgeStan unconstrained name ('beta[1,2]' -> 'beta.1.2')."""
    return stan.replace("[", ".").replace(",", ".").replace("]", "")


def block_indices(bs_model: Any, re_blocks: Sequence[str]) -> np.ndarray:
    """Positions of the random-effect blocks (e.g. ``z_1``) in the unconstrained vector."""
    heads = set(re_blocks)
    names = bs_model.param_unc_names()
    return np.array([i for i, n in enumerate(names) if n.split(".", 1)[0] in heads], dtype=int)


class _Factor:
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
        self.blocks = _small_blocks(pattern)
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
        h = 1e-4  # fixed step: the truncation error is smooth in theta (F stays differentiable)
        for cols, ii, p1, p2 in self._entries:
            v = np.zeros(self.n)
            v[self.z[cols]] = h
            _, g_up = self.base.value_grad(u + v)
            _, g_dn = self.base.value_grad(u - v)
            hv = ((g_up - g_dn) / (2 * h))[self.z]
            out[p1] = hv[ii]
            out[p2] = hv[ii]
        return out

    def factor(self, vals: np.ndarray) -> _Factor:
        return _Factor(vals[:-1] if self.blocks is None else vals, self._rows, self._cols,
                       self.z.size, self.blocks, self._bpos)

    def full(self, theta: np.ndarray, z: np.ndarray) -> np.ndarray:
        u = np.empty(self.n)
        u[self.t] = theta
        u[self.z] = z
        return u

    def inner(self, theta: np.ndarray, z0: np.ndarray | None = None, tol: float = 1e-10,
              maxit: int = 100):
        """(z^, f(theta, z^), factorisation of H_zz at z^ (see ``_Factor``)).

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


def _fd_grad(F: Callable[[np.ndarray], float], x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    g = np.empty(x.size)
    for i in range(x.size):
        e = np.zeros(x.size)
        e[i] = h * max(1.0, abs(x[i]))
        g[i] = (F(x + e) - F(x - e)) / (2 * e[i])
    return g


def _fd_hess(F: Callable[[np.ndarray], float], x: np.ndarray, h: float = 1e-3) -> np.ndarray:
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


_WARM_KINDS = ("Intercept", "Intercept_c", "b", "cutpoints", "family")


def _warm_start(objective: Objective, lap: LaplaceObjective, u0: np.ndarray,
                program: Any) -> np.ndarray:
    """A starting point of the outer parameters near the optimum (Laplace optimisation from
    u = 0 spends most of its iterations moving the intercept, whose scale the SDs absorb
    meanwhile): the fixed effects, cutpoints and family parameters maximise the likelihood with
    the random effects at 0 (a GLM fit: exact gradients, no inner solves); the group-level SDs
    start at the family's ``re_scale`` parameter (e.g. sigma: lme4's relative covariance factor
    1), else at 1; correlations at 0. Returns ``u0[lap.t]`` unchanged when that is not better."""
    theta0 = np.asarray(u0, dtype=float)[lap.t].copy()
    params = getattr(program, "params", ())
    spec = getattr(program, "spec", None)
    heads = {p.stan.split("[")[0] for p in params if p.kind in _WARM_KINDS}
    names = objective.bs_model.param_unc_names()
    in_t = np.zeros(lap.n, dtype=bool)
    in_t[lap.t] = True
    sub = np.array([i for i in range(lap.n) if in_t[i] and names[i].split(".")[0] in heads],
                   dtype=int)
    if sub.size == 0:
        return theta0
    u = np.asarray(u0, dtype=float).copy()
    u[lap.z] = 0.0

    def fg(x: np.ndarray) -> tuple[float, np.ndarray]:
        v = u.copy()
        v[sub] = x
        try:
            f, g = objective.value_grad(v)
        except RuntimeError:
            return np.inf, np.zeros(x.size)
        return (f, g[sub]) if np.isfinite(f) else (np.inf, np.zeros(x.size))

    if not np.isfinite(fg(u[sub])[0]):
        return theta0
    # BFGS: a few dozen cheap iterations, and its per-iteration overhead (numpy) stays small
    # where L-BFGS-B's (LAPACK on 2m x 2m matrices) costs ms on a loaded machine
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sopt.minimize(fg, u[sub], jac=True, method="BFGS",
                            options={"maxiter": 200, "gtol": 1e-6})
    if not np.all(np.isfinite(res.x)):
        return theta0
    w = np.asarray(u0, dtype=float).copy()
    w[sub] = res.x
    family = getattr(spec, "family", None)
    scale = getattr(family, "re_scale", None)
    if scale in names and in_t[names.index(scale)]:
        # the family parameter has lower bound 0, as the SDs: u = log(value) for both
        sds = {f"sd_{g.k}" for g in getattr(spec, "groups", ())}
        for i in lap.t:
            if names[i].split(".")[0] in sds:
                w[i] = w[names.index(scale)]
    theta = w[lap.t]
    z_keep = lap.zhat.copy()
    F0 = lap.value(theta0)
    z0 = lap.zhat.copy()
    lap.zhat = z_keep
    F1 = lap.value(theta)
    if np.isfinite(F1) and (not np.isfinite(F0) or F1 < F0):
        return theta
    lap.zhat = z0
    return theta0


class LaplaceCov:
    """Covariance of all unconstrained parameters after a Laplace fit, kept factored (TMB's
    construction): with theta the outer parameters (covariance ``cov_t`` = inverse Hessian of
    the Laplace objective), z the integrated ones, A = dz^/dtheta = -H_zz^-1 H_ztheta and
    z = z^(theta) + e, Cov(e) = H_zz^-1 (``fac``, a :class:`_Factor`)::

        Cov(theta) = cov_t,  Cov(z, theta) = A cov_t,  Cov(z) = H_zz^-1 + A cov_t A'.

    Memory and the products used by the delta method are linear in the number of random
    effects (never the dense n x n matrix, 800 MB for 10,000 groups); ``toarray()`` (also
    ``np.asarray(cov)`` and indexing) builds it for small problems. ``J @ cov``, ``cov @ M``,
    ``diagonal()``, ``quad_diag(J)`` (= diag(J cov J')) and ``block(idx)`` work factored."""

    __array_ufunc__ = None  # ndarray @ LaplaceCov -> LaplaceCov.__rmatmul__

    def __init__(self, n: int, t: np.ndarray, z: np.ndarray, cov_t: np.ndarray, A: np.ndarray,
                 fac: _Factor):
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
        if sparse.issparse(Jz):
            if Jz.nnz:
                prod = Jz @ hinv
                prod = (prod.multiply(Jz) if sparse.issparse(prod)
                        else np.multiply(prod, Jz.toarray()))
                out += np.asarray(prod.sum(axis=1)).ravel()
        elif Jz.size:
            out += np.einsum("ij,ij->i", np.asarray(Jz @ hinv), Jz)
        return out


def cov_block(cov: Any, idx: Any) -> np.ndarray:
    """cov[idx, idx] of a dense covariance or a :class:`LaplaceCov`."""
    if isinstance(cov, LaplaceCov):
        return cov.block(idx)
    return np.asarray(cov)[np.ix_(idx, idx)]


def cov_diagonal(cov: Any) -> np.ndarray:
    """The diagonal of a dense covariance or a :class:`LaplaceCov`."""
    return cov.diagonal() if isinstance(cov, LaplaceCov) else np.diag(cov)


def find_laplace_mode(objective: Objective, z_idx: np.ndarray, u0: np.ndarray, *,
                      gtol: float = 1e-6, maxiter: int = 500, program: Any = None,
                      warm_start: bool = False) -> JointMode:
    """Maximise the Laplace-approximate marginal posterior of the outer parameters.

    Returns a :class:`JointMode` whose ``theta_unc`` is the full unconstrained vector
    (theta^, z^(theta^)) and whose ``cov_unc`` is the covariance used for the delta method, a
    :class:`LaplaceCov` (TMB's construction, kept factored). ``program`` (the StanProgram): the
    sparsity of H_zz comes from its structure (:func:`re_pattern`) instead of a dense Hessian,
    and its family says whether f is quadratic in z (one H_zz per inner solve).
    ``warm_start``: start from :func:`_warm_start` instead of ``u0``'s outer parameters.

    Outer algorithm: L-BFGS-B on F(theta) with central finite-difference gradients, then
    Newton steps with a finite-difference Hessian until the gradient is below ``gtol`` or the
    predicted decrease of F is below its rounding noise.
    """
    n = u0.size
    pattern = None if program is None else re_pattern(program, objective.bs_model, z_idx)
    family = getattr(getattr(program, "spec", None), "family", None)
    lap = LaplaceObjective(objective, z_idx, n, np.asarray(u0, dtype=float), pattern,
                           quadratic=bool(getattr(family, "quadratic", False)))
    lap.zhat = np.asarray(u0)[lap.z].copy()
    theta = np.asarray(u0)[lap.t].copy()
    if warm_start and program is not None:
        theta = _warm_start(objective, lap, u0, program)
    if not np.isfinite(lap.value(theta)):
        raise ValueError("the log density is not finite at the initial values; give other init=")

    def fg(x):
        f = lap.value(x)
        if not np.isfinite(f):
            return np.inf, np.zeros(x.size)
        g = lap.grad(x)
        return f, (_fd_grad(lap.value, x) if g is None else g)

    res = sopt.minimize(fg, theta, jac=True, method="L-BFGS-B",
                        options={"maxiter": maxiter, "gtol": 1e-4, "ftol": 1e-12})
    theta = res.x
    iters = int(res.nit)
    # Newton polishing on F with a finite-difference Hessian; stop when the gradient vanishes
    # or when the predicted decrease g' H^-1 g is below the rounding noise of F (large models:
    # F ~ 1e5, its finite-difference gradient never gets below ~1e-6)
    F = lap.value(theta)
    g = _fd_grad(lap.value, theta)
    for _ in range(20):
        if np.max(np.abs(g)) < gtol:
            break
        Ht = _fd_hess(lap.value, theta)
        try:
            step = np.linalg.solve(Ht, g)
            np.linalg.cholesky(Ht)
        except np.linalg.LinAlgError:
            break
        if float(g @ step) < 100 * np.finfo(float).eps * max(1.0, abs(F)):
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
        g = _fd_grad(lap.value, theta)
        iters += 1
    gnorm = float(np.max(np.abs(g))) if g.size else 0.0
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
    A = -fac.solve_many(Hzt)  # dz^/dtheta = -H_zz^-1 H_ztheta (solves: no dense q x q product)
    cov = LaplaceCov(n, lap.t, lap.z, cov_t, A, fac)
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
    cov = np.asarray(cov, dtype=float)
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
