"""``status`` report: which toolchain is in use, versions, paths, cache size."""

from __future__ import annotations

import os
from pathlib import Path

from ._common import ToolchainError, home_dir, toolchain_root
from .cache import cache_stats
from .install import read_ready, ready_status, stan_version
from .locate import bridgestan_version_of, cmdstan_version_of, select
from .permissions import describe_home
from .programs import programs_status
from .sources import source_hash


def _fmt_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def status(home: os.PathLike | str | None = None) -> dict:
    """Machine-readable status (no installation, no compilation)."""
    try:
        sel = select(home)
    except ToolchainError as e:
        sel = {"kind": "error", "reason": str(e), "cmdstan": (None, ""), "bridgestan": (None, "")}
    root = toolchain_root(home)
    ready = read_ready(root)
    try:
        current, why = ready_status(root, source_hash())
    except OSError as e:  # package files unreadable
        current, why = False, str(e)
    out = {
        "home": str(home_dir(home)),
        "in_use": sel["kind"],
        "reason": sel["reason"],
        "bundled": {
            "root": str(root),
            "cmdstan": str(root / "cmdstan"),
            "bridgestan": str(root / "bridgestan"),
            "ready": ready is not None,
            "current": current,
            "state": why,
            "stan_version": (ready or {}).get("stan_version") or (
                stan_version(root) if (root / "stan").exists() else None),
            "compiler": (ready or {}).get("compiler"),
            "installed_at": (ready or {}).get("installed_at"),
            "wheel_sha256": (ready or {}).get("wheel_sha256"),
        },
        "external": {
            "cmdstan": None, "cmdstan_source": sel["cmdstan"][1], "cmdstan_version": None,
            "bridgestan": None, "bridgestan_source": sel["bridgestan"][1],
            "bridgestan_version": None,
        },
        "cache": cache_stats(home),
        "permissions": describe_home(home_dir(home)),
        "programs": programs_status(home),
    }
    cs, bs = sel["cmdstan"][0], sel["bridgestan"][0]
    if cs:
        out["external"]["cmdstan"] = cs
        out["external"]["cmdstan_version"] = cmdstan_version_of(Path(cs))
    if bs:
        out["external"]["bridgestan"] = bs
        out["external"]["bridgestan_version"] = bridgestan_version_of(Path(bs))
    return out


def format_status(st: dict) -> str:
    b, e, c = st["bundled"], st["external"], st["cache"]
    lines = [f"Toolchain in use: {st['in_use']} ({st['reason']})", f"BAYESGLMM_HOME:   {st['home']}"]
    if st["in_use"] == "external":
        lines += [
            (f"CmdStan:          {e['cmdstan']} (version {e['cmdstan_version'] or '?'}, "
             f"from {e['cmdstan_source']})"),
            (f"BridgeStan:       {e['bridgestan']} (version {e['bridgestan_version'] or '?'}, "
             f"from {e['bridgestan_source']})"),
        ]
    else:
        for label, key in (("CmdStan", "cmdstan"), ("BridgeStan", "bridgestan")):
            if e[key]:
                lines.append(f"{label} (ignored): {e[key]} ({e[key + '_source']})")
    if st.get("permissions"):
        lines.append(f"Permissions:      {st['permissions']}")
    lines += [
        "Bundled toolchain:",
        f"  root:           {b['root']}",
        f"  state:          {'READY' if b['current'] else 'not ready'} ({b['state']})",
        f"  Stan version:   {b['stan_version'] or '-'} (CmdStan-compatible home {b['cmdstan']})",
        f"  BridgeStan:     2.9-compatible home {b['bridgestan']}",
    ]
    if b["compiler"]:
        lines.append(f"  compiler:       {b['compiler']}")
    if b["installed_at"]:
        lines.append(f"  installed:      {b['installed_at']}")
    lines.append(f"Compiled-model cache: {c['path']}: {c['count']} model(s), {_fmt_bytes(c['bytes'])}")
    lines.append("Precompiled generic programs: " + _fmt_programs(st.get("programs")))
    return "\n".join(lines)


def _fmt_programs(progs) -> str:
    if not isinstance(progs, dict):
        return str(progs)
    built = [f for f, ok in progs.items() if ok]
    missing = [f for f, ok in progs.items() if not ok]
    out = f"built: {', '.join(built) or 'none'}"
    if missing:
        out += f"; not built: {', '.join(missing)} (each builds on first use, or ahead with " \
               "'python -m bayesglmm.toolchain install --programs all')"
    return out
