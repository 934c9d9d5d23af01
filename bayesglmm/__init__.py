"""bayesglmm: hierarchical models and GLMMs with lme4-style formulas, fitted through
generated, readable Stan programs (NUTS, MAP with Laplace, variational, classical)."""

__version__ = "0.1.0"

from . import persist_fits  # noqa: F401  (registers how fits are saved)
from .batch import BatchResult, fit_many
from .datasets import load_debate, load_sleepstudy, load_training, load_wine
from .kfold import KFoldResult, kfold
from .models import Model, from_stan, glm, glmer, lm, lmer
from .persist import FitFileError, load
from .plots import plot_acf, plot_dens, plot_forest, plot_pairs, plot_ppc, plot_trace
from .post import (
    anova,
    bayes_factor,
    bridge_sampler,
    compare,
    conditional_effects,
    lsmeans,
    simple_effects,
)
from .priors import prior_flat, prior_jzs, prior_normal, prior_rhs, prior_ssp, prior_weak
from .results import MAPFit, MCMCFit
from .results_classic import ClassicFit
from .ttest import ttest

__all__ = [
    "anova",
    "BatchResult",
    "fit_many",
    "KFoldResult",
    "kfold",
    "lsmeans",
    "ClassicFit",
    "FitFileError",
    "MAPFit",
    "MCMCFit",
    "Model",
    "__version__",
    "bayes_factor",
    "bridge_sampler",
    "compare",
    "conditional_effects",
    "from_stan",
    "glm",
    "glmer",
    "lm",
    "lmer",
    "load",
    "load_debate",
    "load_sleepstudy",
    "load_training",
    "load_wine",
    "plot_acf",
    "plot_dens",
    "plot_forest",
    "plot_pairs",
    "plot_ppc",
    "plot_trace",
    "prior_flat",
    "prior_jzs",
    "prior_normal",
    "prior_rhs",
    "prior_ssp",
    "prior_weak",
    "simple_effects",
    "ttest",
]
