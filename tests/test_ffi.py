"""bayesglmm.inference.ffi: the direct C call of the log-density gradient equals BridgeStan's."""

from __future__ import annotations

import numpy as np
import pytest

from bayesglmm.inference.ffi import gradient_function

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bs(debate_model, debate_compiled):
    return debate_model._bridgestan(False)


def test_fast_gradient_equals_bridgestan(bs):
    rng = np.random.default_rng(3)
    n = bs.param_unc_num()
    for propto, jacobian in ((False, False), (True, True), (False, True)):
        f = gradient_function(bs, propto=propto, jacobian=jacobian)
        for _ in range(5):
            u = rng.normal(scale=0.5, size=n)
            lp, g = f(u)
            lp0, g0 = bs.log_density_gradient(u, propto=propto, jacobian=jacobian)
            assert lp == lp0  # the same C function: bitwise equal
            np.testing.assert_array_equal(g, g0)


def test_fast_gradient_new_array_per_call_and_non_contiguous_input(bs):
    f = gradient_function(bs)
    n = bs.param_unc_num()
    u = np.zeros(2 * n)[::2]  # a strided view
    _, g1 = f(u)
    _, g2 = f(u + 0.1)
    assert g1 is not g2 and not np.array_equal(g1, g2)
    np.testing.assert_array_equal(g1, bs.log_density_gradient(np.zeros(n), propto=False,
                                                               jacobian=False)[1])


def test_fast_gradient_wrong_size_gives_bridgestan_error(bs):
    import ctypes

    with pytest.raises(ctypes.ArgumentError, match=f"shape \\({bs.param_unc_num()},\\)"):
        gradient_function(bs)(np.zeros(bs.param_unc_num() + 1))


def test_other_objects_use_their_own_method():
    class Quadratic:
        def log_density_gradient(self, u, propto, jacobian):
            return -0.5 * float(u @ u), -u

    lp, g = gradient_function(Quadratic())(np.array([1.0, 2.0]))
    assert lp == -2.5 and list(g) == [-1.0, -2.0]
