"""The choice of the exact LMM path and its small BridgeStan instance
(bayesglmm/inference/lmm_select.py).

Fast: the cut data keep the full design's column means. Slow (the gaussian generic program,
no new Stan program): the intercept the small instance reports equals the full instance's
(the program centres the design at the means it computes from its own rows).
"""

from __future__ import annotations

import numpy as np
import pytest
from test_lmm_design import _factor_data

import bayesglmm
from bayesglmm.inference.lmm_select import CHECK_ROWS, _cut


def test_cut_keeps_the_column_means():
    rng = np.random.default_rng(4)
    N = 500
    X = np.column_stack([rng.normal(1000, 3, N), rng.integers(0, 2, N)])
    data = {"N": N, "X": X, "y": rng.normal(size=N), "J_1": rng.integers(1, 9, N),
            "N_1": 8, "compute_log_lik": 1}
    cut = _cut(data, CHECK_ROWS, centre=True)
    assert cut["N"] == CHECK_ROWS and cut["compute_log_lik"] == 0
    assert cut["y"].shape == (CHECK_ROWS,) and cut["J_1"].shape == (CHECK_ROWS,)
    np.testing.assert_allclose(cut["X"].mean(axis=0), X.mean(axis=0), rtol=1e-14)
    np.testing.assert_array_equal(cut["X"][:-1], X[:CHECK_ROWS - 1])
    assert not np.array_equal(_cut(data, CHECK_ROWS, centre=False)["X"][-1], cut["X"][-1])


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["generic", "specific"])
def test_small_instance_reports_the_full_intercept(toolchain, backend):
    from bayesglmm.inference.lmm_select import exact_lmm

    m = bayesglmm.lmer("y ~ x + f + (1 | g)", _factor_data(), backend=backend)
    e = exact_lmm(m)
    assert e is not None and e.bs is m._bs_exact_check
    full = m.bridgestan_model(verbose=False)
    u = np.random.default_rng(1).normal(0, 0.5, e.n)
    out = {}
    for bs in (e.bs, full):
        names = list(bs.param_names(include_tp=True, include_gq=True))
        vals = bs.param_constrain(u, include_tp=True, include_gq=True, rng=bs.new_rng(seed=1))
        out[id(bs)] = {k: v for k, v in zip(names, vals) if not k.startswith("log_lik")}
    a, b = out[id(e.bs)], out[id(full)]
    assert "Intercept" in a and a.keys() == b.keys()
    assert a["Intercept"] == pytest.approx(b["Intercept"], rel=1e-13)
    assert list(a.values()) == pytest.approx(list(b.values()), rel=1e-13)
