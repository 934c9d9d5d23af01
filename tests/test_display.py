"""Notebook display and result tables (bayesglmm/core/display.py, issue 19 items 3-4):
``_repr_html_`` shows the same content as the printed form (the text of ``format()`` with its
tables as HTML tables), every result with a table gives ``.to_frame()``, progress bars are shown
in terminals and notebooks only, ``MAPFit.neg_log_posterior``, ``lmer(contrasts=...)``, and
``plot_forest(prob=...)`` for estimate-based fits."""

from __future__ import annotations

import html
import re
import sys
import types

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from test_results import _fake_mcmc, _fake_params, _FakeModel

import bayesglmm
from bayesglmm.core.display import html_repr, in_notebook, show_progress
from bayesglmm.plots import wald_interval
from bayesglmm.results import MAPFit


def _html_text(h: str) -> list[str]:
    """The visible words of an HTML fragment (tags removed, entities decoded)."""
    return html.unescape(re.sub(r"<[^>]+>", " ", h)).split()


def _same_content(obj) -> str:
    h = obj._repr_html_()
    assert _html_text(h) == obj.format().split()
    return h


def _fake_map() -> MAPFit:
    ps = _fake_params(G=2)
    est = np.linspace(0.5, 1.5, len(ps))
    return MAPFit(_FakeModel(), ps, est, est / 10, est - 0.1, est + 0.1, objective=399.6412,
                  log_ml=-410.0234, laplace=True)


def test_fit_html_is_the_printed_form_with_tables():
    for fit in (_fake_mcmc(), _fake_map()):
        h = _same_content(fit)
        assert h.count("<table") == 1 and "<pre" in h
        # one HTML row per printed table row (+ header)
        n = len(fit.summary())
        assert h.count("<tr>") == min(n, 10) + 1


def test_html_escapes_text():
    class Obj:
        def format(self):
            return "a <b> & c"

    assert "&lt;b&gt; &amp; c" in html_repr(Obj())


def test_fit_to_frame_is_summary():
    for fit in (_fake_mcmc(), _fake_map()):
        pd.testing.assert_frame_equal(fit.to_frame(), fit.summary())
        pd.testing.assert_frame_equal(fit.to_frame(inc_random=True),
                                      fit.summary(inc_random=True))


def test_neg_log_posterior_and_objective_alias():
    fit = _fake_map()
    assert fit.neg_log_posterior == fit.objective == pytest.approx(399.6412)
    assert "Negative Log-Posterior: 399.64" in fit.format()


def test_progress_only_in_terminals_and_notebooks(monkeypatch):
    assert show_progress(False) is False
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    assert not in_notebook() and show_progress(True) is False
    # a Jupyter kernel: IPython with a shell that has a kernel
    shell = types.SimpleNamespace(kernel=object())
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: shell))
    assert in_notebook() and show_progress(True) is True
    # plain IPython terminal (no kernel) is not a notebook
    monkeypatch.setitem(sys.modules, "IPython",
                        types.SimpleNamespace(get_ipython=lambda: types.SimpleNamespace()))
    assert not in_notebook()


def test_wald_interval_rescales_on_the_symmetric_scale():
    """95% limits symmetric on the identity (b), log (sigma) and Fisher-z (corr) scales are
    rescaled there by the normal quantile ratio; t(df) rows by the t quantile ratio."""
    z95, z50 = stats.norm.ppf(0.975), stats.norm.ppf(0.75)
    est = np.array([0.3, 0.8, 0.4, 1.0])
    se = np.array([0.05, 0.1, 0.2, 0.2])
    lo = np.array([est[0] - z95 * se[0], est[1] * np.exp(-z95 * se[1]),
                   np.tanh(np.arctanh(est[2]) - z95 * se[2]), est[3] - stats.t.ppf(0.975, 5) * se[3]])
    hi = np.array([est[0] + z95 * se[0], est[1] * np.exp(z95 * se[1]),
                   np.tanh(np.arctanh(est[2]) + z95 * se[2]), est[3] + stats.t.ppf(0.975, 5) * se[3]])
    tab = pd.DataFrame({"estimate": est, "se": se, "lower": lo, "upper": hi,
                        "df": [np.nan, np.nan, np.nan, 5.0]})
    a, b = wald_interval(tab, 0.5)
    np.testing.assert_allclose(a[0], est[0] - z50 * se[0], rtol=1e-12)
    np.testing.assert_allclose(b[1], est[1] * np.exp(z50 * se[1]), rtol=1e-9)
    np.testing.assert_allclose(a[2], np.tanh(np.arctanh(est[2]) - z50 * se[2]), rtol=1e-9)
    np.testing.assert_allclose(b[3], est[3] + stats.t.ppf(0.75, 5) * se[3], rtol=1e-12)
    a95, b95 = wald_interval(tab, 0.95)
    np.testing.assert_array_equal(a95, lo)


def test_lmer_honours_contrasts(debate):
    d = debate.astype({"cond": str})
    f = "sat ~ cond + (1 | group)"
    X_sum = bayesglmm.lmer(f, d).stan_data["X"]
    X_trt = bayesglmm.lmer(f, d, contrasts="treatment").stan_data["X"]
    assert set(np.unique(X_sum)) == {-1.0, 1.0}  # sum-to-zero coding (the default)
    assert set(np.unique(X_trt)) == {0.0, 1.0}  # dummy coding
    with pytest.raises(ValueError, match="contrasts must be 'treatment' or 'sum'"):
        bayesglmm.lmer(f, d, contrasts="helmert")


@pytest.mark.slow
def test_tables_of_anova_lsmeans_effects(cond_skill_classic, debate_map):
    tab = bayesglmm.anova(cond_skill_classic)
    h = _same_content(tab)
    assert "<table" in h
    assert type(tab.to_frame()) is pd.DataFrame
    pd.testing.assert_frame_equal(tab.to_frame(), pd.DataFrame(tab))
    ls = bayesglmm.lsmeans(cond_skill_classic, "cond")
    _same_content(ls)
    assert type(ls.to_frame()) is pd.DataFrame
    from bayesglmm.post.effects import conditional_effects

    ce = conditional_effects(debate_map, "talk")
    h = _same_content(ce)
    assert "<table" in h
    pd.testing.assert_frame_equal(ce.to_frame(), ce.data)
    _same_content(cond_skill_classic)


@pytest.mark.slow
def test_plot_forest_prob_for_map_fits(debate_map):
    import matplotlib.pyplot as plt

    for prob in (0.5, 0.9):
        fig = debate_map.plot_forest(["b[talk]", "sigma"], prob=prob)
        ax = fig.axes[0]
        assert ax.get_xlabel() == f"Estimate with {100 * prob:g}% interval"
        plt.close(fig)
    tab = debate_map.summary(pars=["b[talk]"])
    lo, hi = wald_interval(tab, 0.5)
    e, s = tab["estimate"].iloc[0], tab["se"].iloc[0]
    assert lo[0] == pytest.approx(e - stats.norm.ppf(0.75) * s, rel=1e-6)


def test_ttest_classic_table(debate):
    res = bayesglmm.ttest("sat ~ cond", data=debate).classic()
    h = _same_content(res)
    assert "<table" in h
    pd.testing.assert_frame_equal(res.to_frame(), res.table)
