"""``Model.update(data=None, prior=None, **options)``: the same model on new data or with a new
prior or option, as lme4's ``update()``.

The model is rebuilt by the wrapper that made it (``glmer``, ``lmer``, ``glm``, ``lm``) with the
changed arguments. When the Stan program is unchanged (new data, new prior hyperparameters),
the new model shares the compiled program of the old one: nothing is compiled. A change of
structure (another formula, family or prior type) gives a new program, compiled on first use
(or taken from the compiled-model cache). Unless ``param=`` or the formula is given, the new
model keeps the parameterisation of the group-level effects (centred or not, per term) that
this model's ``param=`` resolved to, so that new data run the same program.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from typing import Any

__all__ = ["update_model"]


def update_model(model: Any, data: Any = None, prior: Any = None, **options: Any):
    """A new model like ``model`` with ``data``, ``prior`` or wrapper ``options`` replaced (see
    :meth:`bayesglmm.Model.update`)."""
    if model.wrapper == "from_stan":
        if prior is not None or options:
            raise ValueError("update() of a from_stan() model can only replace its data "
                             "(a dict of Stan data); edit the Stan program for anything else")
        if data is not None and not isinstance(data, Mapping):
            raise TypeError("update(data=...) of a from_stan() model takes a dict of Stan data, "
                            f"not {type(data).__name__}")
        program = model.program if data is None else dataclasses.replace(model.program,
                                                                          data=dict(data))
        return share_compiled(model, type(model)(program, wrapper="from_stan", name=model.name))
    builder, args = getattr(model, "_builder", None), getattr(model, "_build_args", None)
    if builder is None or args is None:
        raise ValueError("update() needs a model built by glmer(), lmer(), glm(), lm() or "
                         "from_stan()")
    accepted = [a for a in inspect.signature(builder).parameters if a not in ("data", "prior")]
    unknown = [k for k in options if k not in accepted]
    if unknown:
        raise TypeError(f"update(): unknown option(s) {', '.join(unknown)} for "
                        f"{model.wrapper}() (its options: {', '.join(accepted)})")
    call = {k: v for k, v in args.items() if k in accepted or k in ("data", "prior")}
    if data is not None:
        call["data"] = data
    if prior is not None:
        call["prior"] = prior
    call.update(options)
    if "param" in accepted and "param" not in options and "formula" not in options:
        # the same program: keep the parameterisation this model resolved to ("auto" could
        # choose differently for other data; kfold carries draws over in these coordinates)
        resolved = getattr(model, "re_param", None)
        if resolved:
            call["param"] = dict(resolved)
    new = builder(**call)
    new.name = model.name
    return share_compiled(model, new)


def share_compiled(old: Any, new: Any):
    """Give ``new`` the compiled program of ``old`` when their Stan code is the same."""
    if old._compiled is not None and new.run_program.code == old.run_program.code:
        new._compiled = old._compiled
    return new
