"""Conformance tests of the toolchain's BridgeStan home (cmdstan-contract.md G items 18-23).

Everything goes through the unmodified ``bridgestan`` 2.9.0 client (plus a few direct
ctypes calls for C-level semantics the client does not reach).  Three Stan programs are
compiled, once per module (about 10-20 s each once the model-independent objects
exist; the nested-AD flavour also builds its own precompiled header and interface object
the first time, about a minute):

* ``conj``: conjugate normal model with a positive parameter (closed-form density,
  gradient and Hessian), default flavour;
* the same program built with ``BRIDGESTAN_AD_HESSIAN`` (nested-AD Hessians) in another
  directory (one .so path can only be loaded once per process);
* ``tpgq``: parameters, transformed parameters, generated quantities (incl. a matrix)
  and ``print()`` statements in transformed data and the model block.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import require, require_module

bridgestan = require_module("bridgestan")

pytestmark = pytest.mark.slow  # every test needs compiled Stan programs

TC_ROOT = Path(os.environ.get("BAYESGLMM_HOME", Path.home() / ".cache" / "bayesglmm")) / "toolchain"
BS_HOME = Path(os.environ.get("BRIDGESTAN") or TC_ROOT / "bridgestan")

CONJ = """
data { int<lower=0> N; vector[N] y; real<lower=0> s0; }
parameters { real mu; real<lower=0> tau; }
model { mu ~ normal(0, s0); tau ~ gamma(2, 1); y ~ normal(mu, 1); }
"""

TPGQ = """
data { int<lower=0> N; vector[N] y; }
transformed data { print("td: N=", N); }
parameters { real mu; real<lower=0> sigma; vector[2] z; }
transformed parameters { real s2 = sigma^2; }
model {
  print("model: mu=", mu);
  y ~ normal(mu, sigma);
  z ~ std_normal();
}
generated quantities {
  array[2] real yrep = normal_rng(rep_vector(mu, 2), sigma);
  matrix[2, 3] M;
  for (i in 1:2) for (j in 1:3) M[i, j] = 10 * i + j + mu;
}
"""

Y = np.array([1.2, 0.4, 2.1, 1.7, 0.9, 1.5])
S0 = 3.0
CONJ_DATA = {"N": len(Y), "y": Y.tolist(), "s0": S0}
TPGQ_DATA = {"N": 3, "y": [1.0, 2.0, 0.5]}
TPGQ_Y = np.array(TPGQ_DATA["y"])

TPGQ_NAMES_P = ["mu", "sigma", "z.1", "z.2"]
TPGQ_NAMES_TP = ["s2"]
TPGQ_NAMES_GQ = ["yrep.1", "yrep.2", "M.1.1", "M.2.1", "M.1.2", "M.2.2", "M.1.3", "M.2.3"]
LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


# ------------------------------------------------------------------------------------
# closed forms

def conj_logp(theta, propto, jacobian):
    """conj model at unconstrained (mu, log tau)."""
    mu, u = theta
    tau = math.exp(u)
    lp = -mu**2 / (2 * S0**2) + math.log(tau) - tau - 0.5 * ((Y - mu) ** 2).sum()
    if not propto:  # normal(0, s0): -log s0 - log sqrt(2 pi); gamma(2,1): -lgamma(2)=0; N x -log sqrt(2 pi)
        lp += -math.log(S0) - LOG_SQRT_2PI - len(Y) * LOG_SQRT_2PI
    if jacobian:
        lp += u
    return lp


def conj_grad(theta, jacobian):
    mu, u = theta
    tau = math.exp(u)
    return np.array([-mu / S0**2 + (Y - mu).sum(), 1 - tau + (1 if jacobian else 0)])


def conj_hess(theta):
    mu, u = theta
    return np.array([[-1 / S0**2 - len(Y), 0.0], [0.0, -math.exp(u)]])


def tpgq_logp(theta, propto, jacobian):
    mu, s, z1, z2 = theta
    sigma = math.exp(s)
    n = len(TPGQ_Y)
    lp = -0.5 * ((TPGQ_Y - mu) ** 2).sum() / sigma**2 - 0.5 * (z1**2 + z2**2)
    lp += -n * s  # sigma is a parameter: its log stays under propto
    if not propto:
        lp += -(n + 2) * LOG_SQRT_2PI
    if jacobian:
        lp += s
    return lp


def tpgq_hess(theta):
    mu, s, _, _ = theta
    r = TPGQ_Y - mu
    e = math.exp(-2 * s)
    H = np.zeros((4, 4))
    H[0, 0] = -len(r) * e
    H[0, 1] = H[1, 0] = -2 * r.sum() * e
    H[1, 1] = -2 * (r**2).sum() * e
    H[2, 2] = H[3, 3] = -1.0
    return H


def fd_grad(f, x, h=1e-6):
    g = np.zeros_like(x)
    for i in range(len(x)):
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (f(x + e) - f(x - e)) / (2 * h)
    return g


# ------------------------------------------------------------------------------------
# fixtures

@pytest.fixture(scope="module")
def home():
    require((BS_HOME / "Makefile").exists(),
            f"no BridgeStan home at {BS_HOME} (install the toolchain first)")
    bridgestan.set_bridgestan_path(str(BS_HOME))
    return BS_HOME


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("bs")
    for sub, name, code in [("conj", "conj", CONJ), ("adh", "conj", CONJ), ("tpgq", "tpgq", TPGQ)]:
        (d / sub).mkdir()
        (d / sub / f"{name}.stan").write_text(code)
    return d


@pytest.fixture(scope="module")
def conj_built(home, workdir):
    """Item 18: StanModel(<file>.stan, data dict) compiles <stem>_model.so, no version warning."""
    stan_file = workdir / "conj" / "conj.stan"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = bridgestan.StanModel(str(stan_file), CONJ_DATA)
    return model, [str(w.message) for w in caught]


@pytest.fixture(scope="module")
def conj(conj_built):
    return conj_built[0]


@pytest.fixture(scope="module")
def conj_adh(home, workdir):
    so = bridgestan.compile_model(str(workdir / "adh" / "conj.stan"),
                                  make_args=["BRIDGESTAN_AD_HESSIAN=true"])
    return bridgestan.StanModel(so, json.dumps(CONJ_DATA))


@pytest.fixture(scope="module")
def tpgq_so(home, workdir):
    return bridgestan.compile_model(str(workdir / "tpgq" / "tpgq.stan"))


@pytest.fixture(scope="module")
def tpgq(tpgq_so):
    return bridgestan.StanModel(tpgq_so, TPGQ_DATA, warn=False)


@pytest.fixture(scope="module")
def clib(tpgq_so):
    """Direct ctypes handle on the tpgq library (same handle the client uses)."""
    lib = ctypes.CDLL(tpgq_so)
    lib.bs_model_construct.restype = ctypes.c_void_p
    lib.bs_model_construct.argtypes = [ctypes.c_char_p, ctypes.c_uint,
                                       ctypes.POINTER(ctypes.c_char_p)]
    lib.bs_model_destruct.argtypes = [ctypes.c_void_p]
    lib.bs_free_error_msg.argtypes = [ctypes.c_void_p]
    dp = ctypes.POINTER(ctypes.c_double)
    lib.bs_param_constrain.argtypes = [ctypes.c_void_p, ctypes.c_bool, ctypes.c_bool, dp, dp,
                                       ctypes.c_void_p, ctypes.POINTER(ctypes.c_char_p)]
    lib.bs_log_density.argtypes = [ctypes.c_void_p, ctypes.c_bool, ctypes.c_bool, dp, dp,
                                   ctypes.POINTER(ctypes.c_char_p)]
    return lib


def _dptr(a):
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_double))


def _take_error(lib, err):
    msg = ctypes.string_at(err).decode() if err.value is not None else None
    if err.value is not None:
        lib.bs_free_error_msg(ctypes.cast(err, ctypes.c_void_p))
    return msg


# ------------------------------------------------------------------------------------
# 18: build and load

def test_compile_and_load(conj_built, workdir):
    model, caught = conj_built
    assert (workdir / "conj" / "conj_model.so").exists()
    assert (workdir / "conj" / "conj.o").exists()  # the object shared with CmdStan
    assert not [w for w in caught if "version" in w.lower()], caught
    assert model.model_version() == (2, 9, 0)
    assert model.name() == "conj_model"
    info = model.model_info()
    assert "BridgeStan version: 2.9.0" in info and "Stan version: 2.35.0" in info
    assert "\tSTAN_THREADS=true" in info and "\tBRIDGESTAN_AD_HESSIAN=false" in info
    assert "stanc3 v2.35.0" in info


def test_recompile_is_noop(home, workdir, conj):
    so = workdir / "conj" / "conj_model.so"
    before = so.stat().st_mtime_ns
    assert Path(bridgestan.compile_model(str(workdir / "conj" / "conj.stan"))) == so
    assert so.stat().st_mtime_ns == before


def test_make_errors_surface(home, workdir):
    bad = workdir / "bad.stan"
    bad.write_text("parameters { real mu } model { mu ~ normal(0,1); }")
    with pytest.raises(RuntimeError, match="Syntax error"):
        bridgestan.compile_model(str(bad))


# ------------------------------------------------------------------------------------
# 19: names, counts, transforms

def test_names_and_counts(tpgq):
    for tp in (False, True):
        for gq in (False, True):
            expected = TPGQ_NAMES_P + (TPGQ_NAMES_TP if tp else []) + (TPGQ_NAMES_GQ if gq else [])
            assert tpgq.param_names(include_tp=tp, include_gq=gq) == expected
            assert tpgq.param_num(include_tp=tp, include_gq=gq) == len(expected)
    assert tpgq.param_unc_names() == TPGQ_NAMES_P
    assert tpgq.param_unc_num() == 4


def test_names_conj(conj):
    assert conj.param_names() == ["mu", "tau"]
    assert conj.param_unc_names() == ["mu", "tau"]


def test_constrain_roundtrip(tpgq):
    x = np.array([0.3, 0.2, -0.1, 0.5])
    c = tpgq.param_constrain(x)
    np.testing.assert_allclose(c, [0.3, math.exp(0.2), -0.1, 0.5])
    np.testing.assert_allclose(tpgq.param_unconstrain(c), x, atol=1e-14)
    ctp = tpgq.param_constrain(x, include_tp=True)
    np.testing.assert_allclose(ctp[-1], math.exp(0.4))
    js = json.dumps({"mu": 0.3, "sigma": math.exp(0.2), "z": [-0.1, 0.5]})
    np.testing.assert_allclose(tpgq.param_unconstrain_json(js), x, atol=1e-14)
    with pytest.raises(RuntimeError, match=r"param_unconstrain_json\(\) failed with exception:.*"
                                           r"variable does not exist"):
        tpgq.param_unconstrain_json(json.dumps({"mu": 0.3, "z": [0.0, 0.0]}))


def test_constrain_gq(tpgq, clib):
    x = np.array([0.3, 0.2, -0.1, 0.5])
    rng = tpgq.new_rng(seed=11)
    a = tpgq.param_constrain(x, include_tp=True, include_gq=True, rng=rng)
    b = tpgq.param_constrain(x, include_tp=True, include_gq=True, rng=rng)
    assert len(a) == 13
    np.testing.assert_allclose(a[7:], [11.3, 21.3, 12.3, 22.3, 13.3, 23.3])
    assert not np.allclose(a[5:7], b[5:7])  # the caller's rng advanced
    a2 = tpgq.param_constrain(x, include_tp=True, include_gq=True, rng=tpgq.new_rng(seed=11))
    np.testing.assert_array_equal(a, a2)
    gq_only = tpgq.param_constrain(x, include_gq=True, rng=tpgq.new_rng(seed=11))
    np.testing.assert_array_equal(gq_only, np.delete(a, 4))
    with pytest.raises(ValueError):  # client-side check
        tpgq.param_constrain(x, include_gq=True)
    # C level: a null rng with include_gq is an error, not a crash; NULL error_msg tolerated
    out = np.zeros(12)
    err = ctypes.c_char_p()
    rc = clib.bs_param_constrain(ctypes.c_void_p(tpgq.model), False, True, _dptr(x), _dptr(out),
                                 None, ctypes.byref(err))
    msg = _take_error(clib, err)
    assert rc != 0 and msg.startswith("param_constrain() failed with exception:")
    assert clib.bs_param_constrain(ctypes.c_void_p(tpgq.model), False, True, _dptr(x),
                                   _dptr(out), None, None) != 0


# ------------------------------------------------------------------------------------
# 20: densities and derivatives

@pytest.mark.parametrize("theta", [np.array([0.7, math.log(1.5)]), np.array([-1.2, 0.3])])
def test_conj_log_density(conj, theta):
    for propto in (False, True):
        for jac in (False, True):
            lp = conj.log_density(theta, propto=propto, jacobian=jac)
            assert lp == pytest.approx(conj_logp(theta, propto, jac), abs=1e-10)
            lp2, g = conj.log_density_gradient(theta, propto=propto, jacobian=jac)
            assert lp2 == pytest.approx(lp, abs=1e-12)
            np.testing.assert_allclose(g, conj_grad(theta, jac), atol=1e-10)
            np.testing.assert_allclose(
                g, fd_grad(lambda t, p=propto, j=jac: conj.log_density(t, propto=p, jacobian=j), theta),
                atol=1e-5)


def test_tpgq_log_density(tpgq):
    theta = np.array([0.3, 0.2, -0.1, 0.5])
    vals = {}
    for propto in (False, True):
        for jac in (False, True):
            vals[propto, jac] = tpgq.log_density(theta, propto=propto, jacobian=jac)
            assert vals[propto, jac] == pytest.approx(tpgq_logp(theta, propto, jac), abs=1e-10)
    assert vals[True, True] - vals[True, False] == pytest.approx(0.2)  # jacobian = log sigma
    assert vals[True, True] - vals[False, True] == pytest.approx(5 * LOG_SQRT_2PI)
    _, g = tpgq.log_density_gradient(theta)
    np.testing.assert_allclose(g, fd_grad(lambda t: tpgq.log_density(t), theta), atol=1e-5)


@pytest.mark.parametrize("flavour", ["default", "ad"])
def test_conj_hessian(request, flavour):
    model = request.getfixturevalue("conj" if flavour == "default" else "conj_adh")
    expected_flag = "true" if flavour == "ad" else "false"
    assert f"\tBRIDGESTAN_AD_HESSIAN={expected_flag}" in model.model_info()
    theta = np.array([0.7, math.log(1.5)])
    for propto in (False, True):
        for jac in (False, True):
            lp, g, H = model.log_density_hessian(theta, propto=propto, jacobian=jac)
            assert lp == pytest.approx(conj_logp(theta, propto, jac), abs=1e-10)
            np.testing.assert_allclose(g, conj_grad(theta, jac), atol=1e-8)
            np.testing.assert_allclose(H, conj_hess(theta), rtol=0, atol=1e-4)
            v = np.array([0.3, -2.0])
            lpv, hvp = model.log_density_hessian_vector_product(theta, v, propto=propto,
                                                                jacobian=jac)
            assert lpv == pytest.approx(lp, abs=1e-12)
            np.testing.assert_allclose(hvp, H @ v, rtol=1e-5, atol=1e-5)
    if flavour == "ad":  # nested AD is exact
        _, _, H = model.log_density_hessian(theta)
        np.testing.assert_allclose(H, conj_hess(theta), rtol=1e-12, atol=1e-12)
    _, hv0 = model.log_density_hessian_vector_product(theta, np.zeros(2))
    np.testing.assert_array_equal(hv0, [0.0, 0.0])


def test_tpgq_hessian(tpgq):
    theta = np.array([0.3, 0.2, -0.1, 0.5])
    lp, g, H = tpgq.log_density_hessian(theta, jacobian=False)
    np.testing.assert_allclose(H, tpgq_hess(theta), rtol=0, atol=1e-4)
    np.testing.assert_allclose(H, H.T, atol=1e-12)
    v = np.array([1.0, -0.5, 2.0, 0.25])
    _, hvp = tpgq.log_density_hessian_vector_product(theta, v, jacobian=False)
    np.testing.assert_allclose(hvp, H @ v, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------
# 21: initialisation

def test_param_initialize(tpgq):
    rng = tpgq.new_rng(seed=5)
    draws = np.array([tpgq.param_initialize(rng, init_radius=1.5) for _ in range(20)])
    assert np.isfinite(draws).all()
    assert (np.abs(draws) < 1.5).all()
    assert len({tuple(d) for d in draws}) == 20  # the rng advances
    np.testing.assert_array_equal(tpgq.param_initialize(rng, init_radius=0), np.zeros(4))
    x = tpgq.param_initialize(rng, {"mu": 5.0, "sigma": 2.0})
    assert x[0] == 5.0 and x[1] == pytest.approx(math.log(2.0))
    assert (np.abs(x[2:]) < 2.0).all()
    x = tpgq.param_initialize(rng, json.dumps({"mu": 5.0}), init_radius=0)
    np.testing.assert_array_equal(x, [5.0, 0.0, 0.0, 0.0])
    full = {"mu": -1.0, "sigma": 0.5, "z": [0.25, -0.75]}
    x = tpgq.param_initialize(rng, full)
    np.testing.assert_allclose(x, [-1.0, math.log(0.5), 0.25, -0.75])
    # seeded: reproducible
    a = tpgq.param_initialize(tpgq.new_rng(seed=99))
    b = tpgq.param_initialize(tpgq.new_rng(seed=99))
    np.testing.assert_array_equal(a, b)


def test_param_initialize_failures(tpgq):
    rng = tpgq.new_rng(seed=5)
    with pytest.raises(RuntimeError, match=r"^param_initialize\(\) failed with exception:.*"
                                           r"after 3 attempts.*lb_free"):
        tpgq.param_initialize(rng, {"sigma": -1.0}, max_tries=3)
    with pytest.raises(RuntimeError, match=r"after 1 attempt\b"):
        tpgq.param_initialize(rng, {"mu": 0.0, "sigma": -1.0, "z": [0, 0]}, max_tries=50)
    with pytest.raises(RuntimeError, match=r"^param_initialize\(\) failed with exception:"):
        tpgq.param_initialize(rng, {"z": [1.0, 2.0, 3.0]})  # wrong size
    with pytest.raises(RuntimeError, match=r"^param_initialize\(\) failed with exception:"):
        tpgq.param_initialize(rng, "{not json")


# ------------------------------------------------------------------------------------
# 22: errors, printing

def test_errors(home, tpgq, tpgq_so, clib):
    with pytest.raises(RuntimeError, match=r"^construct\(\) failed with exception: .*"):
        bridgestan.StanModel(tpgq_so, '{"N": 3, "y": [1, 2', warn=False)
    with pytest.raises(RuntimeError, match=r"^construct\(\) failed with exception: Exception: "
                                           r".*int variable contained non-int values"):
        bridgestan.StanModel(tpgq_so, {"N": 2.5, "y": []}, warn=False)
    with pytest.raises(RuntimeError, match=r"construct\(\) failed with exception: .*variable does "
                                           r"not exist.*N"):
        bridgestan.StanModel(tpgq_so, None, warn=False)
    bad = np.array([np.nan, 0.0, 0.0, 0.0])
    with pytest.raises(RuntimeError, match=r"^log_density\(\) failed with exception: Exception: "
                                           r"normal_lpdf: Location parameter is nan"):
        tpgq.log_density(bad)
    for fn in (tpgq.log_density_gradient, tpgq.log_density_hessian):
        with pytest.raises(RuntimeError, match=fn.__name__ + r"\(\) failed with exception:"):
            fn(bad)
    with pytest.raises(RuntimeError, match=r"log_density_hessian_vector_product\(\) failed"):
        tpgq.log_density_hessian_vector_product(bad, np.ones(4))
    # NULL error_msg: failure code, no crash
    lp = np.zeros(1)
    assert clib.bs_log_density(ctypes.c_void_p(tpgq.model), True, True, _dptr(bad), _dptr(lp),
                               None) != 0
    # the model keeps working after errors
    assert np.isfinite(tpgq.log_density(np.zeros(4)))


def _rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    require(False, "no /proc/self/status (the memory test reads VmRSS from it)")


def test_errors_do_not_leak(conj):
    bad = np.array([np.nan, 0.0])
    def hammer(n):
        for _ in range(n):
            with pytest.raises(RuntimeError):
                conj.log_density_gradient(bad)
    hammer(2000)
    before = _rss_kib()
    hammer(20000)
    after = _rss_kib()
    # a leaked error message (~200 B) or AD tape per call would add >= 4 MB
    assert after - before < 2000, (before, after)


def test_data_path_and_text(clib, workdir):
    """C-level data semantics: '' = no data, '*.json' = file, else JSON text."""
    path = workdir / "tpgq" / "tpgq.data.json"
    path.write_text(json.dumps(TPGQ_DATA))
    err = ctypes.c_char_p()
    for data in (str(path).encode(), json.dumps(TPGQ_DATA).encode()):
        m = clib.bs_model_construct(data, 1, ctypes.byref(err))
        assert m, _take_error(clib, err)
        clib.bs_model_destruct(m)
    m = clib.bs_model_construct(str(workdir / "missing.json").encode(), 1, ctypes.byref(err))
    assert not m
    msg = _take_error(clib, err)
    assert msg.startswith("construct() failed with exception: Cannot read input file: ")
    for data in (b"", None):
        m = clib.bs_model_construct(data, 1, ctypes.byref(err))
        assert not m and "variable does not exist" in _take_error(clib, err)
    assert not clib.bs_model_construct(b"{", 1, None)


def test_print_callback(tpgq_so, capsys):
    capsys.readouterr()
    model = bridgestan.StanModel(tpgq_so, TPGQ_DATA, warn=False)
    out = capsys.readouterr().out
    assert "td: N=3\n" in out  # transformed data runs inside construct
    model.log_density(np.array([0.25, 0.0, 0.0, 0.0]))
    assert capsys.readouterr().out == "model: mu=0.25\n"


# ------------------------------------------------------------------------------------
# 23: threads

def test_concurrent_gradients(conj):
    rs = np.random.default_rng(3)
    points = rs.normal(size=(400, 2))
    serial = [conj.log_density_gradient(p) for p in points]

    def work(idx):
        return [(i, conj.log_density_gradient(points[i])) for i in idx]

    with ThreadPoolExecutor(4) as ex:
        chunks = list(ex.map(work, [range(k, 400, 4) for k in range(4)] * 5))
    for chunk in chunks:
        for i, (lp, g) in chunk:
            assert lp == serial[i][0]
            np.testing.assert_array_equal(g, serial[i][1])
    with ThreadPoolExecutor(4) as ex:
        hs = list(ex.map(lambda p: conj.log_density_hessian(p)[2], points[:40]))
    for p, H in zip(points[:40], hs):
        np.testing.assert_array_equal(H, conj.log_density_hessian(p)[2])


def test_concurrent_printing(tpgq, capsys):
    capsys.readouterr()
    pts = [np.array([0.5 * k, 0.0, 0.0, 0.0]) for k in range(8)]
    with ThreadPoolExecutor(4) as ex:
        list(ex.map(lambda p: [tpgq.log_density(p) for _ in range(25)], pts))
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 200
    assert sorted(set(lines)) == sorted(f"model: mu={0.5 * k:g}" for k in range(8))
