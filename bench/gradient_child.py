"""Child process of ``bench_generic.py --callgrind``: load a compiled model's library with its
data and evaluate the log-density gradient ``n`` times at fixed random points, so that valgrind
(callgrind, collecting only inside Stan's ``stan::math::gradient`` of the log density) counts the instructions of the
gradients alone. Imports only numpy and bridgestan (the process runs under valgrind).

Usage: ``python bench/gradient_child.py LIBRARY DATA_JSON N``.
"""

from __future__ import annotations

import sys

import bridgestan
import numpy as np


def main() -> None:
    lib, data, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    bs = bridgestan.StanModel(lib, data, seed=1, warn=False)
    rng = np.random.default_rng(1)
    pts = rng.normal(0, 0.5, size=(n, bs.param_unc_num()))
    for x in pts:
        bs.log_density_gradient(x, propto=False, jacobian=True)


if __name__ == "__main__":
    main()
