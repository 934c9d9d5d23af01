"""Post-estimation: bridge sampling (log marginal likelihoods) and Bayes factors on sampled
fits; Type II/III Wald tests and likelihood-ratio tables (``anova``), estimated marginal means
and contrasts (``lsmeans``) on classic, MAP and sampled fits; conditional and simple effects
(``effects``), predictions (``predict``), loo/waic/compare (``loo``)."""

from .anova import anova
from .bayes_factor import BayesFactor, bayes_factor, jeffreys_label
from .bridge import BridgeResult, bridge_sampler
from .effects import ConditionalEffects, SimpleEffects, conditional_effects, simple_effects
from .loo import compare
from .lsmeans import lsmeans
from .predict import coefficients, posterior_predict, predict

__all__ = [
    "BayesFactor",
    "BridgeResult",
    "ConditionalEffects",
    "SimpleEffects",
    "anova",
    "bayes_factor",
    "bridge_sampler",
    "coefficients",
    "compare",
    "conditional_effects",
    "jeffreys_label",
    "lsmeans",
    "posterior_predict",
    "predict",
    "simple_effects",
]
