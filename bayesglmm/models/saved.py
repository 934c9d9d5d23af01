"""How models are saved with their fits (:mod:`bayesglmm.persist`): a formula model by the
arguments of the wrapper that built it (the data frame included), a ``from_stan()`` model by its
Stan program, Stan data and options. Loading calls the wrapper (or ``from_stan``'s constructor)
again with them."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from ..persist import Archive, FitFileError, decode, encode, register_model
from .external import ExternalProgram
from .model import Model
from .wrappers import WRAPPERS

__all__: list[str] = []


def _save_formula(model: Model, ar: Archive) -> Any:
    if model._build_args is None:
        raise FitFileError("this model was not built by glmer(), lmer(), glm() or lm(), so it "
                           "cannot be rebuilt on loading")
    accepted = inspect.signature(model._builder).parameters
    return encode({k: v for k, v in model._build_args.items() if k in accepted}, ar,
                  "model.inputs")


def _load_formula(wrapper: str):
    def load(inputs: Any, arrays: dict[str, np.ndarray]) -> Model:
        return WRAPPERS[wrapper](**decode(inputs, arrays))

    return load


def _save_external(model: Model, ar: Archive) -> Any:
    p = model.program
    return {"code": p.code, "source": p.source, "re_blocks": list(p.re_blocks),
            "data": encode(dict(p.data), ar, "model.data")}


def _load_external(inputs: Any, arrays: dict[str, np.ndarray]) -> Model:
    program = ExternalProgram(code=inputs["code"], data=decode(inputs["data"], arrays),
                              source=inputs["source"], re_blocks=tuple(inputs["re_blocks"]))
    return Model(program, wrapper="from_stan", name="model")


for _w in WRAPPERS:
    register_model(_w, _save_formula, _load_formula(_w))
register_model("from_stan", _save_external, _load_external)
