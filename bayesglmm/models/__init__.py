"""The model wrappers (``glmer``, ``lmer``, ``glm``, ``lm``), the :class:`Model` object they
return, and :func:`from_stan` for running an edited Stan program with the same fit classes.

This is the package's facade: nothing else in the package imports it. A Model holds one
generated Stan program (code, data, parameter names) and fits it::

    m = bayesglmm.lmer("sat ~ talk + perf + (1 | group)", data=df, prior=bayesglmm.prior_normal())
    m.print_code()
    fit = m.sample(chains=4, warmup=1000, sampling=1000, seed=1)
    fit.summary()
    mode = m.optimize()

Modules: ``model`` (:class:`Model`: the program, its compilation, export, refits), ``fitting``
(its fit methods: ``sample``, ``optimize``, ``variational``, ``pathfinder``, ``classic``),
``wrappers`` (``glmer``, ``lmer``, ``glm``, ``lm``), ``external`` (:func:`from_stan`,
:class:`ExternalProgram`).
"""

from . import saved  # noqa: F401  (registers how models are saved)
from .external import ExternalProgram, from_stan
from .model import Model
from .wrappers import glm, glmer, lm, lmer

__all__ = ["ExternalProgram", "Model", "from_stan", "glm", "glmer", "lm", "lmer"]
