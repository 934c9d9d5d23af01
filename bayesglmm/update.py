"""``Model.update(data=None, prior=None, **options)``: the same model on new data or with a new
prior or option, as lme4's ``update()``.

The model is rebuilt by the wrapper that made it (``glmer``, ``lmer``, ``glm``, ``lm``) with the
changed arguments. When the Stan program is unchanged (new data, new prior hyperparameters),
the new model shares the compiled program of the old one: nothing is compiled. A change of
structure (another formula, family or prior type) gives a new program, compiled on first use
(or taken from the compiled-model cache).
"""

from __future__ import annotations

import inspect
from typing import Any

__all__ = ["update_model"]


def update_model(model: Any, data: Any = None, prior: Any = None, **options: Any):
    """A new :class:`~bayesglmm.Model` like ``model`` with ``data``, ``prior`` or wrapper
    ``options`` replaced (see :meth:`bayesglmm.Model.update`)."""
    from . import models

    if model.wrapper == "from_stan":
        if prior is not None or options:
            raise ValueError("update() of a from_stan() model can only replace its data "
                             "(a dict of Stan data); edit the Stan program for anything else")
        if data is None:
            return _share_compiled(model, models.Model(model.program, wrapper="from_stan",
                                                       name=model.name))
        if not isinstance(data, dict):
            raise TypeError("update(data=...) of a from_stan() model takes a dict of Stan data")
        program = models.ExternalProgram(code=model.program.code, data=dict(data),
                                         source=model.program.source,
                                         re_blocks=model.program.re_blocks)
        return _share_compiled(model, models.Model(program, wrapper="from_stan", name=model.name))
    args = getattr(model, "_build_args", None)
    if args is None:
        raise ValueError("update() needs a model built by glmer(), lmer(), glm(), lm() or "
                         "from_stan()")
    wrapper = getattr(models, model.wrapper)
    accepted = list(inspect.signature(wrapper).parameters)
    unknown = [k for k in options if k not in accepted or k in ("data", "prior")]
    if unknown:
        raise TypeError(f"update(): unknown option(s) {', '.join(unknown)} for "
                        f"{model.wrapper}() (options: {', '.join(a for a in accepted if a not in ('data', 'prior'))})")
    call = {k: v for k, v in args.items() if k in accepted}
    if data is not None:
        call["data"] = data
    if prior is not None:
        call["prior"] = prior
    call.update(options)
    new = wrapper(**call)
    new.name = model.name
    return _share_compiled(model, new)


def _share_compiled(old: Any, new: Any):
    """Give ``new`` the compiled program of ``old`` when their Stan code is the same."""
    if old._compiled is not None and new.stan_code == old.stan_code:
        new._compiled = old._compiled
    return new
