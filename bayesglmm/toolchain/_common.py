"""Shared helpers of the toolchain package: paths, errors, file locks, progress output."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

DEFAULT_HOME = "~/.cache/bayesglmm"


# --------------------------------------------------------------------------- errors


class ToolchainError(RuntimeError):
    """The Stan toolchain could not be installed, found or used."""


class MissingBuildToolsError(ToolchainError):
    """No C++ compiler or no ``make`` on this machine."""


class WheelDownloadError(ToolchainError):
    """The pinned httpstan wheel could not be obtained or failed its checksum."""


class ModelBuildError(ToolchainError):
    """A Stan program passed stanc but its C++ compile or link failed."""


class StanCompileError(ValueError):
    """stanc rejected a Stan program (syntax or type error).

    ``message`` is stanc's own message; ``line`` and ``column`` locate the first error
    in the program text (1-based; ``None`` when stanc gave no position).
    """

    def __init__(self, message: str, line: int | None = None, column: int | None = None):
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column


# --------------------------------------------------------------------------- paths


def home_dir(home: os.PathLike | str | None = None) -> Path:
    """``$BAYESGLMM_HOME`` (default ``~/.cache/bayesglmm``), or ``home`` when given."""
    if home is None:
        home = os.environ.get("BAYESGLMM_HOME") or DEFAULT_HOME
    return Path(home).expanduser().absolute()


def toolchain_root(home: os.PathLike | str | None = None) -> Path:
    return home_dir(home) / "toolchain"


def models_dir(home: os.PathLike | str | None = None) -> Path:
    return home_dir(home) / "models"


def private_dir(path: Path) -> Path:
    """Create ``path`` and any missing parent, each private to you (mode 0700); directories
    that exist already are left as they are (they may be shared on purpose; a program in
    them is checked before it runs, see :mod:`bayesglmm.toolchain.permissions`)."""
    path = Path(path)
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for p in reversed(missing):
        try:
            p.mkdir(mode=0o700)
        except FileExistsError:  # made by another process meanwhile
            continue
        os.chmod(p, 0o700)  # exactly 0700 whatever the umask
    return path


def sha256_file(path: os.PathLike | str, bufsize: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            chunk = f.read(bufsize)
            if not chunk:
                break
            h.update(chunk)
    return h.hexdigest()


def remove_tree(path: Path) -> None:
    """Remove a file, symlink or directory tree (symlinks are never followed)."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.exists():
        shutil.rmtree(path, ignore_errors=True)
        if path.exists():  # e.g. permission problems: try once more, loudly
            shutil.rmtree(path)


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    mode = "wb" if isinstance(data, bytes) else "w"
    try:
        with open(tmp, mode) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


# --------------------------------------------------------------------------- progress


def fmt_seconds(s: float) -> str:
    if s < 60:
        return f"{s:.0f} s"
    return f"{int(s // 60)} min {int(s % 60):02d} s"


class Progress:
    """Progress lines with elapsed time on stderr (or nothing when not verbose)."""

    def __init__(self, verbose: bool = True, stream: IO[str] | None = None):
        self.verbose = verbose
        self.stream = stream if stream is not None else sys.stderr
        self.t0 = time.monotonic()
        self._lock = threading.Lock()

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def __call__(self, msg: str) -> None:
        if not self.verbose:
            return
        with self._lock:
            print(f"[{self.elapsed():6.1f} s] {msg}", file=self.stream, flush=True)


