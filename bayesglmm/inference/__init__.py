"""Inference engines: NUTS through cmdstanpy (``sampling``), posterior modes through BridgeStan
(``optimize``). They see only a compiled model, the Stan data and the parameter list of the
generated program; they never look at formulas or data frames."""

from .optimize import JointMode, find_joint_mode, wald_table
from .sampling import extract_draws, new_seed, run_nuts

__all__ = ["JointMode", "extract_draws", "find_joint_mode", "new_seed", "run_nuts", "wald_table"]
