"""Which Stan toolchain to use: a real CmdStan + BridgeStan, or the bundled one."""

from __future__ import annotations

import hashlib
import os
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from ._common import ToolchainError, home_dir, toolchain_root
from .permissions import check_toolchain

_VERSION_DIR = re.compile(r"^(?:cmdstan|bridgestan)-(\d+)\.(\d+)\.(\d+)(?:-rc(\d+))?$")


@dataclass(frozen=True)
class Toolchain:
    """A usable Stan toolchain.

    ``kind`` is ``"bundled"`` (built by :func:`install` from the httpstan wheel) or
    ``"external"`` (a real CmdStan and BridgeStan found through ``CMDSTAN`` /
    ``BRIDGESTAN`` or their default locations).
    """

    cmdstan_dir: Path
    bridgestan_dir: Path
    stan_dir: Path
    kind: str
    home: Path
    id: str = field(default="", compare=False)
    cmdstan_version: str | None = None
    bridgestan_version: str | None = None

    @property
    def stanc(self) -> Path:
        if self.kind == "bundled":
            return self.stan_dir / "stanc"
        return self.cmdstan_dir / "bin" / "stanc"

    @property
    def root(self) -> Path:
        """The bundled toolchain root (``<home>/toolchain``)."""
        return toolchain_root(self.home)

    def activate(self) -> None:
        """Point cmdstanpy and bridgestan at this toolchain (sets CMDSTAN / BRIDGESTAN).

        cmdstanpy is not imported for this (0.1 s): until it is, the CMDSTAN variable it reads
        is set, so fits through BridgeStan alone never load it."""
        import bridgestan

        if "cmdstanpy" in sys.modules:
            sys.modules["cmdstanpy"].set_cmdstan_path(str(self.cmdstan_dir))
        else:
            os.environ["CMDSTAN"] = str(self.cmdstan_dir)
        bridgestan.set_bridgestan_path(str(self.bridgestan_dir))


# --------------------------------------------------------------------------- detection


def is_bundled_dir(path: Path) -> bool:
    """True for a cmdstan/ or bridgestan/ directory of a bayesglmm bundled toolchain."""
    parent = path.expanduser().resolve().parent
    return (parent / "common.mk").exists() and (parent / "stan").is_dir()


def _latest_versioned(base: Path, prefix: str) -> Path | None:
    if not base.is_dir():
        return None
    best = None
    for d in base.iterdir():
        m = _VERSION_DIR.match(d.name)
        if not m or not d.name.startswith(prefix) or not d.is_dir():
            continue
        rc = int(m.group(4)) if m.group(4) else 10**6  # a release sorts after its rcs
        key = (int(m.group(1)), int(m.group(2)), int(m.group(3)), rc)
        if best is None or key > best[0]:
            best = (key, d)
    return best[1] if best else None


def cmdstan_version_of(path: Path) -> str | None:
    """Version from the ``CMDSTAN_VERSION := x.y.z`` line of ``<path>/makefile``."""
    try:
        text = (path / "makefile").read_text(errors="replace")
    except OSError:
        return None
    m = re.search(r"CMDSTAN_VERSION := (\S+)", text)
    return m.group(1) if m else None


def bridgestan_version_of(path: Path) -> str | None:
    m = re.match(r"bridgestan-(\d+\.\d+\.\d+)", path.name)
    if m:
        return m.group(1)
    for rel in ("src/version.hpp", "src/bridgestan.h", "src/version.cpp"):
        try:
            text = (path / rel).read_text(errors="replace")
        except OSError:
            continue
        parts = [re.search(rf"BRIDGESTAN_{k}\s+(\d+)", text) for k in ("MAJOR", "MINOR", "PATCH")]
        if all(parts):
            return ".".join(p.group(1) for p in parts)  # type: ignore[union-attr]
    return None


def find_external_cmdstan() -> tuple[Path | None, str]:
    """(path, where it came from) of a real CmdStan, ignoring bundled toolchains."""
    env = os.environ.get("CMDSTAN", "")
    if env:
        p = Path(env).expanduser()
        if is_bundled_dir(p):
            return None, "CMDSTAN points at a bundled toolchain"
        return p, "$CMDSTAN"
    d = _latest_versioned(Path("~/.cmdstan").expanduser(), "cmdstan-")
    if d is not None:
        return d, "~/.cmdstan (cmdstanpy default)"
    return None, "not found"


def find_external_bridgestan() -> tuple[Path | None, str]:
    env = os.environ.get("BRIDGESTAN", "")
    if env:
        p = Path(env).expanduser()
        if is_bundled_dir(p):
            return None, "BRIDGESTAN points at a bundled toolchain"
        return p, "$BRIDGESTAN"
    d = _latest_versioned(Path("~/.bridgestan").expanduser(), "bridgestan-")
    if d is not None:
        return d, "~/.bridgestan (bridgestan default)"
    return None, "not found"


def _validate_external(cs: Path, bs: Path) -> None:
    problems = []
    if not (cs / "makefile").is_file():
        problems.append(f"CmdStan directory {cs} has no 'makefile'")
    elif not (cs / "bin" / "stanc").is_file():
        problems.append(f"CmdStan directory {cs} has no bin/stanc (not built?)")
    if not (bs / "Makefile").is_file():
        problems.append(f"BridgeStan directory {bs} has no 'Makefile'")
    if problems:
        raise ToolchainError(
            "; ".join(problems)
            + ". Fix or unset CMDSTAN / BRIDGESTAN, or set BAYESGLMM_TOOLCHAIN=bundled to use "
            "the bundled toolchain."
        )


