"""Shared fixtures.

Every distinct Stan program of these tests compiles at most once per run: the models and the
expensive fits are session-scoped (and the toolchain caches compiled programs by hash, so a
second run compiles nothing). Tests that compile or sample are marked ``slow``.

Strict mode: ``make test`` (and so CI) sets ``BAYESGLMM_STRICT_TESTS=1``. Then a test that needs
something missing (the toolchain, a built CmdStan, stanc, an optional extra such as nutpie or dask)
FAILS with the reason instead of being skipped: use :func:`require` / :func:`require_module` for
such needs, and every other skip (``pytest.skip``, ``skipif``, ``importorskip``) is turned into a
failure as well. A plain local ``pytest`` still skips, and its summary line says how many tests
were skipped for a missing need.

Distinct Stan programs used by tests/test_models.py, test_results.py, test_statistics.py:
  1. debate  lmer(sat ~ talk + perf + (1 | group), prior_normal())
  2. sleepstudy  lmer(Reaction ~ Days + (Days | Subject), prior_weak(), y_range)
  3. debate  lm(sat ~ talk + perf) with flat priors
  4. an edited copy of program 1 (from_stan test)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import ModuleType

import pytest

import bayesglmm

REFERENCE = Path(__file__).parent / "reference"
SEED = 20261125


def load_reference(name: str) -> dict:
    return json.loads((REFERENCE / name).read_text())


# ---- strict mode: a missing need fails under `make test` -----------------------------------

STRICT_VAR = "BAYESGLMM_STRICT_TESTS"
STRICT = os.environ.get(STRICT_VAR, "") not in ("", "0")
# Default per-test timeout of the fast tests (the slow ones get pyproject's global default or
# their own @pytest.mark.timeout): a fast test that hangs is a bug.
FAST_TIMEOUT = 120


def _strict_message(reason: str) -> str:
    return (f"{STRICT_VAR}=1 (set by `make test` / CI): this test needs something that is missing "
            f"and would have been skipped: {reason}")


def require(condition: object, reason: str) -> None:
    """Skip the calling test (or fixture) unless ``condition`` holds; FAIL in strict mode.

    Use it for everything a test needs from the machine (a built toolchain, a binary, an
    optional extra): ``require(path.exists(), f"no CmdStan home at {path}")``.
    """
    if condition:
        return
    if STRICT:
        pytest.fail(_strict_message(reason), pytrace=False)
    pytest.skip(reason)


def require_module(name: str, reason: str | None = None) -> ModuleType:
    """``pytest.importorskip`` that FAILS in strict mode: returns the imported module."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as e:
        require(False, reason or f"optional module {name!r} is not installed ({e}); "
                                 f"install the extra that provides it")
        raise  # pragma: no cover - require raised


def _strictify(rep) -> None:
    """Turn a skipped report into a failure carrying the skip's reason (strict mode)."""
    if not (STRICT and rep.skipped) or hasattr(rep, "wasxfail"):
        return
    longrepr = rep.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    reason = reason.removeprefix("Skipped: ")
    rep.outcome = "failed"
    rep.longrepr = _strict_message(reason)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _strictify(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _strictify(outcome.get_result())


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("slow") is None and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(FAST_TIMEOUT))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    skipped = terminalreporter.stats.get("skipped", [])
    if STRICT:
        terminalreporter.write_line(f"{STRICT_VAR}=1: skips for a missing need count as failures.")
    elif skipped:
        terminalreporter.write_line(
            f"NOTE: {len(skipped)} test(s) SKIPPED because something they need is missing (see -rs); "
            f"`make test` ({STRICT_VAR}=1, as CI runs it) fails them instead.", yellow=True, bold=True)


@pytest.fixture(scope="session")
def toolchain():
    """The Stan toolchain (tests that compile need it): skip without it, fail in strict mode."""
    from bayesglmm.toolchain import ToolchainError, ensure_toolchain

    try:
        return ensure_toolchain(verbose=False)
    except ToolchainError as e:  # pragma: no cover - depends on the machine
        require(False, f"Stan toolchain not available: {e}")


