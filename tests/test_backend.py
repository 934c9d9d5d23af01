"""bayesglmm.backend: which Stan program fits a model (backend="auto" | "specific" | "generic"),
the header line and ``fit.backend``, equal results from both programs, the generic program's
build (message, killed build, two processes at once) and the toolchain's ``--programs``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import bayesglmm
from bayesglmm.backend import check_backend
from bayesglmm.inference.loglik import pointwise_log_lik
from bayesglmm.results import backend_lines

REPO = Path(__file__).resolve().parents[1]
FORMULA = "Reaction ~ Days + (Days | Subject)"


# --------------------------------------------------------------------------- selection


def test_backend_argument_is_checked(debate):
    with pytest.raises(ValueError, match="backend must be 'auto', 'specific' or 'generic'"):
        bayesglmm.lmer("sat ~ talk + (1 | group)", debate, backend="fast")
    with pytest.raises(ValueError, match="backend must be"):
        check_backend(None)


def test_auto_uses_the_generic_program_and_print_code_the_specific(debate, capsys):
    m = bayesglmm.lmer("sat ~ talk + perf + (talk | group)", debate)
    assert (m.backend, m.backend_reason, m.backend_requested) == ("generic", None, "auto")
    run = m.run_program
    assert run.backend == "generic" and run.name == "generic_gaussian"
    assert run.code != m.stan_code  # print_code()/export() keep the model's own program
    m.print_code()
    assert capsys.readouterr().out == m.stan_code + "\n"
    assert backend_lines(m) == ["Stan program: generic (the precompiled gaussian program)"]
    # all families' wrappers take the argument
    for fit_fn, kw in ((bayesglmm.glmer, {"family": "poisson"}), (bayesglmm.glm, {}),
                       (bayesglmm.lm, {})):
        formula = "talk ~ perf + (1 | group)" if fit_fn is bayesglmm.glmer else "talk ~ perf"
        assert fit_fn(formula, debate, backend="generic", **kw).backend == "generic"


def test_specific_on_request(debate):
    m = bayesglmm.lmer("sat ~ talk + (1 | group)", debate, backend="specific")
    assert m.backend == "specific" and m.backend_reason is None
    assert m.run_program.code == m.stan_code and m.run_program.data is m.program.data
    assert backend_lines(m) == ["Stan program: specific (backend='specific')"]


def test_shrinkage_prior_falls_back_with_a_reason(debate):
    rhs = bayesglmm.prior_rhs()
    m = bayesglmm.lmer("sat ~ talk + perf + (1 | group)", debate, prior=rhs, y_range=(1, 5))
    assert m.backend == "specific" and "prior_rhs" in m.backend_reason
    assert backend_lines(m) == [
        f"Stan program: specific (not covered by the generic program: {m.backend_reason})"]
    with pytest.raises(ValueError, match=r"backend='generic': the precompiled gaussian program "
                       r"cannot fit this model \(prior_rhs .*use backend='auto' or "
                       r"backend='specific'"):
        bayesglmm.lmer("sat ~ talk + perf + (1 | group)", debate, prior=rhs, y_range=(1, 5),
                       backend="generic")


def test_more_terms_than_slots_fall_back(debate):
    d = debate.copy()
    for k in range(7):
        d[f"g{k}"] = (np.arange(len(d)) * (k + 3)) % (5 + k)
    formula = "sat ~ talk + " + " + ".join(f"(1 | g{k})" for k in range(7))
    m = bayesglmm.lmer(formula, d)
    assert m.backend == "specific" and m.backend_reason.startswith("7 grouping terms")
    with pytest.raises(ValueError, match="7 grouping terms"):
        bayesglmm.lmer(formula, d, backend="generic")


def test_residual_correlation_runs_the_generic_program(debate):
    m = bayesglmm.lmer("sat ~ talk + (1 | group)", debate, resid_corr="cs")
    assert m.backend == "generic" and m.backend_reason is None


def test_from_stan_is_specific(tmp_path):
    p = tmp_path / "m.stan"
    p.write_text("parameters { real mu; } model { mu ~ normal(0, 1); }\n")
    m = bayesglmm.from_stan(p)
    assert m.backend == "specific" and m.run_program.code == p.read_text()
    assert backend_lines(m) == ["Stan program: specific (a program given to from_stan())"]


def test_restricted_model_keeps_the_requested_backend(debate):
    m = bayesglmm.lmer("sat ~ talk + perf + (1 | group)", debate, backend="specific")
    assert m.with_fixed({"b[talk]": 0}).backend == "specific"
    assert bayesglmm.lmer("sat ~ talk + perf + (1 | group)", debate).with_fixed(
        {"b[talk]": 0}).backend == "generic"


# --------------------------------------------------------------------------- both programs agree


@pytest.fixture(scope="module")
def sleep_pair(sleepstudy, toolchain):
    return (bayesglmm.lmer(FORMULA, sleepstudy), bayesglmm.lmer(FORMULA, sleepstudy,
                                                                 backend="specific"))


@pytest.mark.slow
def test_classic_and_map_agree_between_backends(sleep_pair, capsys):
    gen, spe = sleep_pair
    assert gen.backend == "generic" and spe.backend == "specific"
    for method in ("REML", "ML"):
        a, b = gen.classic(method=method, verbose=False), spe.classic(method=method,
                                                                      verbose=False)
        assert a.backend == "generic" and b.backend == "specific"
        np.testing.assert_allclose(a.summary()["estimate"], b.summary()["estimate"], rtol=1e-6)
        np.testing.assert_allclose(a.summary()["se"], b.summary()["se"], rtol=1e-6)
        assert a.loglik == pytest.approx(b.loglik, rel=1e-6)
    a, b = gen.optimize(verbose=False), spe.optimize(verbose=False)
    np.testing.assert_allclose(a.summary()["estimate"], b.summary()["estimate"], rtol=1e-6)
    assert a.log_ml == pytest.approx(b.log_ml, rel=1e-6)  # Laplace log ML
    assert "Stan program: generic (the precompiled gaussian program)" in str(a)
    assert "Stan program: specific (backend='specific')" in str(b)
    assert "Stan program: generic" in str(gen.classic(verbose=False))


@pytest.mark.slow
def test_binomial_glmm_agrees_between_backends(cbpp, cbpp_model, cbpp_classic):
    assert cbpp_model.backend == "generic"
    spe = bayesglmm.glmer("cbind(incidence, failures) ~ period + (1 | herd)", data=cbpp,
                          family="binomial", backend="specific")
    b = spe.classic(verbose=False)
    np.testing.assert_allclose(cbpp_classic.summary()["estimate"], b.summary()["estimate"],
                               rtol=1e-6)
    assert cbpp_classic.loglik == pytest.approx(b.loglik, rel=1e-6)
    m1, m2 = cbpp_model.optimize(verbose=False), spe.optimize(verbose=False)
    assert m1.log_ml == pytest.approx(m2.log_ml, rel=1e-6)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_zero_inflated_glmm_agrees_between_backends(toolchain):
    """The zero-inflated poisson model of tests/test_family_zero_inflated.py (same data and
    specific program, cache name fam_flat_zip): classic(), MAP and Laplace log ML."""
    from test_family_zero_inflated import SEED, simulate

    data = simulate(np.random.default_rng(SEED))
    kw = dict(family="zero_inflated_poisson", zi="~ w")
    gen = bayesglmm.glmer("y ~ x + (1 | g)", data, **kw)
    spe = bayesglmm.glmer("y ~ x + (1 | g)", data, backend="specific", **kw)
    spe.name = "fam_flat_zip"
    assert gen.backend == "generic" and spe.backend == "specific"
    a, b = gen.classic(verbose=False), spe.classic(verbose=False)
    assert "Stan program: generic (the precompiled zero_inflated_poisson program)" in str(a)
    cols = ["estimate", "se", "z", "p"]
    np.testing.assert_allclose(a.summary()[cols].to_numpy(float),
                               b.summary()[cols].to_numpy(float), rtol=1e-6)
    assert a.loglik == pytest.approx(b.loglik, rel=1e-6)
    m1, m2 = gen.optimize(verbose=False), spe.optimize(verbose=False)
    np.testing.assert_allclose(m1.summary()["estimate"], m2.summary()["estimate"], rtol=1e-6)
    assert m1.log_ml == pytest.approx(m2.log_ml, rel=1e-6)


@pytest.mark.slow
def test_nuts_on_the_generic_program_matches_the_specific(sleep_pair):
    gen, spe = sleep_pair
    kw = dict(chains=2, warmup=500, sampling=500, seed=11, verbose=False)
    a, b = gen.sample(**kw), spe.sample(**kw)
    assert a.backend == "generic" and "Stan program: generic" in str(a)
    sa, sb = a.summary(mcse=True), b.summary(mcse=True)
    for name in ("Intercept", "b[Days]", "sigma", "sd[Subject:Int]", "sd[Subject:Days]"):
        se = np.hypot(sa.loc[name, "mcse_mean"], sb.loc[name, "mcse_mean"])
        assert abs(sa.loc[name, "mean"] - sb.loc[name, "mean"]) < 4 * se, name
    # loo reads the generic program's log_lik, and it is the specific program's log_lik at the
    # same draws. rtol 1e-4: both the draws and the written log_lik come from CmdStan's CSV at
    # 6 significant digits (measured: 1.7e-5). The elpd_loo of the two runs is not compared:
    # the chains of the two programs are equal in distribution, not draw for draw (last-bit
    # differences inside the compiled programs part them after a few dozen iterations), and on
    # sleepstudy (Pareto k > 1) the specific program's elpd_loo alone
    # spans -861.9 to -860.0 over seeds 11-14. (Bridge sampling on the generic program:
    # tests/test_bridge.py, whose models run it under backend="auto".)
    ll_specific = pointwise_log_lik(spe, stan_output=a.stan_fit)
    np.testing.assert_allclose(a.log_lik(), ll_specific, rtol=1e-4)
    assert np.isfinite(a.loo().elpd_loo)


@pytest.mark.slow
def test_variational_header_says_generic(sleep_pair):
    fit = sleep_pair[0].pathfinder(draws=200, seed=3, verbose=False)
    assert fit.backend == "generic" and "Stan program: generic" in str(fit)


# --------------------------------------------------------------------------- building


def _scratch_home(tmp_path: Path) -> Path:
    """A home with the installed toolchain (symlinked) and an empty compiled-model cache."""
    from bayesglmm.toolchain import ensure_toolchain

    tc = ensure_toolchain(verbose=False)
    home = tmp_path / "home"
    home.mkdir()
    (home / "toolchain").symlink_to(tc.root)
    return home


_BUILD = (
    "import bayesglmm; d = bayesglmm.load_sleepstudy();"
    f"m = bayesglmm.lmer({FORMULA!r}, d, backend='generic'); cm = m.compile();"
    "print(cm.hash)"
)


def _entries(models: Path) -> list[Path]:
    return [d for d in models.iterdir() if d.is_dir() and not d.name.startswith(".")] \
        if models.is_dir() else []


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_generic_build_killed_then_two_processes_build_it_once(tmp_path):
    from bayesglmm.toolchain.programs import programs_status

    home = _scratch_home(tmp_path)
    env = dict(os.environ, BAYESGLMM_HOME=str(home), PYTHONPATH=str(REPO))
    models = home / "models"
    # 1. a build killed half-way (the whole process group: python, make, the compiler)
    p = subprocess.Popen([sys.executable, "-c", _BUILD], env=env, cwd=REPO,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not list(models.glob(".tmp-*/*.stan")):
        time.sleep(0.5)
    assert list(models.glob(".tmp-*/*.stan")), "the build did not start"
    time.sleep(5)  # make is compiling
    os.killpg(p.pid, signal.SIGKILL)
    p.communicate(timeout=60)
    assert _entries(models) == []  # nothing that looks usable
    assert programs_status(home)["gaussian"] is False
    # 2. two processes need it at once: one builds (and clears the dead build), one waits
    ps = [subprocess.Popen([sys.executable, "-c", _BUILD], env=env, cwd=REPO,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
          for _ in range(2)]
    outs = [q.communicate(timeout=1500) for q in ps]
    assert all(q.returncode == 0 for q in ps), outs
    assert outs[0][0] == outs[1][0]  # the same cache entry
    msg = "Building the precompiled gaussian program (once per machine)..."
    assert sum(msg in err for _, err in outs) == 1, outs
    assert len(_entries(models)) == 1 and not list(models.glob(".tmp-*"))
    assert programs_status(home)["gaussian"] is True


# --------------------------------------------------------------------------- the CLI


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bayesglmm.toolchain", *args], cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True,
                          text=True, timeout=1500, check=False)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_install_programs_and_status(toolchain):
    r = _cli("install", "--programs", "gaussian")
    assert r.returncode == 0, r.stderr
    assert "precompiled programs ready: gaussian" in r.stdout
    st = _cli("status")
    line = [ln for ln in st.stdout.splitlines() if ln.startswith("Precompiled generic programs")]
    assert line and "built: " in line[0] and "gaussian" in line[0].split(";")[0]
    bad = _cli("install", "--programs", "gausian")
    assert bad.returncode == 2 and "no precompiled program for 'gausian'" in bad.stderr
