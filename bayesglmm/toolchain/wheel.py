"""The pinned httpstan wheel: Stan's headers, libraries and stanc for the bundled toolchain.

Obtained from ``$BAYESGLMM_WHEEL``, a verified copy in ``<home>/wheels`` or ``pip download``,
checked against its sha256, and unpacked (the needed parts only) into ``<root>/stan``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from ._common import Progress, WheelDownloadError, private_dir, remove_tree, sha256_file

HTTPSTAN_VERSION = "4.13.0"
WHEEL_NAME = "httpstan-4.13.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
WHEEL_SHA256 = "7b490d6c0e8b7048d1b58dfb79db561ae1879cb3bde3012d024ef374c0308469"
WHEEL_MARKER = ".wheel-sha256"

# --------------------------------------------------------------------------- wheel


def _download_hint(home: Path) -> str:
    return (
        "To install without network access to PyPI, do one of:\n"
        f"  * on a machine with access run\n"
        f"      pip download httpstan=={HTTPSTAN_VERSION} --no-deps --only-binary=:all: "
        "--platform manylinux2014_x86_64 --python-version 311 --implementation cp -d .\n"
        f"    and copy {WHEEL_NAME} into {home / 'wheels'}/ "
        "(or set BAYESGLMM_WHEEL=<path to the .whl>);\n"
        "  * or point BAYESGLMM_HOME at a directory that already holds an installed toolchain "
        "(one with toolchain/READY, e.g. copied from another machine with the same compiler)."
    )


def obtain_wheel(home: Path, progress: Progress, *, expected_sha256: str = WHEEL_SHA256,
                 python: str | None = None) -> Path:
    """Return a path to the verified httpstan wheel, downloading it if needed."""
    env_wheel = os.environ.get("BAYESGLMM_WHEEL")
    if env_wheel:
        p = Path(env_wheel).expanduser()
        if not p.is_file():
            raise WheelDownloadError(f"BAYESGLMM_WHEEL={env_wheel} does not exist.")
        got = sha256_file(p)
        if got != expected_sha256:
            raise WheelDownloadError(
                f"BAYESGLMM_WHEEL={env_wheel} has sha256 {got}, expected {expected_sha256} "
                f"(httpstan=={HTTPSTAN_VERSION}, {WHEEL_NAME})."
            )
        progress(f"using wheel {p} (sha256 verified)")
        return p

    wheels = home / "wheels"
    cached = wheels / WHEEL_NAME
    if cached.is_file():
        if sha256_file(cached) == expected_sha256:
            progress(f"reusing verified wheel {cached}")
            return cached
        progress(f"removing {cached}: wrong sha256")
        cached.unlink()

    private_dir(wheels)
    cmd = [
        python or sys.executable, "-m", "pip", "download", f"httpstan=={HTTPSTAN_VERSION}",
        "--no-deps", "--only-binary=:all:", "--platform", "manylinux2014_x86_64",
        "--python-version", "311", "--implementation", "cp", "-d", str(wheels),
    ]
    progress(f"downloading httpstan=={HTTPSTAN_VERSION} (~45 MB) with pip")
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        out = (proc.stdout or "") + (proc.stderr or "")
        rc = proc.returncode
    except OSError as e:
        out, rc = str(e), -1
    if rc != 0 or not cached.is_file():
        tail = "\n".join(out.strip().splitlines()[-8:])
        raise WheelDownloadError(
            f"Downloading httpstan=={HTTPSTAN_VERSION} from PyPI failed "
            f"(command: {' '.join(cmd)}; exit {rc}).\npip said:\n{tail}\n\n" + _download_hint(home)
        )
    got = sha256_file(cached)
    if got != expected_sha256:
        cached.unlink()
        raise WheelDownloadError(
            f"The downloaded {WHEEL_NAME} has sha256 {got}, expected {expected_sha256}; "
            "it was removed.\n" + _download_hint(home)
        )
    progress("wheel downloaded, sha256 verified")
    return cached


def _wanted_member(name: str) -> str | None:
    """Map a wheel member to its path under ``<root>/stan`` (None = not unpacked)."""
    if name.endswith("/"):
        return None
    if name.startswith("httpstan/include/"):
        rel = name[len("httpstan/include/"):]
        if rel.startswith("pybind11/"):
            return None
        return "include/" + rel
    if name.startswith("httpstan/lib/"):
        rel = name[len("httpstan/lib/"):]
        return "lib/" + rel if rel and "/" not in rel else None
    if name == "httpstan/stanc":
        return "stanc"
    return None


def stan_complete(root: Path) -> bool:
    stan = root / "stan"
    return (
        (stan / "stanc").is_file()
        and os.access(stan / "stanc", os.X_OK)
        and (stan / "include" / "stan" / "version.hpp").is_file()
        and (stan / "lib" / "libtbb.so.2").is_file()
    )


def unpack_wheel(wheel: Path, root: Path, progress: Progress, sha256: str) -> None:
    """Unpack the needed parts of the wheel into ``<root>/stan`` (atomically)."""
    stan = root / "stan"
    tmp = root / f".stan.tmp-{os.getpid()}"
    remove_tree(tmp)
    progress(f"unpacking Stan headers, libraries and stanc from {wheel.name}")
    try:
        with zipfile.ZipFile(wheel) as z:
            n = 0
            for info in z.infolist():
                rel = _wanted_member(info.filename)
                if rel is None:
                    continue
                if rel.startswith("/") or ".." in Path(rel).parts:
                    raise WheelDownloadError(f"unsafe path in wheel: {info.filename}")
                dest = tmp / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                with z.open(info) as src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
                mode = (info.external_attr >> 16) & 0o777
                if mode:
                    os.chmod(dest, mode)
                n += 1
        (tmp / "stanc").chmod(0o755)
        for lib in (tmp / "lib").glob("*.so*"):
            lib.chmod(0o755)
        (tmp / WHEEL_MARKER).write_text(sha256 + "\n")
        remove_tree(stan)
        os.rename(tmp, stan)
    except BaseException:
        remove_tree(tmp)
        raise
    progress(f"unpacked {n} files into {stan}")