@pytest.fixture(scope="session")
def debate():
    return bayesglmm.load_debate()


@pytest.fixture(scope="session")
def debate_plus():
    """debate with derived columns for the family tests: a 0/1 response (hi), binomial failures
    (fail), a positive exposure (expo) and a positive continuous response (pos)."""
    d = bayesglmm.load_debate().copy()
    d["hi"] = (d.sat > 3).astype(int)
    d["fail"] = 5 - d.talk
    d["expo"] = d.perf + 1.0
    d["pos"] = d.sat + 0.5 * d.talk
    return d


@pytest.fixture(scope="session")
def sleepstudy():
    return bayesglmm.load_sleepstudy()


# ---- program 1: debate, normal prior ------------------------------------------------------


@pytest.fixture(scope="session")
def debate_model(debate):
    return bayesglmm.lmer("sat ~ talk + perf + (1 | group)", data=debate,
                          prior=bayesglmm.prior_normal())


@pytest.fixture(scope="session")
def debate_compiled(debate_model, toolchain):
    return debate_model.compile(verbose=False)


@pytest.fixture(scope="session")
def debate_mcmc(debate_model, debate_compiled):
    return debate_model.sample(chains=4, warmup=1000, sampling=1000, seed=SEED, verbose=False)


@pytest.fixture(scope="session")
def debate_map(debate_model, debate_compiled):
    """Laplace MAP (the default of optimize())."""
    return debate_model.optimize(verbose=False)


@pytest.fixture(scope="session")
def debate_joint_map(debate_model, debate_compiled):
    return debate_model.optimize(laplace=False, verbose=False)


# ---- program 2: sleepstudy, weak prior ----------------------------------------------------


@pytest.fixture(scope="session")
def sleep_model(sleepstudy):
    y = sleepstudy["Reaction"]
    return bayesglmm.lmer("Reaction ~ Days + (Days | Subject)", data=sleepstudy,
                          prior=bayesglmm.prior_weak(), y_range=(float(y.min()), float(y.max())))


@pytest.fixture(scope="session")
def sleep_mcmc(sleep_model, toolchain):
    sleep_model.compile(verbose=False)
    return sleep_model.sample(chains=4, warmup=1000, sampling=1000, seed=SEED, verbose=False)


# ---- program 3: debate lm, flat priors -----------------------------------------------------


@pytest.fixture(scope="session")
def lm_model(debate):
    return bayesglmm.lm("sat ~ talk + perf", data=debate)


@pytest.fixture(scope="session")
def lm_map(lm_model, toolchain):
    lm_model.compile(verbose=False)
    return lm_model.optimize(verbose=False)


# ---- issue 6: conjugate normal model (from_stan), Neal's funnel (from_stan) ----------------


@pytest.fixture(scope="session")
def conjugate_model():
    """y_i ~ N(mu, 1), mu ~ N(0, 10^2) on refs 09_bridge_conjugate's data (analytic posterior
    in reference/conjugate_normal.json). The code is byte-identical to test_bridge.py's program,
    so both share one compiled program."""
    y = load_reference("bridge_conjugate.json")["y"]
    return bayesglmm.from_stan(REFERENCE / "stan" / "conjugate.stan",
                               {"n": len(y), "y": y, "s": 10.0})


@pytest.fixture(scope="session")
def conjugate_compiled(conjugate_model, toolchain):
    return conjugate_model.compile(verbose=False)


@pytest.fixture(scope="session")
def funnel_model(toolchain):
    m = bayesglmm.from_stan(REFERENCE / "stan" / "funnel.stan")
    m.compile(verbose=False)
    return m

# ---- issue 5 (classic / anova / lsmeans): flat-prior programs ------------------------------
#   7. sleepstudy lmer(Reaction ~ Days + (Days | Subject)) flat
#   8. debate lmer(sat ~ talk + perf + (1 | group)) flat
#   9. debate lmer(sat ~ cond * skill + (1 | group), factors cond, skill) flat
#  10. cbpp glmer(cbind(incidence, failures) ~ period + (1 | herd), binomial) flat
#  (wine_flat_model reuses tests/test_family_fits.py's ordered program; known_variance_model is
#  a test-only from_stan program: tests/reference/stan/known_variance.stan)


