"""nutpie's raw trace (Apache Arrow record batches) read straight into numpy arrays.

``nutpie.sample(..., return_raw_trace=True)`` returns the trace as it was stored while
sampling: per chain, one record batch of draws (one column per Stan variable; arrays stored
as lists, flattened in C order, their shape in the column's metadata) and one of sampler
statistics (``tuning`` marks the warm-up rows). nutpie's own conversion to an
``arviz.InferenceData`` builds an xarray dataset for the warm-up and the kept draws of every
variable and statistic, most of which is then thrown away here; reading the columns that are
used directly gives the same numbers (tested against nutpie's conversion of the same run) at a
small fraction of the cost, which matters on the small models nutpie samples in a fraction of
a second.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["NutpieTrace", "arrow_batches", "read_trace"]

_UNCONSTRAINED = "unconstrained_draw"  # the draw on the unconstrained scale (a statistic)


@dataclass
class NutpieTrace:
    """The kept draws of a nutpie run.

    Attributes
    ----------
    blocks : dict of str to numpy.ndarray
        The reported quantities, one (chain, draw, n) array per Stan variable (its n elements
        in C order), in the trace's order; variables of size 0 left out.
    names : list of str
        The element names of all blocks in order, in cmdstanpy's spelling (``b[1]``,
        ``L[1,2]``: 1-based indices).
    unconstrained : numpy.ndarray
        The draws on the unconstrained scale, shape (chain, draw, D).
    stats : dict of str to numpy.ndarray
        The requested sampler statistics under their new names, each (chain, draw).
    warmup_stats : dict of str to numpy.ndarray
        The same statistics for the warm-up iterations (empty unless asked for).
    """

    blocks: dict[str, np.ndarray]
    names: list[str]
    unconstrained: np.ndarray
    stats: dict[str, np.ndarray]
    warmup_stats: dict[str, np.ndarray]

    @property
    def values(self) -> np.ndarray:
        """All reported quantities, shape (chain, draw, K), in the order of ``names``."""
        C, S = self.unconstrained.shape[:2]
        if not self.blocks:
            return np.empty((C, S, 0))
        return np.concatenate(list(self.blocks.values()), axis=2)

    def take(self, wanted: Sequence[str]) -> np.ndarray:
        """The draws (chain, draw, len(wanted)) of the elements named ``wanted``.

        A whole block asked for in its order is returned as it is (no copy: the pointwise
        log-likelihood); otherwise the elements are copied into an array laid out as numpy
        lays out ``values[:, :, index_list]`` (each element's draws contiguous), so sums
        over it round as they did when the draws were picked from ``values``.
        """
        wanted = list(wanted)
        where: dict[str, tuple[str, int]] = {}
        names = iter(self.names)
        for block, x in self.blocks.items():
            for i in range(x.shape[2]):
                where[next(names)] = (block, i)
        if wanted:
            block, first = where[wanted[0]]
            x = self.blocks[block]
            if first == 0 and len(wanted) == x.shape[2] \
                    and all(where[n] == (block, i) for i, n in enumerate(wanted)):
                return x
        C, S = self.unconstrained.shape[:2]
        out = np.empty((len(wanted), C, S)).transpose(1, 2, 0)
        for j, name in enumerate(wanted):
            block, i = where[name]
            out[:, :, j] = self.blocks[block][:, :, i]
        return out


def arrow_batches(raw: Any) -> tuple[list[Any], list[Any]]:
    """(draw batches, statistic batches), one pyarrow record batch per chain, of nutpie's raw
    trace ``raw`` (what ``nutpie.sample(..., return_raw_trace=True)`` returns; its batches can
    be taken once)."""
    import pyarrow as pa

    if not raw.is_arrow():
        raise RuntimeError("nutpie returned its trace in a store other than Arrow; "
                           "sample(sampler='nutpie') reads Arrow traces only")
    draws, stats = raw.get_arrow_trace()
    return [pa.record_batch(b) for b in draws], [pa.record_batch(b) for b in stats]


def _shape(batch: Any, name: str) -> tuple[int, ...] | None:
    """The element shape of column ``name`` (None: a scalar column)."""
    meta = batch.schema.field(name).metadata or {}
    text = meta.get(b"shape", b"").decode()
    if not text:
        return None
    return tuple(int(s) for s in text.split(","))


def _column(batch: Any, name: str, rows: slice) -> np.ndarray:
    """Column ``name`` of ``batch`` over ``rows`` as an array (rows, *shape); list columns
    with missing rows get NaN there."""
    col = batch.column(name)[rows]
    shape = _shape(batch, name)
    n = len(col)
    if shape is None:
        return col.to_numpy(zero_copy_only=False)
    flat = col.flatten().to_numpy(zero_copy_only=False)
    if col.null_count == 0:
        return flat.reshape((n, *shape))
    out = np.full((n, *shape), np.nan)
    out[~col.is_null().to_numpy(zero_copy_only=False)] = flat.reshape((-1, *shape))
    return out


def _output_names(batch: Any) -> list[tuple[str, list[str]]]:
    """Per draw column, its element names (C order, 1-based); columns of size 0 dropped."""
    out = []
    for name in batch.column_names:
        shape = _shape(batch, name)
        if shape is None:
            out.append((name, [name]))
        elif int(np.prod(shape)) > 0:
            out.append((name, [f"{name}[{','.join(str(i + 1) for i in idx)}]"
                               for idx in np.ndindex(shape)]))
    return out


def read_trace(batches: tuple[Sequence[Any], Sequence[Any]], stats: Mapping[str, str],
               thin: int = 1, warmup_stats: bool = False) -> NutpieTrace:
    """The kept draws of a nutpie run sampled with ``store_unconstrained=True``.

    Parameters
    ----------
    batches : (draw batches, statistic batches)
        The run's raw trace, from :func:`arrow_batches`.
    stats : mapping of str to str
        nutpie's statistic name -> the name it is reported under; statistics the trace does
        not hold are left out.
    thin : int
        Keep every ``thin``-th draw after the warm-up (the first one included), as Stan does.
    warmup_stats : bool
        Also read the statistics of the warm-up iterations.

    Returns
    -------
    NutpieTrace

    Raises
    ------
    RuntimeError
        If the chains hold different numbers of draws (a chain that stopped early).
    """
    draw_batches, stat_batches = batches
    n_tune = [int(b.column("tuning").to_numpy(zero_copy_only=False).sum()) for b in stat_batches]
    n_rows = [b.num_rows for b in stat_batches]
    if len(set(n_rows)) != 1 or len(set(n_tune)) != 1:
        raise RuntimeError(f"nutpie's chains stopped at different iterations (iterations per "
                           f"chain: {n_rows}; warm-up: {n_tune})")
    tune, total = n_tune[0], n_rows[0]
    kept = slice(tune, total, thin)
    groups = _output_names(draw_batches[0])
    names = [n for _, elems in groups for n in elems]
    S = len(range(tune, total, thin))
    blocks = {col: np.stack([_column(b, col, kept).reshape(S, len(elems))
                             for b in draw_batches]).astype(float, copy=False)
              for col, elems in groups}
    present = [s for s in stats if s in stat_batches[0].column_names]
    unc = np.stack([_column(b, _UNCONSTRAINED, kept) for b in stat_batches]).astype(float)
    return NutpieTrace(
        blocks=blocks, names=names, unconstrained=unc,
        stats=_stack(stat_batches, present, stats, kept),
        warmup_stats=_stack(stat_batches, present, stats, slice(0, tune)) if warmup_stats else {},
    )


def _stack(batches: Sequence[Any], present: Sequence[str], rename: Mapping[str, str],
           rows: slice) -> dict[str, np.ndarray]:
    """{new name: (chain, draw) array} of the statistics ``present`` over ``rows``."""
    return {rename[s]: np.stack([_column(b, s, rows) for b in batches]) for s in present}
