"""Exact maximum likelihood and REML for linear mixed models with normal errors.

For a family whose log-likelihood is quadratic in the linear predictor (``Family.quadratic``:
normal errors on the link scale) the Laplace approximation over the random effects (and, for
REML, the fixed effects) is exact, and the integral has a closed form: the penalised
least-squares (PLS) problem of lme4 (Bates, Maechler, Bolker and Walker 2015, *Fitting linear
mixed-effects models using lme4*, J. Stat. Softw. 67(1), sections 3-4). With the relative
covariance factor T (block diagonal; per grouping term and group diag(sd / sigma) L),

    A = T' Z'Z T + I,    S = X'X - X'Z T A^-1 T' Z'X,

and everything the fit needs comes from the cross-products Z'Z, Z'X, X'X, Z'y, X'y and y'y,
formed in one pass over the data: the cost of an evaluation depends on the number of random
effects, not on the number of rows. A is factorised per group in closed form (a batch of small
dense Cholesky factors) for a single grouping term; with several terms the largest is eliminated
per group and the Schur complement of the others factorised densely, or A densely, or with a
sparse LU (:mod:`bayesglmm.inference.lmm_factor`).

:class:`ExactLMM` works on the same unconstrained (Stan) coordinates as the generic Laplace
optimiser of :mod:`bayesglmm.inference.optimize`, and returns the same :class:`JointMode`
(estimates, Hessian of the objective by the same finite differences, factored covariance), so
that every table built from it is unchanged. It is only used when it reproduces the program's
log density: at construction it is compared with BridgeStan at two random points (priors,
residual correlation, held coefficients or a template the reconstruction does not know make the
comparison fail, and the caller keeps the generic path).

The stages: :mod:`~bayesglmm.inference.lmm_select` decides whether the exact path applies and
builds it (:func:`~bayesglmm.inference.lmm_select.exact_lmm`); this module holds the model
(:class:`ExactLMM`: reconstruction, profiled objective, optimiser, covariance);
:mod:`~bayesglmm.inference.lmm_coords` the map between Stan's unconstrained coordinates and the
relative covariance factors; :mod:`~bayesglmm.inference.lmm_factor` the factorisations.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import linalg as sla
from scipy import optimize as sopt
from scipy import sparse

from ..design_csr import design_matrix
from .lmm_coords import SD_FLOOR, Term, cholesky_corr, corr_unconstrain, fd_grad_bounded
from .lmm_design import fixed_crossproducts
from .lmm_factor import AFactor, CentredFactor, Layout, WFactor
from .lmm_newton import Derivatives, newton_polish
from .optimize import JointMode, LaplaceCov, fd_hess, hessian_inverse

__all__ = ["ExactLMM", "NotExact", "check_applies"]

LOG2PI = math.log(2 * math.pi)


class NotExact(Exception):
    """The model is outside what the exact path reproduces (the reason is the message)."""


def check_applies(program: Any) -> None:
    """Raise :class:`NotExact` unless ``program`` is a normal-errors mixed model without
    residual correlation, held coefficients or family parameters besides the scale."""
    spec = getattr(program, "spec", None)
    fam = getattr(spec, "family", None)
    if spec is None or not getattr(fam, "quadratic", False):
        raise NotExact("the family is not normal on the link scale")
    if spec.resid is not None or spec.held or fam.category_specific or not spec.groups:
        raise NotExact("residual correlation, held coefficients or no grouping term")
    if tuple(fam.extra_names) != (fam.re_scale,):
        raise NotExact("the family has parameters other than its scale")



class ExactLMM:
    """Closed-form (RE)ML for a normal-errors mixed model on the program's unconstrained
    coordinates (see the module docstring). Raises :class:`NotExact` when the program's log
    density is not reproduced."""

    def __init__(self, bs_model: Any, program: Any, data: Any = None, validate: bool = True,
                 sparse_design: bool | None = None):
        spec = program.spec
        fam = spec.family
        check_applies(program)
        self.bs = bs_model
        data = program.data if data is None else data
        names = list(bs_model.param_unc_names())
        self.n = len(names)
        heads = np.array([nm.split(".")[0] for nm in names])
        icpt = "Intercept_c" if spec.centred else "Intercept"
        pos = lambda h: np.flatnonzero(heads == h)  # noqa: E731
        self.fixed = np.concatenate([pos(icpt), pos("beta")]).astype(int)
        self.sigma = pos(fam.re_scale)
        if self.sigma.size != 1:
            raise NotExact("no scale parameter")
        N = int(data["N"])
        X = design_matrix(data)  # dense, or the CSR form kept sparse (design_csr.py)
        if (int(pos(icpt).size > 0) + (X.shape[1] if pos("beta").size else 0)
                != self.fixed.size):
            raise NotExact("fixed-effect layout")
        y = np.asarray(data["y"], dtype=float)
        if "offsets" in data:
            y = y - np.asarray(data["offsets"], dtype=float)
        self.terms: list[Term] = []
        zblocks, off = [], 0
        for g in spec.groups:
            M, G = int(data[f"M_{g.k}"]), int(data[f"N_{g.k}"])
            zpos = pos(f"z_{g.k}")
            # Stan's matrix[M, G] z: column-major, so z_k[m, j] is at (j - 1) M + m - 1
            if [names[i] for i in zpos] != [f"z_{g.k}.{m}.{j}" for j in range(1, G + 1)
                                             for m in range(1, M + 1)]:
                raise NotExact(f"layout of z_{g.k}")
            t = Term(M, G, pos(f"sd_{g.k}"), pos(f"L_{g.k}"), zpos, off, bool(g.centered))
            # a centred term's z holds mu + b: mu = S beta1 (beta1 = u[self.fixed], X1's order)
            t.S = np.zeros((M, self.fixed.size))
            n_icpt = pos(icpt).size
            for m, code in enumerate(getattr(g, "means", ()) or ()):
                if code == 1 and n_icpt:
                    t.S[m, 0] = 1.0
                elif code > 1:
                    t.S[m, n_icpt + code - 2] = 1.0
            if t.sd.size != M or t.L.size not in (0, M * (M - 1) // 2):
                raise NotExact(f"layout of term {g.k}")
            J = np.asarray(data[f"J_{g.k}"], dtype=np.int64) - 1
            Zk = (np.ones((N, 1)) if f"Z_{g.k}" not in data
                  else np.asarray(data[f"Z_{g.k}"], dtype=float).reshape(N, M))
            rows = np.repeat(np.arange(N), M)
            colz = (J[:, None] * M + np.arange(M)[None, :]).ravel()
            zblocks.append(sparse.csr_matrix((Zk.ravel(), (rows, colz)), shape=(N, M * G)))
            self.terms.append(t)
            off += M * G
        self.q = off
        Z = sparse.hstack(zblocks, format="csc")  # columns: term, group, coefficient
        # one pass over the rows: the cross-products (a mostly-zero design as a sparse matrix)
        self.N = N
        self.ZtZ = (Z.T @ Z).tocsr()
        self.layout = Layout([(t.off, t.M, t.G) for t in self.terms], self.ZtZ)
        self.p, self.ZtX, self.XtX, self.Xty = fixed_crossproducts(
            X, y, Z, bool(pos(icpt).size), bool(pos("beta").size), spec.centred,
            use_sparse=sparse_design)
        self.Zty = np.asarray(Z.T @ y).ravel()
        self.yty = float(y @ y)
        self.zpos = np.concatenate([t.z for t in self.terms])
        other = np.setdiff1d(np.arange(self.n), np.concatenate(
            [self.fixed, self.sigma, self.zpos] + [np.concatenate([t.sd, t.L]) for t in self.terms]))
        if other.size:
            raise NotExact("parameters the exact path does not know")
        if self.fixed.size and (np.any(np.diff(self.fixed) <= 0) or self.fixed.max() > self.zpos.min()):
            raise NotExact("order of the fixed effects")  # WFactor orders (fixed, random)
        if np.any(np.diff(self.zpos) <= 0):
            raise NotExact("order of the random effects")
        self.const = 0.0
        if validate:
            self._validate()

    # ------------------------------------------------------------------ the joint density
    def _Ts(self, u: np.ndarray, scale: float) -> list[np.ndarray]:
        return [t.factor(u[t.sd], u[t.L], scale) for t in self.terms]

    def joint(self, u: np.ndarray) -> float:
        """-log p(y, u) without Jacobian (what BridgeStan's ``log_density`` gives, negated)."""
        sigma = math.exp(u[self.sigma[0]])
        b = np.empty(self.q)
        zz = 0.0
        for t, T in zip(self.terms, self._Ts(u, 1.0)):
            zk = u[t.z].reshape(t.G, t.M)
            if t.centered:  # zk holds mu + b: b's density is N(0, T T') per group
                bk = zk - (t.S @ u[self.fixed])[None, :]
                b[t.off:t.off + t.M * t.G] = bk.ravel()
                zs = sla.solve_triangular(T, bk.T, lower=True)
                zz += float(np.sum(zs ** 2)) + 2 * t.G * float(np.sum(np.log(np.diag(T))))
            else:
                b[t.off:t.off + t.M * t.G] = (zk @ T.T).ravel()
                zz += float(np.sum(zk ** 2))
        beta = u[self.fixed]
        rss = (self.yty - 2 * (beta @ self.Xty + b @ self.Zty) + b @ (self.ZtZ @ b)
               + 2 * b @ (self.ZtX @ beta) + beta @ self.XtX @ beta)
        return (self.N * math.log(sigma) + 0.5 * (self.N + self.q) * LOG2PI
                + 0.5 * rss / sigma ** 2 + 0.5 * zz + self.const)

    def _validate(self) -> None:
        """The reconstruction must give the program's log density at two random points."""
        rng = np.random.default_rng(20261205)
        diffs = []
        for _ in range(2):
            u = rng.uniform(-0.8, 0.8, size=self.n)
            try:
                ref = -self.bs.log_density(u, propto=False, jacobian=False)
            except RuntimeError as e:
                raise NotExact(f"log density: {e}") from None
            diffs.append((ref - self.joint(u), abs(ref)))
        for d, scale in diffs:
            if not abs(d) <= 1e-9 * max(1.0, scale):
                raise NotExact("the reconstructed log density differs from the program's")

    # ------------------------------------------------------------------ PLS
    def _pls(self, Ts: list[np.ndarray], beta: np.ndarray | None):
        """Penalised least squares at the relative factors ``Ts``: (A factor, penalised RSS,
        u^ (spherical effects times sigma), beta^, S or None). ``beta`` None: beta profiled."""
        af = AFactor(self.layout, Ts)
        c = self.layout.Tt(Ts, self.Zty)
        C = self.layout.Tt(Ts, self.ZtX)
        if beta is None:
            AiC = af.solve(C)
            Aic = af.solve(c)
            S = self.XtX - C.T @ AiC
            r = self.Xty - C.T @ Aic
            beta = np.linalg.solve(S, r) if self.p else np.zeros(0)
            pwrss = self.yty - c @ Aic - r @ beta
            uhat = Aic - AiC @ beta
            return af, pwrss, uhat, beta, S, C
        cb = c - C @ beta
        Aicb = af.solve(cb)
        rr = self.yty - 2 * beta @ self.Xty + beta @ self.XtX @ beta
        return af, rr - cb @ Aicb, Aicb, beta, None, C

    def lambdas(self, x: np.ndarray) -> list[np.ndarray]:
        """The relative factors T_k at lme4's coordinates ``x`` (per term, the lower triangle
        of T_k row by row; only its diagonal for uncorrelated terms)."""
        Ts, k = [], 0
        for t in self.terms:
            if t.L.size:
                T = np.zeros((t.M, t.M))
                n = t.M * (t.M + 1) // 2
                T[np.tril_indices(t.M)] = x[k:k + n]
            else:
                n = t.M
                T = np.diag(x[k:k + n])
            k += n
            Ts.append(T)
        return Ts

    def lambda_bounds(self) -> list[tuple[float | None, float | None]]:
        """Bounds of lme4's coordinates: diagonal elements >= 0."""
        out: list[tuple[float | None, float | None]] = []
        for t in self.terms:
            rows, cols = np.tril_indices(t.M) if t.L.size else (np.arange(t.M), np.arange(t.M))
            out += [(0.0, None) if i == j else (None, None) for i, j in zip(rows, cols)]
        return out

    def profiled(self, x: np.ndarray, reml: bool) -> float:
        """lme4's profiled deviance / 2 at lme4's relative-factor coordinates ``x`` (see
        :meth:`lambdas`)."""
        Ts = self.lambdas(x)
        try:
            af, pwrss, _u, _b, S, _C = self._pls(Ts, None)
        except np.linalg.LinAlgError:
            return np.inf
        n = self.N - (self.p if reml else 0)
        if not pwrss > 0:
            return np.inf
        dev = af.logdet + n * (1 + math.log(2 * math.pi * pwrss / n))
        if reml and self.p:
            sign, ld = np.linalg.slogdet(S)
            if sign <= 0:
                return np.inf
            dev += ld
        return 0.5 * dev

    # ------------------------------------------------------------------ Stan coordinates
    def outer_index(self, reml: bool) -> np.ndarray:
        """The outer (not integrated) coordinates: scale, SDs, correlation factors (and the
        fixed effects for ML)."""
        out = [self.sigma] + [np.concatenate([t.sd, t.L]) for t in self.terms]
        if not reml:
            out.append(self.fixed)
        return np.sort(np.concatenate(out)).astype(int)

    def integrated_index(self, reml: bool) -> np.ndarray:
        return np.sort(np.concatenate([self.zpos] + ([self.fixed] if reml else []))).astype(int)

    def inner(self, u: np.ndarray, reml: bool, program: bool = False):
        """(w^ on the integrated coordinates, f at the mode, :class:`WFactor`) at the outer
        coordinates of ``u``, as the generic ``LaplaceObjective.inner``: in the standardised
        coordinates (z), or with ``program`` in the program's own (the effects themselves for
        a centred term, see :class:`CentredFactor`). F = f + log|H| / 2 is the same in both."""
        w, f, fac = self._inner_z(u, reml)
        centred = [t for t in self.terms if t.centered]
        if not program or not centred:
            return w, f, fac
        Kz, Sfull, logdet = self._centre_map(u)
        if fac.p:  # REML: beta1 is integrated too, K = [[I, 0], [S, Kz]]
            K = sparse.bmat([[sparse.identity(fac.p), None], [Sfull, Kz]], format="csr")
            wz = K @ w
        else:  # ML: beta1 is an outer parameter, the shift a constant
            K = Kz
            wz = Kz @ w + Sfull @ u[self.fixed]
        return wz, f + logdet, CentredFactor(fac, K, logdet)

    def _centre_map(self, u: np.ndarray) -> tuple[Any, Any, float]:
        """(Kz, Sh, log|Kz|): the program's effects are Kz v + Sh beta1 for the standardised
        effects v (per group of a centred term, its coefficients mu + b = S beta1 +
        diag(sd) L v; the identity for the other terms)."""
        blocks, shifts, logdet = [], [], 0.0
        for t, T in zip(self.terms, self._Ts(u, 1.0)):
            blk = sparse.kron(sparse.identity(t.G), sparse.csr_matrix(T)) if t.centered \
                else sparse.identity(t.M * t.G)
            blocks.append(blk)
            S = t.S if t.centered else np.zeros((t.M, self.fixed.size))
            shifts.append(np.tile(S, (t.G, 1)))
            if t.centered:
                logdet += t.G * float(np.sum(np.log(np.diag(T))))
        return (sparse.block_diag(blocks, format="csr"), sparse.csr_matrix(np.vstack(shifts)),
                logdet)

    def beta_gradient(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(dF/dbeta, d2F/dbeta2) of the ML objective at ``u`` in closed form: F depends on
        the fixed effects through the penalised RSS, (beta - beta^)' S (beta - beta^) plus a
        constant, over 2 sigma^2 (see :mod:`~bayesglmm.inference.lmm_newton`)."""
        sigma = math.exp(u[self.sigma[0]])
        _af, _pwrss, _u, bhat, S, _C = self._pls(self._Ts(u, sigma), None)
        return S @ (u[self.fixed] - bhat) / sigma ** 2, S / sigma ** 2

    def beta_jacobian(self, u: np.ndarray) -> np.ndarray:
        """dw^/dbeta of an ML fit at ``u`` (w^: the program's random-effect coordinates at the
        inner mode, linear in the fixed effects: -A^-1 T'Z'X / sigma in the standardised
        coordinates)."""
        sigma = math.exp(u[self.sigma[0]])
        af, _prss, _u, _b, _S, C = self._pls(self._Ts(u, sigma), u[self.fixed])
        J = -af.solve(C) / sigma
        if any(t.centered for t in self.terms):
            Kz, Sfull, _ld = self._centre_map(u)
            J = Kz @ J + Sfull.toarray()
        return J

    def _inner_z(self, u: np.ndarray, reml: bool):
        sigma = math.exp(u[self.sigma[0]])
        Ts = self._Ts(u, sigma)
        af, prss, uhat, beta, _S, C = self._pls(Ts, None if reml else u[self.fixed])
        # prss = |y - X beta - Z T u|^2 + |u|^2 contains the penalty |z|^2 (z = u / sigma)
        f = (self.N * math.log(sigma) + 0.5 * (self.N + self.q) * LOG2PI
             + 0.5 * prss / sigma ** 2 + self.const)
        w = np.empty(self.n)
        w[self.zpos] = uhat / sigma
        if reml:
            w[self.fixed] = beta
            fac = WFactor(af, C / sigma, self.XtX / sigma ** 2)
        else:
            fac = WFactor(af, None, None)
        integ = self.integrated_index(reml)
        return w[integ], f, fac

    def value(self, u: np.ndarray, reml: bool) -> float:
        """The Laplace (here exact) objective F at the outer coordinates of ``u``."""
        try:
            _w, f, fac = self.inner(u, reml)
        except np.linalg.LinAlgError:
            return np.inf
        return f + fac.half_logdet() - 0.5 * fac.q * LOG2PI

    # ------------------------------------------------------------------ the fit
    def fit(self, reml: bool, u_start: np.ndarray | None = None, gtol: float = 1e-8) -> JointMode:
        """The (RE)ML mode: the profiled deviance over the relative factors, then Newton
        polishing of F in the Stan coordinates, as the generic optimiser ends."""
        t_idx = self.outer_index(reml)
        x0 = []
        for t in self.terms:
            if u_start is not None:
                T = np.exp(u_start[t.sd] - u_start[self.sigma[0]])[:, None] * (
                    cholesky_corr(u_start[t.L], t.M) if t.L.size else np.eye(t.M))
            else:
                T = np.eye(t.M)  # lme4's start
            x0.append(T[np.tril_indices(t.M)] if t.L.size else np.diag(T))
        x = np.concatenate(x0)

        def fg(v: np.ndarray) -> tuple[float, np.ndarray]:
            f = self.profiled(v, reml)
            if not np.isfinite(f):
                return np.inf, np.zeros(v.size)
            return f, fd_grad_bounded(lambda w: self.profiled(w, reml), v, lower, 1e-6)

        # lme4's coordinates: the diagonal of each T_k >= 0, so that a variance or a
        # correlation on the boundary (0, +-1) is reached at a bound rather than at infinity
        bounds = self.lambda_bounds()
        lower = np.array([-np.inf if b[0] is None else b[0] for b in bounds])
        with np.errstate(all="ignore"):
            res = sopt.minimize(fg, x, jac=True, method="L-BFGS-B", bounds=bounds,
                                options={"maxiter": 1000, "gtol": 1e-9, "ftol": 1e-15})
        iters = int(res.nit)
        u = self.from_lambdas(self.lambdas(res.x), reml)
        theta, more, g = newton_polish(self, u, t_idx, reml, gtol,
                                       self._objective_at(u, t_idx, reml))
        iters += more
        return self._mode(u, t_idx, theta, reml, iters, g, str(res.message))

    def from_lambdas(self, Ts: list[np.ndarray], reml: bool) -> np.ndarray:
        """The full unconstrained vector at the relative factors ``Ts`` (lower triangular,
        diagonal >= 0) with sigma (and beta) at their profiled values. A standard deviation at
        0 becomes ``exp(SD_FLOOR)`` times sigma, a correlation at +-1 the bound CORR_BOUND."""
        af, pwrss, _u, beta, _S, _C = self._pls(Ts, None)
        sigma = math.sqrt(pwrss / (self.N - (self.p if reml else 0)))
        u = np.zeros(self.n)
        u[self.sigma[0]] = math.log(sigma)
        u[self.fixed] = beta
        for t, T in zip(self.terms, Ts):
            s = np.sqrt(np.sum(T ** 2, axis=1))  # sd / sigma
            with np.errstate(divide="ignore"):
                u[t.sd] = np.maximum(np.log(s), SD_FLOOR) + math.log(sigma)
            if t.L.size:
                u[t.L] = corr_unconstrain(T, s)
        return u

    def _objective_at(self, u: np.ndarray, t_idx: np.ndarray, reml: bool) -> Any:
        """F as a function of the outer coordinates ``t_idx`` (the rest of ``u`` fixed)."""
        base = u.copy()

        def F(th: np.ndarray) -> float:
            v = base.copy()
            v[t_idx] = th
            return self.value(v, reml)

        return F

    def _mode(self, u: np.ndarray, t_idx: np.ndarray, theta: np.ndarray, reml: bool,
              iters: int, g: np.ndarray, message: str) -> JointMode:
        u = u.copy()
        u[t_idx] = theta
        F = self._objective_at(u, t_idx, reml)
        Fv = F(theta)
        Ht = Derivatives(self, F, u, t_idx, reml).hessian(theta)
        Ht = 0.5 * (Ht + Ht.T)
        integ = self.integrated_index(reml)
        w, _f, fac = self.inner(u, reml, program=True)
        u[integ] = w
        # dw^/dtheta by central differences of the closed-form solution (the generic path:
        # -H_ww^-1 H_wtheta from gradient differences; the same derivative); w^ is linear in
        # the fixed effects of an ML fit: their columns in closed form
        Aw = np.empty((integ.size, t_idx.size))
        bcols = np.isin(t_idx, self.fixed) if not reml else np.zeros(t_idx.size, dtype=bool)
        if bcols.any():
            Aw[:, bcols] = self.beta_jacobian(u)
        for k, i in enumerate(t_idx):
            if bcols[k]:
                continue
            h = 1e-5 * max(1.0, abs(u[i]))
            up, dn = u.copy(), u.copy()
            up[i] += h
            dn[i] -= h
            Aw[:, k] = (self.inner(up, reml, True)[0] - self.inner(dn, reml, True)[0]) / (2 * h)
        logjac = float(self.bs.log_density(u, propto=False, jacobian=True)
                       - self.bs.log_density(u, propto=False, jacobian=False))
        cov_t, logdet_t, bad_t = hessian_inverse(Ht)
        log_ml = math.nan
        if logdet_t is not None:
            log_ml = -Fv + logjac + 0.5 * t_idx.size * LOG2PI + 0.5 * logdet_t
        cov = LaplaceCov(self.n, t_idx, integ, cov_t, Aw, fac)
        bad = np.zeros(self.n, dtype=bool)
        bad[t_idx[bad_t]] = True
        gnorm = float(np.max(np.abs(g))) if g.size else 0.0
        converged = bool(np.isfinite(Fv) and gnorm < 1e-3)
        msg = "" if converged else f"gradient norm {gnorm:.2g} after {iters} iterations; {message}"
        return JointMode(u, float(Fv), converged, msg, iters, Ht, cov, logjac, float(log_ml),
                         gnorm, extra={"theta_index": t_idx, "z_index": integ, "degenerate": bad,
                                       "exact": True})

    # ------------------------------------------------------------------ classic() helpers
    def conditional_cov(self, u: np.ndarray, h: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
        """C(theta) = the fixed-effect block of H_ww^-1 (fixed and random effects integrated)
        at ``u`` and its central differences (step ``h``) in the variance coordinates."""
        t_idx = self.outer_index(True)

        def C(th: np.ndarray) -> np.ndarray:
            v = u.copy()
            v[t_idx] = th
            return self.inner(v, True)[2].fixed_inverse()

        theta = u[t_idx]
        C0 = C(theta)
        dC = np.empty((theta.size, self.p, self.p))
        for k in range(theta.size):
            e = np.zeros(theta.size)
            e[k] = h
            dC[k] = (C(theta + e) - C(theta - e)) / (2 * h)
        return C0, dC

    def ml_profile_hessian(self, u: np.ndarray) -> np.ndarray:
        """Hessian in the variance coordinates of the ML objective with the fixed effects
        profiled out (lmerTest's A for ML fits)."""
        t_idx = self.outer_index(True)

        def prof(th: np.ndarray) -> float:
            v = u.copy()
            v[t_idx] = th
            _w, f, fac = self.inner(v, True)
            return f + 0.5 * fac.af.logdet

        return fd_hess(prof, u[t_idx])


    def boundary_value(self, mode: JointMode) -> Any:
        """The objective of ``mode`` as a function of the full unconstrained vector (for
        :func:`bayesglmm.inference.boundary.boundary_sds`)."""
        reml = bool(np.intersect1d(mode.extra["z_index"], self.fixed).size)
        return lambda v: self.value(v, reml)
