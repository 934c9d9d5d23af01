"""The fixed-effect design in CSR form (bayesglmm/design_csr.py) and the programs that read it.

Fast: the switch rule (columns, share of zeros, size, category-specific families, the JZS
prior); the CSR data round trip; the row cut of the exact-path check (lmm_select._cut) gives the
dense cut's design; the generated code of every structure of tests/test_generic.py with the
design in CSR form, plain and threaded, passes stanc; ``covers()`` sends such models to their
own program; ``export()`` writes the data the program reads.

The slow tests (sampling, BridgeStan equivalence, classic/optimize) are in
tests/test_design_csr_fits.py.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from test_generic import CASES, case_spec

import bayesglmm
from bayesglmm import design_csr, generic
from bayesglmm.codegen import generate, render_code
from bayesglmm.codegen_threads import threads_unsupported
from bayesglmm.families import get_family
from bayesglmm.inference.lmm_select import _cut
from bayesglmm.spec import build_spec


def many_levels(n: int = 800, levels: int = 80, groups: int = 20, seed: int = 1) -> pd.DataFrame:
    """``y ~ x + f + (1 | g)`` data with a ``levels``-level factor ``f`` (simulated); ``hi`` a 0/1
    response."""
    rng = np.random.default_rng(seed)
    f, g, x = rng.integers(0, levels, n), rng.integers(0, groups, n), rng.normal(size=n)
    y = (1 + 0.5 * x + rng.normal(0, 0.3, levels)[f] + rng.normal(0, 1, groups)[g]
         + rng.normal(size=n))
    return pd.DataFrame({"y": y, "x": x, "f": [f"L{i:03d}" for i in f], "g": g,
                         "hi": (y > 1).astype(int)})


@pytest.fixture
def small_cells(monkeypatch):
    """The rule's size floor lowered so that the small test data use the CSR form."""
    monkeypatch.setattr(design_csr, "MIN_CELLS", 1000)


