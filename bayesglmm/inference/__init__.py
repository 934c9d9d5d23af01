"""Inference engines: NUTS through cmdstanpy (``sampling``), posterior modes through BridgeStan
(``optimize``: the joint mode and the Laplace-over-random-effects mode). They see only a
compiled model, the Stan data and the parameter list of the generated program; they never look
at formulas or data frames."""

from .optimize import (
    JointMode,
    LaplaceObjective,
    Objective,
    block_indices,
    find_joint_mode,
    find_laplace_mode,
    hessian_inverse,
    initial_point,
    sampling_table,
    wald_table,
)
from .sampling import extract_draws, new_seed, run_nuts

__all__ = [
    "JointMode",
    "LaplaceObjective",
    "Objective",
    "block_indices",
    "extract_draws",
    "find_joint_mode",
    "find_laplace_mode",
    "hessian_inverse",
    "initial_point",
    "new_seed",
    "run_nuts",
    "sampling_table",
    "wald_table",
]
