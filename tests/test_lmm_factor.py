"""The factorisations of A = T'Z'ZT + I (bayesglmm.inference.lmm_factor) against numpy's dense
algebra on random designs: every mode gives the same log determinant and solves (rounding:
1e-10 relative for these well-conditioned matrices, eigenvalues of A >= 1)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from bayesglmm.inference import lmm_factor
from bayesglmm.inference.lmm_factor import AFactor, Layout


def _design(rng, N, terms):
    """Z (sparse, columns term-group-coefficient) and the layout tuples of ``terms`` = [(M, G)]."""
    blocks, lay, off = [], [], 0
    for M, G in terms:
        J = rng.integers(0, G, size=N)
        Zk = np.hstack([np.ones((N, 1)), rng.normal(size=(N, M - 1))])
        rows = np.repeat(np.arange(N), M)
        cols = (J[:, None] * M + np.arange(M)[None, :]).ravel()
        blocks.append(sparse.csr_matrix((Zk.ravel(), (rows, cols)), shape=(N, M * G)))
        lay.append((off, M, G))
        off += M * G
    return sparse.hstack(blocks, format="csr"), lay


def _factors(rng, terms):
    Ts = []
    for M, _G in terms:
        T = np.tril(rng.normal(size=(M, M)))
        T[np.diag_indices(M)] = np.abs(T[np.diag_indices(M)]) + 0.1
        Ts.append(T)
    return Ts


ONE = [(2, 40)]
CROSSED = [(2, 30), (1, 7)]
THREE = [(1, 50), (3, 6), (1, 4)]
CASES = ([(ONE, m) for m in ("blocks", "dense", "sparse")]
         + [(t, m) for t in (CROSSED, THREE) for m in ("schur", "dense", "sparse")])


@pytest.mark.parametrize(("terms", "mode"), CASES)
def test_factor_modes_agree_with_dense_algebra(terms, mode, monkeypatch):
    rng = np.random.default_rng(7)
    Z, lay = _design(rng, 300, terms)
    Ts = _factors(rng, terms)
    if mode in ("dense", "sparse"):
        monkeypatch.setattr(lmm_factor, "SCHUR_MAX", 0)
    if mode == "sparse":
        monkeypatch.setattr(lmm_factor, "DENSE_MAX", 5)
    ZtZ = (Z.T @ Z).tocsr()
    L = Layout(lay, ZtZ)
    if len(terms) == 1 and mode != "blocks":
        L.mode = mode  # force the general modes on a single term
        if mode == "dense":
            L.dense = ZtZ.toarray()
    assert L.mode == mode
    af = AFactor(L, Ts)
    Tfull = L.T_sparse(Ts).toarray()
    A = Tfull.T @ ZtZ.toarray() @ Tfull + np.eye(L.q)
    sign, logdet = np.linalg.slogdet(A)
    assert sign > 0 and abs(af.logdet - logdet) <= 1e-10 * abs(logdet)
    R = rng.normal(size=(L.q, 3))
    np.testing.assert_allclose(af.solve(R), np.linalg.solve(A, R), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(af.solve(R[:, 0]), np.linalg.solve(A, R[:, 0]), rtol=1e-10,
                               atol=1e-12)
    np.testing.assert_allclose(L.Tt(Ts, R), Tfull.T @ R, rtol=1e-12, atol=1e-12)
    inv = af.inverse()
    inv = inv.toarray() if sparse.issparse(inv) else inv
    np.testing.assert_allclose(inv, np.linalg.inv(A), rtol=1e-9, atol=1e-12)
