"""Remove Snakemake's locks left by a killed run, and only those.

Snakemake locks a working directory with files ``.snakemake/locks/<n>.{input,output}.lock``
that hold file names, not an owner. A run killed with SIGKILL (out of memory, a cluster's time
limit, ``kill -9``) leaves them behind and the next run stops with ``LockException`` until
``snakemake --unlock``. Here a lock counts as stale when no live Snakemake process holds the
directory: no process on this machine whose command line is Snakemake has that directory as its
current directory or as its ``--directory``/``-d``. Snakemake changes into its working directory
before it locks, so a live run always shows up. The check is Linux's ``/proc``; where there is
no ``/proc``, or a Snakemake process's directory cannot be read (another user's), nothing is
removed. Processes on other machines (a shared file system) are invisible: do not use this
where another host may run Snakemake in the same directory.

``python -m wavbrivl.stale_lock [WORKDIR]`` prints what it did and why; exit status 0 when the
directory is free (stale locks removed, or none), 1 when it left the locks in place.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

LOCK_NAME = re.compile(r"^[0-9]+\.(input|output)\.lock$")
PROC = Path("/proc")


@dataclass(frozen=True)
class Holder:
    """A live Snakemake process that holds (or may hold) the directory."""

    pid: int
    cmdline: str
    why: str


@dataclass(frozen=True)
class Outcome:
    unlocked: bool  # the directory is free now (True also when there was no lock)
    removed: tuple[Path, ...]
    message: str


def lock_files(workdir: Path) -> list[Path]:
    """Snakemake's lock files in ``workdir`` (empty when there are none)."""
    lockdir = Path(workdir) / ".snakemake" / "locks"
    try:
        return sorted(p for p in lockdir.iterdir() if LOCK_NAME.match(p.name) and p.is_file())
    except (FileNotFoundError, NotADirectoryError):
        return []


def is_snakemake(argv: list[str]) -> bool:
    """Whether a command line runs Snakemake (``snakemake ...``, ``python [-m] snakemake ...``)."""
    if not argv:
        return False
    if Path(argv[0]).name == "snakemake":
        return True
    if not Path(argv[0]).name.startswith("python"):
        return False
    rest = argv[1:]
    while rest and rest[0] in ("-u", "-B", "-E", "-s", "-I", "-O", "-OO"):
        rest = rest[1:]
    if rest[:2] == ["-m", "snakemake"] or rest[:1] == ["-msnakemake"]:
        return True
    return bool(rest) and Path(rest[0]).name == "snakemake"


def directory_arg(argv: list[str]) -> str | None:
    """The value of ``--directory``/``-d`` in a Snakemake command line, if any (last wins)."""
    found = None
    for i, arg in enumerate(argv):
        if arg in ("-d", "--directory") and i + 1 < len(argv):
            found = argv[i + 1]
        elif arg.startswith("--directory="):
            found = arg.split("=", 1)[1]
    return found


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def live_holders(workdir: Path, proc: Path = PROC) -> list[Holder] | None:
    """Live Snakemake processes holding ``workdir``; None when this system cannot tell."""
    workdir = Path(workdir)
    if not (proc / "self" / "cmdline").exists():
        return None
    holders = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        argv = [a.decode(errors="replace") for a in raw.split(b"\0") if a]
        if not is_snakemake(argv):
            continue
        pid, cmdline = int(entry.name), " ".join(argv)
        try:
            cwd = Path(os.readlink(entry / "cwd"))
        except FileNotFoundError:  # exited meanwhile
            continue
        except OSError:
            holders.append(Holder(pid, cmdline, "its working directory cannot be read"))
            continue
        if _same(cwd, workdir):
            holders.append(Holder(pid, cmdline, "runs in this directory"))
            continue
        given = directory_arg(argv)
        if given is not None and _same(cwd / given, workdir):
            holders.append(Holder(pid, cmdline, "was started with --directory on it"))
    return holders


def _same_file(path: Path, stat: os.stat_result) -> bool:
    try:
        now = path.stat()
    except FileNotFoundError:
        return False
    return (now.st_ino, now.st_dev, now.st_mtime_ns) == (stat.st_ino, stat.st_dev, stat.st_mtime_ns)


def unlock_if_stale(workdir: Path, proc: Path = PROC) -> Outcome:
    """Remove ``workdir``'s Snakemake locks when no live Snakemake process holds it."""
    workdir = Path(workdir).resolve()
    # Lock files first, processes second: a lock written by a run that starts after the scan
    # is not in this list, and a listed file replaced meanwhile is left alone.
    locks = [(p, p.stat()) for p in lock_files(workdir)]
    if not locks:
        return Outcome(True, (), f"stale_lock: {workdir} is not locked; nothing to do.")
    holders = live_holders(workdir, proc)
    if holders is None:
        return Outcome(
            False,
            (),
            f"stale_lock: {workdir} is locked, and this system has no /proc to tell whether a "
            "Snakemake process still runs there; the lock is left alone. If none does, run "
            "`snakemake --unlock` there.",
        )
    if holders:
        lines = "\n".join(f"  PID {h.pid} ({h.why}): {h.cmdline}" for h in holders)
        return Outcome(
            False,
            (),
            f"stale_lock: {workdir} is locked by a live Snakemake process; the lock is left "
            f"alone:\n{lines}\nWait for it to finish, or stop it first.",
        )
    removed = []
    for path, stat in locks:
        if _same_file(path, stat):
            path.unlink(missing_ok=True)
            removed.append(path)
    names = ", ".join(p.name for p in removed) or "none (they were gone)"
    return Outcome(
        True,
        tuple(removed),
        f"stale_lock: {workdir} was locked by a Snakemake run that is no longer running "
        f"(killed?); no live Snakemake process holds it, so its lock was removed ({names}).",
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1 or args[:1] in (["-h"], ["--help"]):
        print("usage: python -m wavbrivl.stale_lock [WORKDIR]", file=sys.stderr)
        return 2
    outcome = unlock_if_stale(Path(args[0] if args else "."))
    print(outcome.message, file=sys.stderr)
    return 0 if outcome.unlocked else 1


if __name__ == "__main__":
    sys.exit(main())
