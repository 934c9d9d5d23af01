"""One BLAS thread for the small dense linear algebra of the mode-finding fits.

The Laplace and REML optimisers factorise many small matrices (a few hundred rows at most per
factorisation). A multi-threaded BLAS gains nothing there and loses a lot when the cores are
busy: its threads spin and wait for each other (measured on a loaded 2-core machine: the same
classic() fit took 6.8-8.1 s with two OpenBLAS threads and 0.8-1.2 s with one).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import TypeVar

__all__ = ["one_blas_thread", "single_blas_thread"]

F = TypeVar("F", bound=Callable)


@contextlib.contextmanager
def single_blas_thread() -> Iterator[None]:
    """Limit every loaded BLAS library (numpy's and scipy's OpenBLAS, MKL, ...) to one thread
    inside the ``with`` block; the previous limits are restored on exit."""
    import scipy.linalg  # noqa: F401  (load scipy's BLAS now, so that the limit covers it)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


def one_blas_thread(fn: F) -> F:
    """Decorator: run ``fn`` inside :func:`single_blas_thread`."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with single_blas_thread():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
