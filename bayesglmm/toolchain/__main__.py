"""``python -m bayesglmm.toolchain install [--programs all|gaussian,...] | status | env | clean [--all]``."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Sequence

from ._common import ToolchainError, file_lock, home_dir, remove_tree, toolchain_root
from .cache import clean_cache


def _cmd_install(args) -> int:
    from .install import install

    progs, fams = {}, []
    if args.programs is not None:  # check the selection before installing anything
        from .programs import generic_programs, resolve_families

        progs = generic_programs()
        try:
            fams = resolve_families(args.programs, progs)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    install(verbose=not args.quiet, force=args.force, jobs=args.jobs)
    if fams:
        from .programs import build_generic

        for fam in fams:
            build_generic(fam, progs[fam], verbose=not args.quiet)
        if not args.quiet:
            print(f"precompiled programs ready: {', '.join(fams)}")
    return 0


def _cmd_status(args) -> int:
    from .status import format_status, status

    st = status()
    print(json.dumps(st, indent=2) if args.json else format_status(st))
    return 0


def _cmd_env(args) -> int:
    from .locate import ensure_toolchain

    tc = ensure_toolchain(verbose=not args.quiet)  # progress goes to stderr only
    print(f"export CMDSTAN={shlex.quote(str(tc.cmdstan_dir))}")
    print(f"export BRIDGESTAN={shlex.quote(str(tc.bridgestan_dir))}")
    return 0


def _cmd_clean(args) -> int:
    home = home_dir()
    st = clean_cache()
    print(f"removed compiled-model cache {st['path']} ({st['count']} model(s))")
    if args.all:
        with file_lock(home / "install.lock", "Waiting for a running install to finish ..."):
            for p in (toolchain_root(home), home / "wheels"):
                if p.exists() or p.is_symlink():
                    remove_tree(p)
                    print(f"removed {p}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bayesglmm.toolchain",
        description="Manage bayesglmm's Stan toolchain (home: $BAYESGLMM_HOME, "
        "default ~/.cache/bayesglmm).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("install", help="install or update the bundled toolchain (idempotent)")
    p.add_argument("--force", action="store_true", help="redo every step")
    p.add_argument("-j", "--jobs", type=int, default=None, help="parallel make jobs")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.add_argument("--programs", metavar="FAMILIES", default=None,
                   help="also build the precompiled generic programs: 'all' or a "
                   "comma-separated list of families, e.g. gaussian,poisson")
    p.set_defaults(func=_cmd_install)
    p = sub.add_parser("status", help="show which toolchain is used, versions, cache size")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_status)
    p = sub.add_parser("env", help="print export lines: eval \"$(python -m bayesglmm.toolchain env)\"")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output on stderr")
    p.set_defaults(func=_cmd_env)
    p = sub.add_parser("clean", help="remove the compiled-model cache")
    p.add_argument("--all", action="store_true", help="also remove the toolchain and wheels")
    p.set_defaults(func=_cmd_clean)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ToolchainError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
