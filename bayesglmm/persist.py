"""Saving and loading fits: ``fit.save(path)`` and :func:`load`.

A saved fit is one zip file holding only data, never code:

* ``manifest.json``: the file format and its version, the versions of bayesglmm, Python, numpy,
  pandas, cmdstanpy and Stan that wrote it, the kind of fit and its settings (seed, chains, ...),
  and the model's *inputs* (the wrapper, formula, family, prior and options, in a tagged JSON
  form);
* ``arrays.npz``: numpy arrays (the data frame's columns, the draws or estimates), read back with
  ``allow_pickle=False``;
* ``model.stan``: the Stan program.

Loading rebuilds the model from its inputs exactly as the wrapper built it, checks that the
rebuilt Stan program and Stan data are the saved ones (else the file is from an incompatible
version and a clear error says so), then rebuilds the fit from the saved draws or estimates. A
crafted file can fail to load; it cannot run code (no pickle, no ``eval``).

The fit classes and models register how they are saved (:func:`register_fit`,
:func:`register_model`), so this module imports nothing of the package. Writing is atomic: the
file is written next to its destination and renamed into place.
"""

from __future__ import annotations

import io
import json
import math
import os
import platform
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["FORMAT_VERSION", "FitFileError", "Archive", "cached_fit", "fit_path", "load",
           "register_fit", "register_model", "save_fit"]

FORMAT = "bayesglmm-fit"
FORMAT_VERSION = 1
SUFFIX = ".bglmm"
_MEMBERS = ("manifest.json", "arrays.npz", "model.stan")


class FitFileError(ValueError):
    """A file that is not a bayesglmm fit, or one this version cannot read."""


@dataclass
class Archive:
    """What is written: JSON metadata, named arrays and the Stan program."""

    meta: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    stan_code: str = ""

    def put(self, name: str, value: Any) -> str:
        arr = np.asarray(value)
        if arr.dtype == object:
            raise FitFileError(f"cannot save {name!r}: an array of Python objects")
        self.arrays[name] = arr
        return name


# --------------------------------------------------------------------------- registries

# kind -> (class, saver(fit, archive) -> settings dict, loader(model, settings, arrays) -> fit)
_FITS: dict[str, tuple[type, Callable, Callable]] = {}
# wrapper -> (saver(model, archive) -> dict, loader(dict, arrays) -> model)
_MODELS: dict[str, tuple[Callable, Callable]] = {}


def register_fit(kind: str, cls: type, saver: Callable, loader: Callable) -> None:
    """Declare how fits of class ``cls`` are saved (``kind`` names them in the file)."""
    _FITS[kind] = (cls, saver, loader)


def register_model(wrapper: str, saver: Callable, loader: Callable) -> None:
    """Declare how models made by ``wrapper`` ("glmer", "from_stan", "ttest", ...) are saved."""
    _MODELS[wrapper] = (saver, loader)


def _fit_kind(fit: Any) -> str:
    for kind, (cls, _, _) in _FITS.items():  # the most derived registered class wins
        if type(fit) is cls:
            return kind
    raise FitFileError(f"saving a {type(fit).__name__} is not supported")


# --------------------------------------------------------------------------- values


