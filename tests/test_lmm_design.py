"""Fixed-effect cross-products of the exact LMM path, dense or sparse
(bayesglmm/inference/lmm_design.py).

Fast: the sparse products (centring applied to the products) equal the dense products of the
centred design to 1e-10, with and without intercept and centring; the sparsity rule.
Slow (no new Stan program: the gaussian generic program): a model with a 40-level factor as a
fixed effect gives the same reconstructed log density (1e-12) and the same classic() REML and
ML estimates, SEs, df (1e-8) and log-likelihoods (1e-12) through the sparse and the dense
products.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import bayesglmm
from bayesglmm.inference import lmm_design
from bayesglmm.inference.lmm_design import fixed_crossproducts, is_sparse
from bayesglmm.inference.lmm_select import exact_lmm


def _design(n: int = 500, levels: int = 30, seed: int = 2):
    rng = np.random.default_rng(seed)
    f = rng.integers(0, levels, n)
    X = np.zeros((n, levels))
    X[np.arange(n), f] = 1.0
    X[:, 0] = rng.normal(size=n)  # one dense column, as a covariate
    X[:, 1] = rng.normal(1000.0, 2.0, size=n)  # a covariate with a large mean (cancellation)
    g = rng.integers(0, 12, n)
    Z = sparse.csc_matrix((np.ones(n), (np.arange(n), g)), shape=(n, 12))
    return X, rng.normal(size=n), Z


def test_sparsity_rule():
    X, _, _ = _design()
    X[:, 1] = 0.0
    X[np.arange(0, X.shape[0], 30), 1] = 1.0
    assert is_sparse(X)
    assert not is_sparse(X[:, :5])  # too few columns: always dense
    assert not is_sparse(np.ones((100, 20)))
    from scipy import sparse

    assert is_sparse(sparse.csr_matrix(X)) and not is_sparse(sparse.csr_matrix(np.ones((100, 20))))


@pytest.mark.parametrize("intercept", [True, False])
@pytest.mark.parametrize("centre", [True, False])
def test_sparse_products_equal_dense(intercept, centre):
    X, y, Z = _design()
    dense = fixed_crossproducts(X, y, Z, intercept, True, centre, use_sparse=False)
    sp = fixed_crossproducts(X, y, Z, intercept, True, centre, use_sparse=True)
    assert sp[0] == dense[0] == X.shape[1] + intercept
    for a, b in zip(sp[1:], dense[1:]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10 * np.abs(b).max())


@pytest.mark.parametrize("centre", [True, False])
def test_a_scipy_sparse_design_gives_the_dense_products(centre):
    # a program's CSR design (bayesglmm/design_csr.py) goes in as it is, without densifying
    from scipy import sparse

    X, y, Z = _design()
    want = fixed_crossproducts(X, y, Z, True, True, centre, use_sparse=False)
    for use in (None, True, False):
        got = fixed_crossproducts(sparse.csr_matrix(X), y, Z, True, True, centre, use_sparse=use)
        assert got[0] == want[0]
        for a, b in zip(got[1:], want[1:]):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10 * np.abs(b).max())


def _factor_data(n: int = 3000, levels: int = 40, seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    f = rng.integers(0, levels, n)
    g = rng.integers(0, 60, n)
    x = rng.normal(size=n)
    y = (1 + 0.5 * x + rng.normal(0, 0.3, levels)[f] + rng.normal(0, 0.7, 60)[g]
         + rng.normal(size=n))
    return pd.DataFrame({"y": y, "x": x, "f": [f"L{i:02d}" for i in f], "g": g})


@pytest.mark.slow
@pytest.mark.parametrize("method", ["REML", "ML"])
def test_classic_is_the_same_with_the_sparse_design(toolchain, monkeypatch, method):
    """Sparse and dense cross-products give the same fit: both paths run the same optimiser
    on objectives that agree to rounding (~1e-15 relative), so estimates, fixed-effect SEs and
    covariance agree to 1e-8 (relative; absolute 1e-10 for estimates near 0) and
    log-likelihoods to 1e-12; see below for the SEs of variance parameters and the df."""
    from bayesglmm.inference.classic import fit_classic

    d = _factor_data()
    formula = "y ~ x + f + (1 | g)"
    sp_model = bayesglmm.lmer(formula, d)
    X = np.asarray(sp_model.program.data["X"])
    assert X.shape[1] == 40 and is_sparse(X)
    sp = exact_lmm(sp_model)
    assert sp is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = fit_classic(sp_model, method)
    monkeypatch.setattr(lmm_design, "SPARSE_ZERO_SHARE", 1.0)  # every design dense
    assert not is_sparse(X)
    de_model = bayesglmm.lmer(formula, d)
    de = exact_lmm(de_model)
    rng = np.random.default_rng(9)
    for _ in range(5):
        u = rng.uniform(-0.8, 0.8, size=sp.n)
        assert sp.joint(u) == pytest.approx(de.joint(u), rel=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b = fit_classic(de_model, method)
    assert a.converged and b.converged
    np.testing.assert_allclose(a.estimate, b.estimate, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(a.fixed_se, b.fixed_se, rtol=1e-8)
    np.testing.assert_allclose(a.vcov, b.vcov, rtol=1e-8, atol=1e-14)
    # the SEs of the variance parameters and the Satterthwaite df use second differences of
    # the objective (step 1e-3): its rounding (~5e-12 of ~4e3, measured) over the squared
    # step leaves ~5e-6 in Hessian entries of ~30-100, so ~1e-7 relative
    np.testing.assert_allclose(a.se, b.se, rtol=1e-7)
    np.testing.assert_allclose(a.df, b.df, rtol=1e-7)
    assert a.loglik == pytest.approx(b.loglik, rel=1e-12)
    if method == "REML":
        assert a.reml_loglik == pytest.approx(b.reml_loglik, rel=1e-12)
