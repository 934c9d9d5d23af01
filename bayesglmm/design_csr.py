"""The fixed-effect design of the Stan programs in CSR (compressed sparse row) form.

A design made mostly of dummy columns (a factor with many levels as a fixed effect) is mostly
zeros. The dense product ``X * beta`` (and the ``*_glm`` densities) cost N x K operations per
gradient; ``csr_matrix_times_vector`` costs the non-zeros. When :func:`use_csr` says so, the
generated program (:mod:`bayesglmm.codegen`) reads the design as Stan data ``nnz_X``, ``X_w``
(values, row by row), ``X_v`` (1-based columns) and ``X_u`` (1-based start of each row in
``X_w``; ``N + 1`` entries), which are what :func:`scipy.sparse.csr_matrix` holds with 1 added
to the indices (Stan's ``csr_extract``), and computes the linear predictor with a sparse
product; the log density is the same to rounding. ``ModelSpec.sparse_X`` records the choice.

The rule, from the gradient timings of ``bench/results/sparse.json`` (key ``crossover``;
20,000 rows, K columns, r non-zeros per row on average, i.e. a share of zeros of 1 - r / K):
the CSR gradient over the dense ``normal_id_glm`` one is close to (45 + 4.5 r) / K (0.53 at
K = 100, r = 2; 1.10 at K = 50, r = 2; 1.40 at K = 100, r = 21), and the ``bernoulli_logit_glm``
ratio is nearer 1 on both sides (0.68, 1.04, 1.34). The CSR form is used when

- K >= :data:`FIXED_COLUMNS` + :data:`COLUMNS_PER_NONZERO` r (60 + 6 r: a predicted ratio of
  0.75 or less; e.g. K >= 72 for a factor next to one covariate, r = 2), and
- N K >= :data:`MIN_CELLS`: such a model is not run by the precompiled generic programs (they
  read a dense design), so it compiles its own program once (tens of seconds); below that size
  a gradient costs about a millisecond or less either way and the compile would not pay for
  itself in a sampling run.

Not for category-specific families (their ``beta`` is a matrix) nor for priors whose
transformed data use the design (the JZS prior's ``crossprod(Xc)``).

Every piece of Python that reads the design from a program's data goes through
:func:`dense_design`, :func:`design_matrix` (which keeps the CSR form sparse) or
:func:`cut_rows`, which accept either form.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["COLUMNS_PER_NONZERO", "CSR_KEYS", "FIXED_COLUMNS", "MIN_CELLS", "csr_data",
           "cut_rows", "dense_design", "design_matrix", "has_csr", "use_csr"]

#: the CSR form needs at least FIXED_COLUMNS + COLUMNS_PER_NONZERO * (non-zeros per row) columns
FIXED_COLUMNS = 60
COLUMNS_PER_NONZERO = 6
#: smallest N x K for the CSR form (16 MB of doubles, e.g. 20,000 rows x 100 columns)
MIN_CELLS = 2_000_000
#: the Stan data of the CSR form
CSR_KEYS = ("nnz_X", "X_w", "X_v", "X_u")

_USES_X = re.compile(r"(?<![\w.])Xc?(?![\w])")


def use_csr(X: np.ndarray, family: Any, prior_terms: tuple[str, ...] = ()) -> bool:
    """True when the generated program takes the design ``X`` (N x K, no intercept column) in
    CSR form (see the module docstring for the rule).

    Parameters
    ----------
    X : numpy.ndarray
        The fixed-effect design.
    family : Family
        The model's family (category-specific families keep the dense form).
    prior_terms : tuple of str
        The prior terms of the model (a term whose transformed data use the design keeps the
        dense form).
    """
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] < FIXED_COLUMNS or X.size < MIN_CELLS:
        return False
    if getattr(family, "category_specific", False):
        return False
    from .priors.table import PRIOR_TABLE

    rows = {r.key: r for r in PRIOR_TABLE}
    if any(_USES_X.search(line) for t in prior_terms if t in rows for line in rows[t].tdata):
        return False
    per_row = float(np.count_nonzero(X)) / X.shape[0]
    return X.shape[1] >= FIXED_COLUMNS + COLUMNS_PER_NONZERO * per_row


def csr_data(X: np.ndarray) -> dict[str, Any]:
    """The Stan data of ``X`` in CSR form: ``nnz_X``, ``X_w``, ``X_v``, ``X_u`` (1-based)."""
    from scipy import sparse

    return _stan(sparse.csr_matrix(np.asarray(X, dtype=float)))


def _stan(S: Any) -> dict[str, Any]:
    """A scipy CSR matrix as Stan data (1-based indices, columns sorted within rows)."""
    S.sort_indices()
    return {"nnz_X": int(S.nnz), "X_w": np.asarray(S.data, dtype=float),
            "X_v": S.indices.astype(np.int64) + 1, "X_u": S.indptr.astype(np.int64) + 1}


def has_csr(data: Mapping[str, Any]) -> bool:
    """True when a program's data hold the design in CSR form."""
    return "X_w" in data and "X" not in data


def _csr(data: Mapping[str, Any]):
    from scipy import sparse

    N, K = int(data["N"]), int(data["K"])
    return sparse.csr_matrix((np.asarray(data["X_w"], dtype=float),
                              np.asarray(data["X_v"], dtype=np.int64) - 1,
                              np.asarray(data["X_u"], dtype=np.int64) - 1), shape=(N, K))


def dense_design(data: Mapping[str, Any]) -> np.ndarray:
    """The design (N x K, dense) of a program's data, in either form (empty when it has none)."""
    if has_csr(data):
        return _csr(data).toarray()
    if "X" not in data:
        return np.zeros((int(data.get("N", 0)), 0))
    return np.asarray(data["X"], dtype=float).reshape(int(data["N"]), -1)


def design_matrix(data: Mapping[str, Any]) -> Any:
    """The design (N x K) of a program's data as it is held: a scipy CSR matrix for the CSR
    form (not densified), else the dense array (as :func:`dense_design`)."""
    return _csr(data) if has_csr(data) else dense_design(data)


def cut_rows(data: Mapping[str, Any], rows: np.ndarray | slice) -> dict[str, Any]:
    """The CSR keys of ``data`` for the rows ``rows`` of the design (empty when the data hold
    the dense form)."""
    if not has_csr(data):
        return {}
    return _stan(_csr(data)[rows])
