"""bayesglmm.inference.threads: one BLAS thread inside optimize()/classic(), restored after."""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_info

from bayesglmm.inference.threads import one_blas_thread, single_blas_thread


def _blas_threads() -> list[int]:
    return [m["num_threads"] for m in threadpool_info() if m["user_api"] == "blas"]


def test_single_blas_thread_limits_and_restores():
    np.linalg.cholesky(np.eye(3))  # numpy's BLAS is loaded
    before = _blas_threads()
    assert before, "no BLAS library found by threadpoolctl"
    with single_blas_thread():
        assert _blas_threads() and all(n == 1 for n in _blas_threads())
    assert _blas_threads()[: len(before)] == before


def test_one_blas_thread_decorator_keeps_result_and_name():
    @one_blas_thread
    def f(x, *, y=1):
        """doc"""
        return _blas_threads(), x + y

    threads, val = f(1, y=2)
    assert val == 3 and all(n == 1 for n in threads)
    assert f.__name__ == "f" and f.__doc__ == "doc"
