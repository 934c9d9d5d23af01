"""The fixed-effect cross-products of the exact LMM path, dense or sparse.

The exact path (:mod:`bayesglmm.inference.lmm`) needs Z'X1, X1'X1 and X1'y for the fixed-effect
design X1 = [1, Xc] (the intercept column when the model has one, then the design columns,
centred when the program centres them). A design made mostly of dummy columns (a factor with
hundreds of levels as a fixed effect) is mostly zeros: its dense products cost N K^2 operations
and the centred copy N K doubles of memory. Such a design is detected and handled as a sparse
matrix: the products of its mostly-zero columns are formed from their CSR matrix and centring
is applied to the products (X'X - N m m', Z'X - Z'1 m', X'y - m 1'y with m the column means),
so no centred copy of them is built; its other columns (covariates) are centred as columns, as
in the dense path, which keeps the digits a large column mean would cancel.

Sparse means: at least :data:`SPARSE_MIN_COLUMNS` columns and a share of zeros of at least
:data:`SPARSE_ZERO_SHARE` (0.9: a factor with 10 or more levels gives 1 - 1/levels >= 0.9 over
its dummy columns). Results agree with the dense products to rounding (tests compare them to
1e-10).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse

__all__ = ["SPARSE_MIN_COLUMNS", "SPARSE_ZERO_SHARE", "fixed_crossproducts", "is_sparse"]

#: smallest share of zero entries for which a design is handled as sparse
SPARSE_ZERO_SHARE = 0.9
#: fewer design columns than this are always dense (their products are cheap)
SPARSE_MIN_COLUMNS = 8


def is_sparse(X: Any) -> bool:
    """True when the design ``X`` (N x K, dense or scipy sparse) is handled as a sparse matrix
    (see the module docstring for the rule)."""
    size = X.shape[0] * X.shape[1] if X.ndim == 2 else 0
    if X.ndim != 2 or X.shape[1] < SPARSE_MIN_COLUMNS or size == 0:
        return False
    nnz = X.nnz if sparse.issparse(X) else np.count_nonzero(X)
    return float(nnz) / size <= 1.0 - SPARSE_ZERO_SHARE


def fixed_crossproducts(X: np.ndarray, y: np.ndarray, Z: Any, intercept: bool, beta: bool,
                        centre: bool, use_sparse: bool | None = None):
    """(p, Z'X1, X1'X1, X1'y) for X1 = [1 if ``intercept``, X (centred if ``centre``) if
    ``beta``].

    ``Z`` is the N x q random-effects design (scipy sparse); ``X`` a dense array or a scipy
    sparse matrix (a program's CSR design, used without densifying it on the sparse path);
    ``use_sparse`` None decides by :func:`is_sparse`."""
    N = X.shape[0]
    if use_sparse is None:
        use_sparse = beta and is_sparse(X)
    if sparse.issparse(X) and not use_sparse:
        X = X.toarray()
    if not use_sparse:
        Xc = X - X.mean(axis=0) if centre else X
        cols = ([np.ones((N, 1))] if intercept else []) + ([Xc] if beta else [])
        X1 = np.hstack(cols) if cols else np.zeros((N, 0))
        p = X1.shape[1]
        return (p, np.asarray(Z.T @ X1).reshape(Z.shape[1], p), X1.T @ X1, X1.T @ y)
    K = X.shape[1]
    # columns that are mostly non-zero (covariates) are centred as columns, exactly as the
    # dense path does: centring their products would cancel digits (X'X - N m m' for a
    # column with a large mean); the dummy columns (means <= 1 - SPARSE_ZERO_SHARE) are not
    given = sparse.issparse(X)
    if given:
        X = sparse.csc_matrix(X)
    nnz = X.getnnz(axis=0) if given else np.count_nonzero(X, axis=0)
    dense = nnz > (1.0 - SPARSE_ZERO_SHARE) * N
    D, S = np.flatnonzero(dense), np.flatnonzero(~dense)
    Xs = sparse.csr_matrix(X[:, S])
    colsum = np.asarray(Xs.sum(axis=0)).ravel()
    mS = colsum / N if centre else np.zeros(S.size)
    XD = X[:, D].toarray() if given else X[:, D]
    XD = XD - XD.mean(axis=0) if centre else XD
    Zt1 = np.asarray(Z.sum(axis=0)).ravel()  # Z'1
    one_D = XD.sum(axis=0)  # 1'Xc for the dense columns (0 up to rounding when centred)
    ZtX = np.empty((Z.shape[1], K))
    ZtX[:, D] = np.asarray(Z.T @ XD).reshape(Z.shape[1], D.size)
    ZtX[:, S] = np.asarray((Z.T @ Xs).todense()) - np.outer(Zt1, mS)
    XtX = np.empty((K, K))
    XtX[np.ix_(D, D)] = XD.T @ XD
    XtX[np.ix_(S, S)] = np.asarray((Xs.T @ Xs).todense()) - N * np.outer(mS, mS)
    XtX[np.ix_(D, S)] = np.asarray((Xs.T @ XD).T) - np.outer(one_D, mS)
    XtX[np.ix_(S, D)] = XtX[np.ix_(D, S)].T
    Xty = np.empty(K)
    Xty[D] = XD.T @ y
    Xty[S] = np.asarray(Xs.T @ y).ravel() - mS * float(y.sum())
    if not intercept:
        return K, ZtX, XtX, Xty
    one_X = np.empty(K)
    one_X[D] = one_D
    one_X[S] = colsum - N * mS
    XtX1 = np.block([[np.array([[float(N)]]), one_X[None, :]], [one_X[:, None], XtX]])
    return (K + 1, np.column_stack([Zt1, ZtX]), XtX1,
            np.concatenate([[float(y.sum())], Xty]))
