"""Stan toolchain for bayesglmm: a CmdStan/BridgeStan-compatible build from PyPI's httpstan
wheel, installed lazily, plus a compiled-model cache.

Public API::

    ensure_toolchain(verbose=True) -> Toolchain
    install(home=None, *, verbose=True, force=False, jobs=None) -> dict   # READY record
    compile_model(stan_code, *, name="model", verbose=True, opt_level=None) -> CompiledModel
    status() -> dict;  format_status(status()) -> str
    clean_cache() -> dict

CLI: ``python -m bayesglmm.toolchain install [--programs all|gaussian,...] | status | env |
clean [--all]``.
"""

from ._common import (
    MissingBuildToolsError,
    ModelBuildError,
    StanCompileError,
    ToolchainError,
    WheelDownloadError,
    home_dir,
    models_dir,
    toolchain_root,
)
from .cache import CompiledModel, cache_stats, clean_cache, compile_model
from .install import STAN_VERSION, install
from .locate import Toolchain, ensure_toolchain
from .permissions import UnsafePermissionsError
from .status import format_status, status

__all__ = [
    "STAN_VERSION",
    "CompiledModel",
    "MissingBuildToolsError",
    "ModelBuildError",
    "StanCompileError",
    "Toolchain",
    "ToolchainError",
    "UnsafePermissionsError",
    "WheelDownloadError",
    "cache_stats",
    "clean_cache",
    "compile_model",
    "ensure_toolchain",
    "format_status",
    "home_dir",
    "install",
    "models_dir",
    "status",
    "toolchain_root",
]