def encode(value: Any, ar: Archive, name: str) -> Any:
    """A JSON form of an argument value; arrays and data frames go into ``ar.arrays``."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if math.isfinite(v) else {"__float__": repr(v)}
    if isinstance(value, tuple):
        return {"__tuple__": [encode(v, ar, f"{name}.{i}") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [encode(v, ar, f"{name}.{i}") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {"__dict__": [[encode(k, ar, f"{name}.k{i}"), encode(v, ar, f"{name}.{i}")]
                             for i, (k, v) in enumerate(value.items())]}
    if isinstance(value, pd.DataFrame):
        return {"__frame__": encode_frame(value, ar, name)}
    if isinstance(value, (np.ndarray, pd.Series)):
        if isinstance(value, pd.Series) or value.dtype == object:
            return {"__series__": _encode_column(pd.Series(value), ar, name)}
        return {"__array__": ar.put(name, value)}
    if is_dataclass(value) and not isinstance(value, type) and type(value).__name__ == "Prior":
        return {"__prior__": {f.name: encode(getattr(value, f.name), ar, f"{name}.{f.name}")
                              for f in fields(value)}}
    if hasattr(value, "name") and type(value).__name__ == "Family":
        return value.name
    raise FitFileError(f"cannot save the argument {name!r}: a {type(value).__name__}")


def decode(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    """Inverse of :func:`encode` (unknown tags are errors, never code)."""
    if isinstance(value, list):
        return [decode(v, arrays) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) != 1:
        raise FitFileError("corrupt value in the manifest")
    (tag, v), = value.items()
    if tag == "__float__":
        return float(v)
    if tag == "__tuple__":
        return tuple(decode(x, arrays) for x in v)
    if tag == "__dict__":
        return {_hashable(decode(k, arrays)): decode(x, arrays) for k, x in v}
    if tag == "__frame__":
        return decode_frame(v, arrays)
    if tag == "__series__":
        return _decode_column(v, arrays).to_numpy()
    if tag == "__array__":
        return _array(arrays, v)
    if tag == "__prior__":
        from .priors import Prior

        kw = {k: decode(x, arrays) for k, x in v.items()}
        return Prior(**kw)
    raise FitFileError(f"unknown entry {tag!r} in the manifest")


def _hashable(v: Any) -> Any:
    return tuple(_hashable(x) for x in v) if isinstance(v, list) else v


def _array(arrays: dict[str, np.ndarray], name: Any) -> np.ndarray:
    if not isinstance(name, str) or name not in arrays:
        raise FitFileError(f"the file lacks the array {name!r}")
    return arrays[name]


def _encode_column(s: pd.Series, ar: Archive, name: str) -> dict[str, Any]:
    dtype = s.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        cats = _encode_column(pd.Series(dtype.categories), ar, f"{name}.categories")
        return {"kind": "category", "codes": ar.put(f"{name}.codes", s.cat.codes.to_numpy()),
                "categories": cats, "ordered": bool(dtype.ordered)}
    if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype):
        return {"kind": "time", "dtype": str(dtype),
                "values": ar.put(name, s.to_numpy().view("int64"))}
    if isinstance(dtype, np.dtype) and dtype.kind in "biuf":
        return {"kind": "numeric", "values": ar.put(name, s.to_numpy())}
    if pd.api.types.is_extension_array_dtype(dtype) and (
            pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)):
        return {"kind": "nullable", "dtype": str(dtype),
                "values": ar.put(name, s.astype("float64").to_numpy()),
                "missing": ar.put(f"{name}.missing", s.isna().to_numpy())}
    missing = s.isna().to_numpy()
    present = s[~missing]
    types = {type(v) for v in present}
    if types <= {str}:
        return {"kind": "text", "dtype": str(dtype),
                "values": ar.put(name, np.asarray(s.where(~missing, "").astype(str),
                                                  dtype=str)),
                "missing": ar.put(f"{name}.missing", missing)}
    if types <= {bool, np.bool_}:
        return {"kind": "bool_object", "values": ar.put(name, s.where(~missing, False)
                                                            .astype(bool).to_numpy()),
                "missing": ar.put(f"{name}.missing", missing)}
    raise FitFileError(f"cannot save the column {s.name!r} of the data: it mixes "
                       f"{', '.join(sorted(t.__name__ for t in types))} values")


def _decode_column(c: dict[str, Any], arrays: dict[str, np.ndarray]) -> pd.Series:
    kind = c.get("kind")
    if kind == "category":
        cats = _decode_column(c["categories"], arrays)
        codes = _array(arrays, c["codes"])
        return pd.Series(pd.Categorical.from_codes(codes, categories=cats,
                                                   ordered=bool(c["ordered"])))
    if kind == "time":
        return pd.Series(_array(arrays, c["values"]).view(np.dtype(c["dtype"])))
    if kind == "numeric":
        return pd.Series(_array(arrays, c["values"]))
    if kind == "nullable":
        s = pd.Series(_array(arrays, c["values"]))
        s[_array(arrays, c["missing"])] = np.nan
        return s.astype(c["dtype"])
    if kind in ("text", "bool_object"):
        vals = _array(arrays, c["values"])
        s = pd.Series(vals.tolist(), dtype=c.get("dtype", "object"))
        miss = _array(arrays, c["missing"])
        if miss.any():
            s = s.astype(object)
            s[miss] = None
            if c.get("dtype", "object") != "object":
                s = s.astype(c["dtype"])
        return s
    raise FitFileError(f"unknown column kind {kind!r}")


def encode_frame(df: pd.DataFrame, ar: Archive, name: str) -> dict[str, Any]:
    """Columns of ``df`` as arrays (text, numbers, categories, dates; no Python objects)."""
    cols = []
    for i, col in enumerate(df.columns):
        if not isinstance(col, (str, int, float)):
            raise FitFileError(f"cannot save the data: column name {col!r} is not a string")
        cols.append([col, _encode_column(df.iloc[:, i], ar, f"{name}.c{i}")])
    return {"columns": cols, "index": _encode_column(df.index.to_series(), ar, f"{name}.index")}


def decode_frame(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> pd.DataFrame:
    index = pd.Index(_decode_column(meta["index"], arrays))
    data = {col: _decode_column(c, arrays).set_axis(index) for col, c in meta["columns"]}
    return pd.DataFrame(data, index=index, columns=[col for col, _ in meta["columns"]])


# --------------------------------------------------------------------------- models


def save_model(model: Any, ar: Archive) -> dict[str, Any] | None:
    if model is None:
        return None
    wrapper = getattr(model, "wrapper", None)
    if wrapper not in _MODELS:
        raise FitFileError(f"saving a fit of a {wrapper!r} model is not supported")
    ar.stan_code = model.stan_code
    meta = {"wrapper": wrapper, "name": model.name, "inputs": _MODELS[wrapper][0](model, ar),
            "backend": getattr(model, "backend", None)}
    meta["stan_data"] = encode(dict(model.program.data), ar, "stan_data")
    return meta


def load_model(meta: dict[str, Any] | None, arrays: dict[str, np.ndarray], stan_code: str,
               versions: dict[str, Any], where: str = "this file") -> Any:
    if meta is None:
        return None
    wrapper = meta.get("wrapper")
    if wrapper not in _MODELS:
        raise FitFileError(f"unknown kind of model {wrapper!r}")
    try:
        model = _MODELS[wrapper][1](meta["inputs"], arrays)
    except FitFileError:
        raise
    except (TypeError, KeyError, ValueError, IndexError, AttributeError) as e:
        raise FitFileError(f"the model saved in {where} cannot be rebuilt from its inputs "
                           f"(a corrupt or crafted file?): {type(e).__name__}: {e}") from None
    model.name = meta["name"]
    saved = meta.get("backend")  # the Stan program the saved fit ran: generic or specific
    if saved is not None and getattr(model, "backend", saved) != saved:
        try:
            model.use_backend(saved)
        except ValueError as e:
            raise FitFileError(f"the fit saved in {where} ran the {saved} Stan program, which "
                               f"this version cannot run for its model: {e}") from None
    why = _differs(model, stan_code, decode(meta["stan_data"], arrays))
    if why:
        __version__ = _version()
        raise FitFileError(
            f"this fit was saved by bayesglmm {versions.get('bayesglmm')}; rebuilt by version "
            f"{__version__} its model has {why}. Load it with bayesglmm "
            f"{versions.get('bayesglmm')} (or refit the model).")
    return model


def _differs(model: Any, code: str, data: dict[str, Any]) -> str:
    if model.stan_code != code:
        return "another Stan program"
    new = model.program.data
    if set(new) != set(data):
        return "other Stan data"
    for k, v in data.items():
        a, b = np.asarray(new[k]), np.asarray(v)
        if a.shape != b.shape or not np.array_equal(a, b, equal_nan=a.dtype.kind == "f"):
            return f"other Stan data ({k})"
    return ""


# --------------------------------------------------------------------------- files


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("bayesglmm")
    except PackageNotFoundError:  # pragma: no cover - not installed
        return "unknown"


def _versions(model: Any) -> dict[str, Any]:
    __version__ = _version()
    out: dict[str, Any] = {"bayesglmm": __version__, "python": platform.python_version(),
                           "numpy": np.__version__, "pandas": pd.__version__}
    try:
        import cmdstanpy

        out["cmdstanpy"] = cmdstanpy.__version__
    except ImportError:  # pragma: no cover
        pass
    tc = getattr(getattr(model, "_compiled", None), "toolchain", None)
    out["stan"] = getattr(tc, "cmdstan_version", None)
    return out


def fit_path(path: str | os.PathLike) -> Path:
    """``path`` with the ``.bglmm`` suffix added when it has none."""
    p = Path(path).expanduser()
    return p if p.suffix else p.with_suffix(SUFFIX)


def save_fit(fit: Any, path: str | os.PathLike) -> Path:
    """Write ``fit`` to ``path`` (``.bglmm`` added when there is no suffix); returns the path.

    Raises :class:`FitFileError` when the fit or its model cannot be saved, before anything is
    written.
    """
    kind = _fit_kind(fit)
    ar = Archive()
    model = getattr(fit, "model", None)
    model_meta = save_model(model, ar)
    settings = _FITS[kind][1](fit, ar)
    ar.meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "versions": _versions(model),
               "kind": kind, "model": model_meta, "fit": settings}
    if model_meta is not None:  # never write a file that would not load
        try:
            load_model(model_meta, ar.arrays, ar.stan_code, ar.meta["versions"])
        except FitFileError as e:
            raise FitFileError(
                "cannot save this fit: its model cannot be rebuilt from the arguments it was "
                f"built with (was the data frame changed after the model was built?): {e}"
            ) from None
    return _write(fit_path(path), ar)


def _write(path: Path, ar: Archive) -> Path:
    buf = io.BytesIO()
    np.savez(buf, **ar.arrays)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
            z.writestr("manifest.json", json.dumps(ar.meta, indent=1, allow_nan=False))
            z.writestr("arrays.npz", buf.getvalue())
            z.writestr("model.stan", ar.stan_code)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic: the old file or the new one, never half of one
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def read(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray], str]:
    """(manifest, arrays, Stan code) of a saved fit, checked for format and version."""
    p = Path(path).expanduser()
    if not p.is_file() and p.suffix == "" and fit_path(p).is_file():
        p = fit_path(p)
    if not p.is_file():
        raise FileNotFoundError(f"no saved fit at {str(p)!r}")
    try:
        with zipfile.ZipFile(p) as z:
            names = set(z.namelist())
            if not set(_MEMBERS) <= names:
                raise FitFileError(f"{p} is not a bayesglmm fit file (members {sorted(names)})")
            meta = json.loads(z.read("manifest.json"))
            code = z.read("model.stan").decode()
            with np.load(io.BytesIO(z.read("arrays.npz")), allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError, ValueError,
            KeyError, OSError) as e:
        if isinstance(e, (FitFileError, FileNotFoundError)):
            raise
        raise FitFileError(f"{p} is not a readable bayesglmm fit file: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise FitFileError(f"{p} is not a bayesglmm fit file")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        __version__ = _version()
        raise FitFileError(
            f"{p} was written by bayesglmm {meta.get('versions', {}).get('bayesglmm')} in file "
            f"format {version}; this bayesglmm ({__version__}) reads format {FORMAT_VERSION} "
            "and older: upgrade bayesglmm to load it.")
    return meta, arrays, code


def load(path: str | os.PathLike) -> Any:
    """Load a fit saved by ``fit.save(path)``.

    The model is rebuilt from the saved inputs (its compiled program comes from the cache, or
    is compiled again on first use), so every method of the fit works as before saving.

    Parameters
    ----------
    path : str or path
        The file (``.bglmm`` is tried when ``path`` has no suffix).

    Returns
    -------
    MCMCFit, MAPFit, ClassicFit, VariationalFit or TTestClassic

    Raises
    ------
    FitFileError
        Not a bayesglmm fit, corrupt, or written by an incompatible version (the message names
        the versions).

    Examples
    --------
    >>> fit.save("debate_fit")  # doctest: +SKIP
    >>> fit = bayesglmm.load("debate_fit")  # doctest: +SKIP
    """
    meta, arrays, code = read(path)
    kind = meta.get("kind")
    if kind not in _FITS:
        raise FitFileError(f"unknown kind of fit {kind!r} in {path}")
    model = load_model(meta.get("model"), arrays, code, meta.get("versions", {}), str(path))
    return _FITS[kind][2](model, meta.get("fit") or {}, arrays)


def cached_fit(model: Any, file: str | os.PathLike, file_refit: str, settings: dict[str, Any],
               run: Callable[[], Any]) -> Any:
    """brms's ``file=``: the fit saved in ``file`` if it matches ``model`` and ``settings``
    (``file_refit="on_change"``), always (``"never"``) or never (``"always"``); otherwise
    ``run()`` and save its result to ``file``."""
    if file_refit not in ("on_change", "always", "never"):
        raise ValueError(f"file_refit must be 'on_change', 'always' or 'never', not {file_refit!r}")
    path = fit_path(file)
    if path.exists() and file_refit != "always":
        fit = load(path)
        if file_refit == "never":
            return fit
        old = getattr(fit, "saved_settings", {})
        if (not _differs(model, fit.model.stan_code, fit.model.program.data)
                and all(old.get(k) == v for k, v in settings.items() if v is not None)):
            return fit
    fit = run()
    save_fit(fit, path)
    return fit