def _factor_design(n: int, K: int, dense_cols: int = 1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = np.zeros((n, K))
    X[:, :dense_cols] = rng.normal(size=(n, dense_cols))
    f = rng.integers(0, K - dense_cols + 1, n)
    X[np.flatnonzero(f > 0), dense_cols + f[f > 0] - 1] = 1.0
    return X


def test_rule_columns_zeros_and_size():
    gauss = get_family("gaussian")
    n = design_csr.MIN_CELLS // 60
    # one covariate and a factor: 2 non-zeros per row (1.99 with the reference level), so the
    # CSR form from 60 + 6 * 2 = 72 columns
    assert design_csr.use_csr(_factor_design(n, 72), gauss)
    assert not design_csr.use_csr(_factor_design(n, 68), gauss)
    assert design_csr.use_csr(_factor_design(n, 300), gauss)
    # too small, too many non-zeros per row (20 covariates), no columns
    assert not design_csr.use_csr(_factor_design(1000, 300), gauss)
    assert not design_csr.use_csr(_factor_design(n, 150, dense_cols=20), gauss)
    assert not design_csr.use_csr(np.zeros((n, 0)), gauss)


def test_rule_keeps_dense_for_matrix_beta_and_the_jzs_prior():
    X = _factor_design(design_csr.MIN_CELLS // 100 + 1, 100)
    assert not design_csr.use_csr(X, get_family("sequential"))  # category-specific: matrix beta
    assert design_csr.use_csr(X, get_family("gaussian"), ("Intercept", "b", "sigma"))
    assert not design_csr.use_csr(X, get_family("gaussian"), ("b_jzs", "sigma"))


def test_csr_data_round_trip_and_row_cut():
    X = _factor_design(50, 12, dense_cols=2)
    d = {"N": 50, "K": 12, **design_csr.csr_data(X)}
    assert d["nnz_X"] == np.count_nonzero(X) == d["X_w"].size == d["X_v"].size
    assert d["X_u"][0] == 1 and d["X_u"][-1] == d["nnz_X"] + 1 and d["X_u"].size == 51
    assert d["X_v"].min() >= 1 and d["X_v"].max() <= 12
    assert design_csr.has_csr(d) and not design_csr.has_csr({"N": 50, "K": 12, "X": X})
    np.testing.assert_array_equal(design_csr.dense_design(d), X)
    np.testing.assert_array_equal(design_csr.dense_design({"N": 50, "K": 12, "X": X}), X)
    cut = {"N": 20, "K": 12, **design_csr.cut_rows(d, slice(0, 20))}
    np.testing.assert_array_equal(design_csr.dense_design(cut), X[:20])
    assert design_csr.cut_rows({"N": 50, "K": 12, "X": X}, slice(0, 20)) == {}


@pytest.mark.parametrize("centre", [False, True])
def test_exact_path_cut_is_the_dense_cut(centre):
    X = _factor_design(300, 25, dense_cols=2, seed=4)
    base = {"N": 300, "K": 25, "y": np.arange(300.0), "J_1": np.ones(300, dtype=np.int64),
            "compute_log_lik": 1}
    dense = _cut({**base, "X": X}, 64, centre)
    sparse = _cut({**base, **design_csr.csr_data(X)}, 64, centre)
    assert "X" not in sparse and sparse["N"] == dense["N"] == 64
    np.testing.assert_allclose(design_csr.dense_design(sparse), dense["X"], rtol=0, atol=1e-13)
    if centre:  # the kept rows have the full design's column means
        np.testing.assert_allclose(design_csr.dense_design(sparse).mean(axis=0),
                                   X.mean(axis=0), atol=1e-13)
    np.testing.assert_array_equal(sparse["y"], dense["y"])


def test_model_uses_csr_for_a_many_level_factor(small_cells):
    spec = build_spec("y ~ x + f + (1 | g)", many_levels(), prior="normal")
    assert spec.sparse_X and spec.fixed.K == 80 and "X in CSR form" in str(spec)
    prog = generate(spec)
    assert "X" not in prog.data and prog.data["X_u"].size == spec.n_obs + 1
    np.testing.assert_array_equal(design_csr.dense_design(prog.data), spec.fixed.X)
    code = prog.code
    assert "csr_matrix_times_vector(N, K, X_w, X_v, X_u, beta)" in code
    assert "matrix[N, K] X;" not in code and "_glm_" not in code
    assert "The design is mostly zeros" in code  # says why
    dense = generate(replace(spec, sparse_X=False))
    assert "normal_id_glm_lpdf" in dense.code and "X_w" not in dense.data
    # the generic programs read a dense design: such a model gets its own program
    reason = generic.covers(spec)
    assert reason is not None and "CSR" in reason
    assert generic.covers(replace(spec, sparse_X=False)) is None


def test_export_writes_the_csr_data(small_cells, tmp_path):
    m = bayesglmm.lmer("y ~ x + f + (1 | g)", data=many_levels(), backend="specific")
    assert m.spec.sparse_X
    m.export(tmp_path / "out")
    data = json.loads((tmp_path / "out" / "data.json").read_text())
    assert {"nnz_X", "X_w", "X_v", "X_u"} <= set(data) and "X" not in data
    assert "X_w" in (tmp_path / "out" / "model.stan").read_text()


def _stanc(code: str, toolchain, tmp_path) -> None:
    from bayesglmm.toolchain.cache import run_stanc_check

    assert run_stanc_check(toolchain.stanc, code, "csr", tmp_path) == []


@pytest.fixture(scope="module")
def data(debate_plus):
    return debate_plus.assign(prop=(debate_plus.sat - 0.5) / 5.0)


@pytest.mark.parametrize("case", [c for c, v in CASES.items()
                                  if not get_family(v[0]).category_specific
                                  if isinstance(v[0], str)])
def test_csr_code_passes_stanc(case, data, toolchain, tmp_path):
    spec = replace(case_spec(case, data), sparse_X=True)
    code = render_code(spec)
    assert "csr_matrix_times_vector(N, K, X_w, X_v, X_u, beta)" in code
    _stanc(code, toolchain, tmp_path)
    if threads_unsupported(spec) is None:
        threaded = render_code(spec, threads=True)
        assert "X_w[a:b], X_v[a:b], u, beta)" in threaded
        _stanc(threaded, toolchain, tmp_path)
