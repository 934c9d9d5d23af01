""":func:`from_stan`: a :class:`Model` for a user-supplied (possibly edited) Stan program, fitted
with the same fit classes; parameters are reported under their Stan names."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .model import Model

__all__ = ["ExternalProgram", "from_stan"]


@dataclass(frozen=True)
class ExternalProgram:
    """A user-supplied Stan program (``from_stan``): no spec, names are Stan's own."""

    code: str
    data: dict[str, Any]
    params: tuple = ()
    re_blocks: tuple[str, ...] = ()
    spec: Any = None
    source: str = ""


def from_stan(
    path: str | os.PathLike,
    data: Mapping[str, Any] | str | os.PathLike | None = None,
    *,
    re_blocks: tuple[str, ...] | list[str] = (),
) -> Model:
    """A Model for a (possibly edited) Stan program, fitted with the same fit classes.

    ``path``: a ``.stan`` file, or a directory written by ``Model.export()`` (then
    ``model.stan`` in it, and ``data.json`` unless ``data`` is given). ``data``: a dict of Stan
    data or a path to a JSON data file. Parameters are reported under their Stan names.
    ``re_blocks``: names of parameters that ``optimize()`` integrates out by the Laplace
    approximation (e.g. ``("z_1",)`` for an exported bayesglmm program); by default none, so
    ``optimize()`` finds the joint mode.

    Parameters
    ----------
    path : str or path
        A ``.stan`` file, or a directory written by :meth:`Model.export` (``model.stan`` in it,
        and ``data.json`` unless ``data`` is given).
    data : dict or str or path, optional
        Stan data as a dict, or the path of a JSON data file.
    re_blocks : tuple of str
        Parameters that ``optimize()`` integrates out by the Laplace approximation.

    Returns
    -------
    Model
        Fitted with the same methods as the formula models; parameters are reported under
        their Stan names.

    Raises
    ------
    FileNotFoundError
        No Stan program at ``path``.
    ValueError
        ``path`` is not a ``.stan`` file.

    Examples
    --------
    >>> m = bayesglmm.from_stan("model.stan", {"N": 3, "y": [1, 2, 3]})  # doctest: +SKIP
    >>> fit = m.sample(seed=1)  # doctest: +SKIP
    """
    if isinstance(re_blocks, str) or not all(isinstance(b, str) for b in re_blocks):
        raise TypeError("re_blocks must be a tuple of Stan parameter names, e.g. ('z_1',)")
    p = Path(path)
    if p.is_dir():
        if data is None and (p / "data.json").exists():
            data = p / "data.json"
        p = p / "model.stan"
    if not p.is_file():
        raise FileNotFoundError(f"no Stan program at {str(p)!r}")
    if p.suffix != ".stan":
        raise ValueError(f"from_stan() expects a .stan file, got {str(p)!r}")
    if data is None:
        data_dict: dict[str, Any] = {}
    elif isinstance(data, Mapping):
        data_dict = dict(data)
    elif isinstance(data, (str, os.PathLike)):
        dp = Path(data)
        if not dp.is_file():
            raise FileNotFoundError(f"no data file at {str(dp)!r}")
        try:
            data_dict = json.loads(dp.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"data file {str(dp)!r} is not valid JSON: {e}") from None
    else:
        raise TypeError("data must be a dict or the path of a JSON data file")
    program = ExternalProgram(code=p.read_text(), data=data_dict, source=str(p),
                              re_blocks=tuple(re_blocks))
    return Model(program, wrapper="from_stan", name="model")
