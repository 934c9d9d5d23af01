"""bayesglmm: hierarchical models and GLMMs with lme4-style formulas, fitted through
generated, readable Stan programs (NUTS, MAP with Laplace, variational, classical)."""

__version__ = "0.1.0"
