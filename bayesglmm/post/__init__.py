"""Post-estimation on sampled fits: bridge sampling (log marginal likelihoods) and Bayes
factors."""

from .bridge import BridgeResult, bridge_sampler

__all__ = ["BridgeResult", "bridge_sampler"]
