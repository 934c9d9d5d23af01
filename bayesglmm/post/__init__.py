"""Post-estimation on sampled fits: bridge sampling (log marginal likelihoods) and Bayes
factors."""

from .bayes_factor import BayesFactor, bayes_factor, jeffreys_label
from .bridge import BridgeResult, bridge_sampler

__all__ = ["BayesFactor", "BridgeResult", "bayes_factor", "bridge_sampler", "jeffreys_label"]
