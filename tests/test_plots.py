"""Plots (features §11; issue 6): each renders to PNG with user-facing names and the expected
number of panels; loo/waic/compare through arviz."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from scipy.special import logsumexp

import bayesglmm
from bayesglmm.plots import select_names


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def _panels(fig):
    return [a for a in fig.axes if a.get_visible()]


@pytest.mark.slow
def test_select_names_patterns(interaction_mcmc):
    f = interaction_mcmc
    assert select_names(f, ["b[talk]", "sd[*]"]) == ["b[talk]", "sd[group:Int]"]
    assert select_names(f, "b") == ["b[talk]", "b[perf]", "b[talk:perf]"]
    assert select_names(f) == ["Intercept", "b[talk]", "b[perf]", "b[talk:perf]", "sigma",
                               "sd[group:Int]"]
    with pytest.raises(ValueError, match="no parameter matches 'tau'"):
        select_names(f, "tau")


@pytest.mark.slow
def test_every_plot_renders_with_user_names(interaction_mcmc, interaction_map):
    f = interaction_mcmc
    fig = bayesglmm.plot_trace(f, pars=["b[talk]", "sd[*]"])
    assert len(_panels(fig)) == 4  # density + trace per variable
    assert [a.get_title() for a in _panels(fig)] == ["b[talk]"] * 2 + ["sd[group:Int]"] * 2
    assert _png(fig)[:4] == b"\x89PNG"

    fig = f.plot_dens("b")
    assert [a.get_title() for a in _panels(fig)] == ["b[talk]", "b[perf]", "b[talk:perf]"]
    assert _png(fig)

    fig = f.plot_acf("sigma")
    assert [a.get_title() for a in _panels(fig)] == [f"sigma, chain {c}" for c in (1, 2, 3, 4)]
    assert _png(fig)

    fig = f.plot_forest(prob=0.9)
    (ax,) = _panels(fig)
    labels = {t.get_text() for t in ax.get_yticklabels()}
    assert {"Intercept", "b[talk]", "b[talk:perf]", "sigma", "sd[group:Int]"} <= labels
    assert _png(fig)

    fig = f.plot_pairs(["b[talk]", "b[perf]", "sigma"])
    panels = _panels(fig)
    assert len(panels) == 3  # lower triangle of a 3-variable scatter matrix
    assert {a.get_xlabel() for a in panels} - {""} == {"b[talk]", "b[perf]"}
    assert _png(fig)

    fig = f.plot_ppc(num_draws=50, seed=1)
    (ax,) = _panels(fig)
    assert ax.get_xlabel() == "sat" and len(ax.lines) >= 50
    assert _png(fig)

    fig = interaction_map.plot_forest()
    (ax,) = _panels(fig)
    assert [t.get_text() for t in ax.get_yticklabels()][:2] == ["Intercept", "b[talk]"]
    assert _png(fig)
    with pytest.raises(ValueError, match="needs posterior draws"):
        interaction_map.plot_trace()


@pytest.mark.slow
def test_waic_loo_compare(interaction_mcmc, debate_mcmc):
    ll = interaction_mcmc._log_lik.reshape(-1, 300)
    lppd = np.sum(logsumexp(ll, axis=0) - np.log(ll.shape[0]))
    p_waic = np.sum(ll.var(axis=0))  # arviz: variance with divisor S (R loo: S - 1)
    w = interaction_mcmc.waic()
    assert w["elpd_waic"] == pytest.approx(lppd - p_waic, rel=1e-10)
    lo = interaction_mcmc.loo()
    assert np.all(lo["pareto_k"] < 0.7) and abs(lo["elpd_loo"] - w["elpd_waic"]) < 5
    tab = bayesglmm.compare(interaction=interaction_mcmc, additive=debate_mcmc)
    # the interaction b[talk:perf] is ~5 SEs from 0: the interaction model predicts better
    assert tab.index[0] == "interaction" and tab.loc["additive", "elpd_diff"] > 0
    with pytest.raises(ValueError, match="at least two"):
        bayesglmm.compare(interaction_mcmc)