def _compiled(m):
    m.compile(verbose=False)
    return m


@pytest.fixture(scope="session")
def sleep_flat_model(sleepstudy, toolchain):
    # param="auto": centred (tests/test_laplace.py has the non-centred twin)
    return _compiled(bayesglmm.lmer("Reaction ~ Days + (Days | Subject)", data=sleepstudy))


@pytest.fixture(scope="session")
def sleep_reml(sleep_flat_model):
    return sleep_flat_model.classic(verbose=False)


@pytest.fixture(scope="session")
def sleep_ml(sleep_flat_model):
    return sleep_flat_model.classic(method="ML", verbose=False)


@pytest.fixture(scope="session")
def debate_flat_model(debate, toolchain):
    return _compiled(bayesglmm.lmer("sat ~ talk + perf + (1 | group)", data=debate))


@pytest.fixture(scope="session")
def debate_classic(debate_flat_model):
    return debate_flat_model.classic(verbose=False)


@pytest.fixture(scope="session")
def cond_skill_model(debate, toolchain):
    d = debate.astype({"cond": str, "skill": str})  # factors
    return _compiled(bayesglmm.lmer("sat ~ cond * skill + (1 | group)", data=d))


@pytest.fixture(scope="session")
def cond_skill_classic(cond_skill_model):
    return cond_skill_model.classic(verbose=False)


@pytest.fixture(scope="session")
def cbpp():
    import pandas as pd

    d = pd.read_csv(REFERENCE / "cbpp.csv", dtype={"herd": str, "period": str})
    d["failures"] = d["size"] - d["incidence"]
    return d


@pytest.fixture(scope="session")
def cbpp_model(cbpp, toolchain):
    # param="auto": centred (tests/test_laplace.py has the non-centred twin)
    return _compiled(bayesglmm.glmer("cbind(incidence, failures) ~ period + (1 | herd)",
                                     data=cbpp, family="binomial"))


@pytest.fixture(scope="session")
def cbpp_classic(cbpp_model):
    return cbpp_model.classic(verbose=False)


@pytest.fixture(scope="session")
def wine_flat_model(toolchain):
    """ordinal::wine, cumulative logit with a random judge intercept, flat prior: the program
    of tests/test_family_fits.py's wine model (same code and name, so the same cached binary)."""
    import pandas as pd

    wine = pd.read_csv(REFERENCE / "data" / "wine.csv")
    m = bayesglmm.glmer("rating ~ temp + contact + (1 | judge)", wine, family="ordered")
    m.name = "fam_flat_ordered"
    return _compiled(m)


@pytest.fixture(scope="session")
def known_variance_model(toolchain):
    """Test-only program (tests/reference/stan/known_variance.stan, from_stan with the block z
    integrated out): y = mu + b x + tau z[g] + sigma e with sigma, tau known; simulated data
    (seed 5, 15 groups x 4). Returns (model, data dict)."""
    import numpy as np

    rng = np.random.default_rng(5)
    G, m = 15, 4
    g = np.repeat(np.arange(1, G + 1), m)
    x = rng.normal(size=G * m).round(3)
    sigma, tau = 0.8, 0.6
    y = (1.0 + 0.5 * x + tau * rng.normal(size=G)[g - 1] + sigma * rng.normal(size=G * m)).round(4)
    data = {"N": G * m, "G": G, "g": g, "x": x, "y": y, "sigma": sigma, "tau": tau, "s": 2.0}
    m = bayesglmm.from_stan(REFERENCE / "stan" / "known_variance.stan", data, re_blocks=("z",))
    return _compiled(m), data


# ---- bridge sampling / Bayes factors (tests/test_bridge.py, test_bayes_factor.py) -----------
# New distinct programs: 5. the conjugate normal model (from_stan, test_bridge.py);
# 6. program 1 with b[talk] held fixed through data (the restricted model of bayes_factor).