class Ticker:
    """Shows ``<message>... 12 s`` while a long step runs.

    On a terminal the line is rewritten every second; otherwise one line is printed at
    the start, one every ``interval`` seconds and one at the end, so logs stay short.
    """

    def __init__(self, message: str, verbose: bool = True, stream: IO[str] | None = None,
                 interval: float = 30.0):
        self.message = message
        self.verbose = verbose
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.t0 = 0.0
        try:
            self.tty = self.stream.isatty()
        except (AttributeError, ValueError, OSError):
            self.tty = False
        if not self.tty and self.stream is sys.stderr:
            from ..core.display import in_notebook

            self.tty = in_notebook()  # Jupyter renders the carriage returns: a live line

    def _run(self) -> None:
        period = 1.0 if self.tty else self.interval
        while not self._stop.wait(period):
            el = time.monotonic() - self.t0
            if self.tty:
                self.stream.write(f"\r{self.message}... {fmt_seconds(el)}   ")
                self.stream.flush()
            else:
                print(f"{self.message}... {fmt_seconds(el)}", file=self.stream, flush=True)

    def __enter__(self) -> Ticker:  # noqa: PYI034
        self.t0 = time.monotonic()
        if self.verbose:
            if self.tty:
                self.stream.write(f"{self.message}... 0 s   ")
                self.stream.flush()
            else:
                print(f"{self.message}...", file=self.stream, flush=True)
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.verbose:
            el = fmt_seconds(time.monotonic() - self.t0)
            outcome = "done" if exc_type is None else "failed"
            if self.tty:
                self.stream.write(f"\r{self.message}... {outcome} in {el}   \n")
                self.stream.flush()
            else:
                print(f"{self.message}... {outcome} in {el}", file=self.stream, flush=True)


# --------------------------------------------------------------------------- locking


@contextlib.contextmanager
def file_lock(path: Path, waiting_message: str | None = None,
              verbose: bool = True, shared: bool = False) -> Iterator[None]:
    """``fcntl.flock`` on ``path`` (created if needed; never deleted), exclusive unless
    ``shared``.

    If another process holds the lock, ``waiting_message`` is printed to stderr and
    the call blocks until the lock is free.  The lock is released when the process
    dies, so a killed holder never leaves a stale lock behind.
    """
    private_dir(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            if verbose and waiting_message:
                print(waiting_message, file=sys.stderr, flush=True)
            fcntl.flock(fd, mode)
        if not shared:
            try:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
            except OSError:
                pass
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_process_group(proc: subprocess.Popen) -> None:
    """Terminate a child started with ``start_new_session=True`` and everything it spawned
    (make and its compiler processes), then reap it."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            break
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(Exception):
        proc.wait(timeout=5)


def run_captured(cmd: list, cwd=None, env=None) -> tuple:
    """Run ``cmd`` (stderr merged into stdout) in its own process group; on any exception
    (e.g. Ctrl-C) the whole group is stopped.  Returns (returncode, output)."""
    try:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace",
                                stdin=subprocess.DEVNULL, start_new_session=True)
    except OSError as e:
        raise ToolchainError(f"could not run {cmd[0]}: {e}") from e
    try:
        out, _ = proc.communicate()
    except BaseException:
        stop_process_group(proc)
        raise
    return proc.returncode, out or ""


# --------------------------------------------------------------------------- interrupts


def child_processes(exe: os.PathLike | str | None = None) -> list[int]:
    """Process ids of this process's running direct children (Linux ``/proc``; elsewhere
    empty), only those running ``exe`` when given."""
    me, out = os.getpid(), []
    target = os.path.realpath(exe) if exe is not None else None
    try:
        entries = os.listdir("/proc")
    except OSError:
        return out
    for name in entries:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
            state, ppid = stat.rsplit(")", 1)[1].split()[:2]
            if int(ppid) != me or state == "Z":  # zombies: finished, not yet reaped
                continue
            if target is not None and os.path.realpath(f"/proc/{name}/exe") != target:
                continue
        except (OSError, ValueError, IndexError):
            continue
        out.append(int(name))
    return out


def stop_pids(pids: list[int], grace: float = 2.0) -> None:
    """SIGTERM the given processes, SIGKILL those still alive after ``grace`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            pids = [p for p in pids if pid_alive(p) and not _is_zombie(p)]
            if not pids:
                return
            time.sleep(0.02)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().decode(errors="replace").rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


@contextlib.contextmanager
def stop_children_on_interrupt(exe: os.PathLike | str, cleanup: Path | None = None
                               ) -> Iterator[None]:
    """Run a block that starts ``exe`` as child processes (cmdstanpy runs CmdStan from worker
    threads). On Ctrl-C (or any other exception) those children are stopped, so none keeps
    running after the call has raised, and the directory ``cleanup`` (their output) is
    removed."""
    try:
        yield
    except BaseException:
        stop_pids(child_processes(exe))
        if cleanup is not None:
            remove_tree(cleanup)
        raise
