"""Posterior modes through BridgeStan (in-process log density, gradient and Hessian).

``find_joint_mode`` maximises log p(y, theta) over *all* parameters in the natural (constrained)
parameterisation, i.e. without Jacobian terms, working on Stan's unconstrained scale u: L-BFGS
first, then Newton steps with the Hessian until the gradient vanishes. ``find_laplace_mode``
integrates the random effects out by the Laplace approximation and maximises over the other
parameters. ``wald_table`` turns a mode and the inverse Hessian on the u scale into estimates,
delta-method SEs and Wald intervals for any list of constrained quantities.

Modules: ``objective`` (the objective, joint mode, Hessian inverse), ``jacobian`` (constrained
quantities and their Jacobians), ``sparsity`` (random-effect blocks, H_zz pattern and its
block factorisation), ``laplace`` (the Laplace objective), ``warm_start`` (GLM start),
``laplace_cov`` (the factored covariance), ``laplace_mode`` (the Laplace optimiser), ``wald``
(Wald and sampling tables). Every public name is re-exported here.
"""

from .jacobian import constrain_fn, constrained_jacobian, re_colours, sparse_jacobian
from .laplace import LaplaceObjective, fd_grad, fd_hess
from .laplace_cov import LaplaceCov
from .laplace_mode import find_laplace_mode
from .objective import JointMode, Objective, find_joint_mode, hessian_inverse, initial_point
from .sparsity import Factor, block_indices, re_pattern, small_blocks, unc_name
from .wald import Z95, cov_block, cov_diagonal, sampling_table, wald_table
from .warm_start import WARM_KINDS, glm_warm_start

__all__ = [
    "WARM_KINDS",
    "Z95",
    "Factor",
    "JointMode",
    "LaplaceCov",
    "LaplaceObjective",
    "Objective",
    "block_indices",
    "constrain_fn",
    "constrained_jacobian",
    "cov_block",
    "cov_diagonal",
    "fd_grad",
    "fd_hess",
    "find_joint_mode",
    "find_laplace_mode",
    "glm_warm_start",
    "hessian_inverse",
    "initial_point",
    "re_colours",
    "re_pattern",
    "sampling_table",
    "small_blocks",
    "sparse_jacobian",
    "unc_name",
    "wald_table",
]