@pytest.fixture(scope="session")
def debate_bf(debate_mcmc):
    """fit.bayes_factor(fixed={"b[talk]": 0}) on the Model A fit (samples program 6)."""
    return debate_mcmc.bayes_factor(fixed={"b[talk]": 0}, verbose=False)


# ---- issue 6: debate Model B, sat ~ talk * perf + (1 | group), normal prior ---------------


@pytest.fixture(scope="session")
def interaction_model(debate):
    return bayesglmm.lmer("sat ~ talk * perf + (1 | group)", data=debate,
                          prior=bayesglmm.prior_normal())


@pytest.fixture(scope="session")
def interaction_map(interaction_model, toolchain):
    interaction_model.compile(verbose=False)
    return interaction_model.optimize(verbose=False)


@pytest.fixture(scope="session")
def interaction_mcmc(interaction_model, toolchain):
    interaction_model.compile(verbose=False)
    return interaction_model.sample(chains=4, warmup=1000, sampling=1000, seed=SEED, verbose=False)


# 7. the JZS two-sample t-test (templates/ttest.stan.j2): the full and the restricted
#    (delta = 0) model are the same program with other data.


@pytest.fixture(scope="session")
def ttest_jzs(debate, toolchain):
    m = bayesglmm.ttest("sat ~ cond", data=debate, prior=bayesglmm.prior_jzs())
    m.compile(verbose=False)
    return m


@pytest.fixture(scope="session")
def ttest_jzs_mcmc(ttest_jzs):
    return ttest_jzs.sample(chains=4, warmup=1000, sampling=1000, seed=SEED, verbose=False)


# 8. lm with prior_rhs() on simulated data (20 coefficients, 3 non-zero): test_shrinkage.py;
#    the debate model of its bridge-sampling check is the same program with other data.


def sparse_formula(k: int = 20) -> str:
    return "y ~ " + " + ".join(f"x{j + 1}" for j in range(k))


def simulate_sparse():
    """N = 100, 20 standard-normal predictors x1..x20, coefficients 1.5, -1.0, 0.8 and 17
    zeros, intercept 3, residual SD 1 (also used by bench/bench_shrinkage.py)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(7)
    X = rng.standard_normal((100, 20))
    beta = np.zeros(20)
    beta[:3] = [1.5, -1.0, 0.8]
    df = pd.DataFrame(X, columns=[f"x{j + 1}" for j in range(20)])
    df["y"] = 3 + X @ beta + rng.normal(0, 1, 100)
    return df, beta


@pytest.fixture(scope="session")
def sparse_data():
    return simulate_sparse()


@pytest.fixture(scope="session")
def rhs_mcmc(sparse_data, toolchain):
    df, _ = sparse_data
    m = bayesglmm.lm(sparse_formula(), data=df, prior=bayesglmm.prior_rhs(),
                     y_range=(float(df.y.min()), float(df.y.max())))
    m.compile(verbose=False)
    return m.sample(seed=SEED, verbose=False)


# 9. lm with prior_ssp() on the sparse data above.


@pytest.fixture(scope="session")
def ssp_mcmc(sparse_data, toolchain):
    df, _ = sparse_data
    m = bayesglmm.lm(sparse_formula(), data=df,
                     prior=bayesglmm.prior_ssp(),
                     y_range=(float(df.y.min()), float(df.y.max())))
    m.compile(verbose=False)
    return m.sample(seed=SEED, verbose=False)


# 10. lm(sat ~ cond) with prior_jzs(): with r = 0.707 * sqrt(p (1 - p)) (p = share of group 2)
#     b / sigma has the Cauchy(0, 0.707) prior of the t-test's delta (program 7).


@pytest.fixture(scope="session")
def jzs_lm_mcmc(debate, toolchain):
    p = float((debate.cond == debate.cond.max()).mean())
    m = bayesglmm.lm("sat ~ cond", data=debate,
                     prior=bayesglmm.prior_jzs(r=0.707 * (p * (1 - p)) ** 0.5))
    m.compile(verbose=False)
    return m.sample(seed=SEED, verbose=False)