def select(home: os.PathLike | str | None = None) -> dict:
    """Decide which toolchain to use, without installing anything.

    ``BAYESGLMM_TOOLCHAIN`` = ``auto`` (default) | ``bundled`` | ``external``.  In auto
    mode a real toolchain is used only when both a CmdStan and a BridgeStan are found.
    """
    mode = (os.environ.get("BAYESGLMM_TOOLCHAIN") or "auto").strip().lower()
    if mode not in ("auto", "bundled", "external"):
        raise ToolchainError(f"BAYESGLMM_TOOLCHAIN must be auto, bundled or external, not {mode!r}")
    cs, cs_src = find_external_cmdstan()
    bs, bs_src = find_external_bridgestan()
    info = {
        "mode": mode,
        "cmdstan": (str(cs) if cs else None, cs_src),
        "bridgestan": (str(bs) if bs else None, bs_src),
        "home": str(home_dir(home)),
    }
    if mode == "bundled":
        info.update(kind="bundled", reason="BAYESGLMM_TOOLCHAIN=bundled")
    elif cs is not None and bs is not None:
        info.update(kind="external", reason=f"CmdStan from {cs_src}, BridgeStan from {bs_src}")
    elif mode == "external":
        raise ToolchainError(
            "BAYESGLMM_TOOLCHAIN=external but "
            + ("no CmdStan" if cs is None else "no BridgeStan")
            + " was found (set CMDSTAN and BRIDGESTAN)."
        )
    else:
        reason = "no external CmdStan/BridgeStan found"
        if cs is not None or bs is not None:
            found = "CmdStan" if cs is not None else "BridgeStan"
            other = "BridgeStan" if cs is not None else "CmdStan"
            reason = f"{found} found but no {other}: both are needed, using the bundled toolchain"
        info.update(kind="bundled", reason=reason)
    return info


def _toolchain_id(parts: list[str]) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16] + " " + " | ".join(parts)


def external_toolchain(home: os.PathLike | str | None = None) -> Toolchain:
    cs, _ = find_external_cmdstan()
    bs, _ = find_external_bridgestan()
    if cs is None or bs is None:
        raise ToolchainError("no external CmdStan + BridgeStan found")
    cs, bs = cs.resolve(), bs.resolve()
    _validate_external(cs, bs)
    csv, bsv = cmdstan_version_of(cs), bridgestan_version_of(bs)
    import bridgestan

    bsv = bsv or bridgestan.__version__
    tid = _toolchain_id([
        "external", f"cmdstan={cs}", f"cmdstan_version={csv}", f"bridgestan={bs}",
        f"bridgestan_version={bsv}",
    ])
    return Toolchain(cmdstan_dir=cs, bridgestan_dir=bs, stan_dir=cs / "stan", kind="external",
                     home=home_dir(home), id=tid, cmdstan_version=csv, bridgestan_version=bsv)


def bundled_toolchain(home: os.PathLike | str | None = None,
                      ready: dict | None = None) -> Toolchain:
    from .install import read_ready

    root = toolchain_root(home)
    ready = ready if ready is not None else (read_ready(root) or {})
    tid = _toolchain_id([
        "bundled", f"root={root}", f"stan={ready.get('stan_version')}",
        f"src={ready.get('model_source_hash') or ready.get('source_hash')}",
        f"cxx={ready.get('compiler')}",
    ])
    return Toolchain(cmdstan_dir=root / "cmdstan", bridgestan_dir=root / "bridgestan",
                     stan_dir=root / "stan", kind="bundled", home=home_dir(home), id=tid,
                     cmdstan_version=cmdstan_version_of(root / "cmdstan") or ready.get("stan_version"),
                     bridgestan_version="2.9.0")


_memo: dict[tuple, Toolchain] = {}


def ensure_toolchain(verbose: bool = True, home: os.PathLike | str | None = None) -> Toolchain:
    """Return a ready toolchain, installing the bundled one on first use.

    Also points cmdstanpy and bridgestan at it (``set_cmdstan_path`` /
    ``set_bridgestan_path``).  Cheap after the first call in a process.
    """
    from .install import install, ready_status

    sel = select(home)
    key = (sel["kind"], sel["home"], sel["cmdstan"], sel["bridgestan"])
    tc = _memo.get(key)
    if tc is not None and (tc.kind == "external" or (tc.root / "READY").exists()):
        tc.activate()
        return tc
    if sel["kind"] == "external":
        tc = external_toolchain(home)
    else:
        root = toolchain_root(home)
        ok, why = ready_status(root)
        if not ok:
            if verbose:
                import sys

                if (root / "READY").exists():
                    msg = f"bayesglmm: updating the Stan toolchain in {root} ({why})."
                else:
                    msg = ("bayesglmm: the Stan toolchain is not installed yet; installing it "
                           f"now into {root} (once, a few minutes).")
                print(msg, file=sys.stderr, flush=True)
            install(home, verbose=verbose)
        # else: ready and current.  No compiler is needed to run cached models; a changed
        # compiler is detected by compile_model before it compiles anything new.
        tc = bundled_toolchain(home)
        check_toolchain(tc.root)
    if sel["kind"] == "bundled" and sel["reason"].startswith(("CmdStan found", "BridgeStan found")):
        warnings.warn(sel["reason"], RuntimeWarning, stacklevel=2)
    tc.activate()
    _memo[key] = tc
    return tc
