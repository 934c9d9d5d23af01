"""Post-estimation: bridge sampling (log marginal likelihoods) and Bayes factors on sampled
fits; Type II/III Wald tests and likelihood-ratio tables (``anova``), estimated marginal means
and contrasts (``lsmeans``) on classic, MAP and sampled fits."""

from .anova import anova
from .bayes_factor import BayesFactor, bayes_factor, jeffreys_label
from .bridge import BridgeResult, bridge_sampler
from .lsmeans import lsmeans

__all__ = ["BayesFactor", "BridgeResult", "anova", "bayes_factor", "bridge_sampler",
           "jeffreys_label", "lsmeans"]
