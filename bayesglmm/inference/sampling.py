"""NUTS via cmdstanpy (all chains in one process when the executable has threads)."""

from __future__ import annotations

import contextlib
import logging
import re
import signal
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..core.arviz_adapter import SAMPLER_STATS
from ..core.display import show_progress
from ..core.naming import ParamName, log_lik_names

__all__ = ["cmdstan_output_errors", "extract_draws", "new_seed", "quiet_cmdstanpy", "run_nuts",
           "split_columns"]


def new_seed() -> int:
    """A fresh seed for Stan (0 .. 2**31 - 2) drawn from the OS entropy pool."""
    return int(np.random.SeedSequence().entropy % (2**31 - 1))


@contextlib.contextmanager
def quiet_cmdstanpy():
    """Silence cmdstanpy's log (INFO chatter, and the console echo of proposals rejected early
    in warmup, which is normal and alarms users). Errors still raise."""
    try:
        from cmdstanpy.utils import get_logger

        logger = get_logger()  # configures the logger first, so our level sticks
    except ImportError:  # pragma: no cover
        logger = logging.getLogger("cmdstanpy")
    old = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(old)


@contextlib.contextmanager
def cmdstan_output_errors(output_dir: str | None):
    """Clear errors for a CmdStan run that did not leave complete output: the process killed
    by a signal (e.g. out of memory), or CSV files cmdstanpy cannot read (truncated or
    corrupt, e.g. on a full disk). Nothing is summarised from a partial file."""
    try:
        yield
    except (ValueError, RuntimeError) as e:
        text = str(e).strip()
        where = output_dir or "CmdStan's output directory"
        killed = re.search(r"retcodes=\[([^\]]*)\]", text)
        codes = [int(c) for c in re.findall(r"-?\d+", killed.group(1))] if killed else []
        if any(c < 0 for c in codes):
            sig = -min(codes)
            name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else sig
            raise RuntimeError(
                f"CmdStan was killed by signal {name} before it finished (out of memory, or "
                f"stopped by another process); its partial output in {where} is not used."
            ) from e
        if "csv" not in text.lower() or "Error during" in text:
            raise
        msg = (f"CmdStan's output in {where} is truncated or corrupt, so no draws were read "
               f"(nothing is summarised from a partial file). cmdstanpy said: {text}")
        if output_dir is not None:
            import shutil

            with contextlib.suppress(OSError):
                free = shutil.disk_usage(output_dir).free
                if free < 64 * 2**20:
                    msg += (f"\nThe disk holding {output_dir} is full ({free / 2**20:.1f} MB "
                            "free): free some space, or set TMPDIR to a directory on another disk.")
        raise RuntimeError(msg) from e


def run_nuts(
    cmdstan_model: Any,
    data: Mapping[str, Any] | str,
    *,
    chains: int,
    warmup: int,
    sampling: int,
    thin: int,
    seed: int,
    delta: float,
    max_treedepth: int,
    init: Any = None,
    verbose: bool = True,
    output_dir: str | None = None,
    threads_per_chain: int = 1,
    save_warmup: bool = False,
):
    """Run NUTS with Stan's defaults except the named settings; returns a ``CmdStanMCMC``
    (with the warm-up iterations too if ``save_warmup``).

    Ctrl-C raises KeyboardInterrupt at once: the CmdStan process is stopped and its output
    directory removed (cmdstanpy alone would let CmdStan run on in a worker thread).
    ``threads_per_chain``: CmdStan runs ``chains * threads_per_chain`` threads (for programs
    with ``reduce_sum``)."""
    import tempfile
    from pathlib import Path

    from ..toolchain._common import stop_children_on_interrupt

    if output_dir is None:
        import cmdstanpy

        # under cmdstanpy's own temporary directory: removed at exit as before
        output_dir = tempfile.mkdtemp(prefix="nuts-", dir=cmdstanpy._TMPDIR)
    with quiet_cmdstanpy(), stop_children_on_interrupt(cmdstan_model.exe_file, Path(output_dir)),\
            cmdstan_output_errors(output_dir):
        return cmdstan_model.sample(
            data=data,
            chains=chains,
            parallel_chains=chains,
            threads_per_chain=threads_per_chain if threads_per_chain > 1 else None,
            seed=seed,
            inits=init,
            iter_warmup=warmup,
            adapt_engaged=warmup > 0,  # no warmup: no adaptation (cmdstanpy refuses otherwise)
            iter_sampling=sampling,
            thin=thin,
            adapt_delta=delta if warmup > 0 else None,
            max_treedepth=max_treedepth,
            show_progress=show_progress(verbose),
            show_console=False,
            output_dir=output_dir,
            save_warmup=save_warmup,
        )


def extract_draws(stan_fit: Any, params: Sequence[ParamName]):
    """(draws (chain, draw, P) in ``params`` order, sample stats {name: (chain, draw)},
    log_lik (chain, draw, N) or None) from a ``CmdStanMCMC``."""
    arr = np.asarray(stan_fit.draws(concat_chains=False))  # (draw, chain, column)
    return split_columns(np.transpose(arr, (1, 0, 2)), list(stan_fit.column_names), params)


def split_columns(arr: np.ndarray, cols: Sequence[str], params: Sequence[ParamName]):
    """Split an array (chain, draw, column) with Stan output names ``cols`` into (draws in
    ``params`` order, sampler stats under arviz's names, log_lik or None)."""
    pos = {c: i for i, c in enumerate(cols)}
    draws = arr[:, :, [pos[p.stan] for p in params]] if params else arr[:, :, :0]
    stats = {name: arr[:, :, pos[col]] for col, name in SAMPLER_STATS.items() if col in pos}
    for k in ("tree_depth", "n_steps"):
        if k in stats:
            stats[k] = stats[k].astype(np.int64)
    ll_cols = log_lik_names(cols)
    log_lik = arr[:, :, [pos[c] for c in ll_cols]] if ll_cols else None
    return draws, stats, log_lik
