"""The compiled program sent to Dask workers that do not have it (``pip install
bayesglmm[dask]``).

Before a batch, every worker is asked whether its compiled-model cache holds the program
(workers on this host with the same ``BAYESGLMM_HOME`` share the cache and answer yes). If
one does not, the program's files are packed once and registered as a worker plugin: each
worker without the program, and each worker that joins the cluster during the batch,
installs them into its own cache (checksums verified, atomic, under the entry's lock; see
:mod:`bayesglmm.toolchain.transfer`) instead of compiling. A worker whose toolchain builds
different binaries (another compiler or Stan version) compiles the program once per host
under the cache's lock. The plugin is removed after the batch.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from ..toolchain.transfer import PackedProgram, install_packed, pack, probe

__all__ = ["ProgramPlugin", "ship_program"]


class ProgramPlugin(WorkerPlugin):
    """Installs a packed compiled program on every worker that lacks it."""

    idempotent = False

    def __init__(self, packed: PackedProgram):
        self.packed = packed

    def setup(self, worker: Any) -> None:
        try:
            install_packed(self.packed)
        except Exception as e:  # noqa: BLE001 - the worker compiles instead; say why
            print(f"bayesglmm: could not install the compiled program {self.packed.name} on "
                  f"this worker ({type(e).__name__}: {e}); it is compiled here instead",
                  file=sys.stderr, flush=True)


def ship_program(client: Any, compiled: Any) -> str | None:
    """Send ``compiled`` to the workers of ``client`` whose cache lacks it; returns the name of
    the plugin registered (to unregister after the batch), or None if every worker has it."""
    states = client.run(probe, compiled.code, compiled.name)
    if all(s == "cached" for s in states.values()):
        return None
    name = f"bayesglmm-program-{compiled.hash}"
    client.register_plugin(ProgramPlugin(pack(compiled)), name=name)
    return name


def unship(client: Any, name: str | None) -> None:
    """Remove the plugin of :func:`ship_program` (the installed files stay in the caches)."""
    if name is not None:
        with contextlib.suppress(Exception):
            client.unregister_worker_plugin(name)
