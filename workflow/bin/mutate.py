"""Mutation testing of named modules with their own tests (mutmut, pinned in requirements.txt).

    workflow/bin/mutate src/wavbrivl/train/loss.py [MODULE ...] [--tests FILE ...]
                        [--max-minutes N] [--jobs N] [--keep DIR]

For each module, in turn: copy the repository (git's tracked and unignored files) to a scratch
folder, tell mutmut to mutate only that module and to run only its tests (the table in
tests/mutation/modules.toml, or ``--tests``), run it, then print one summary line, the
surviving mutants with their diffs, and delete the scratch folder. The working tree is never
written to, so a killed run cannot leave mutated code behind.

The tests import the mutated copy: mutmut puts ``mutants/src`` first on ``sys.path`` and this
script puts it on PYTHONPATH, ahead of the editable install's ``src`` (see docs/testing.md for
how mutmut's forced-fail and stats phases prove it).

Exit status: 0 when every module has at most 10 % survivors that are not declared equivalent;
1 when one has more; 2 for a usage error, a failed or unfinished run (time limit).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "tests" / "mutation" / "modules.toml"
MAX_SURVIVED = 0.10  # of all mutants, equivalent ones not counted as survivors
SKIP = {".venv", "mutants"}  # never copied to the scratch folder

# mutmut's status words (mutmut/stats.py) grouped the way the summary counts them.
KILLED = {"killed", "caught by type check", "segfault", "suspicious"}
SURVIVED = {"survived", "no tests"}  # "no tests": no selected test reaches the mutant
UNFINISHED = {"not checked", "check was interrupted by user"}


class Interrupted(Exception):
    """SIGTERM or SIGINT: stop mutmut and clean up before exiting."""


# -- the table: which tests cover a module, which of its mutants are equivalent ---------------


@dataclass(frozen=True)
class Equivalent:
    """Survivors that cannot be killed: the mutated line before and after, and why."""

    module: str
    function: str  # "moco_infonce", "CrossModalMoCo.forward"
    was: str
    now: tuple[str, ...]  # one mutant per entry
    reason: str

    def matches(self, function: str, was: str, now: str) -> bool:
        return (
            function == self.function
            and normalise(was) == normalise(self.was)
            and normalise(now) in {normalise(n) for n in self.now}
        )


@dataclass(frozen=True)
class Table:
    tests: dict[str, list[str]]  # module path -> test files
    equivalent: list[Equivalent]


def load_table(path: Path = TABLE) -> Table:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    tests = {module: list(spec["tests"]) for module, spec in data.get("modules", {}).items()}
    equivalent = []
    for entry in data.get("equivalent", []):
        now = entry["now"]
        equivalent.append(
            Equivalent(
                module=entry["module"],
                function=entry["function"],
                was=entry["was"],
                now=(now,) if isinstance(now, str) else tuple(now),
                reason=entry["reason"],
            )
        )
        if not entry["reason"].strip():
            raise ValueError(f"{path}: equivalent mutant in {entry['function']} has no reason")
    return Table(tests=tests, equivalent=equivalent)


def normalise(code: str) -> str:
    """Code lines compared without whitespace and inline comments: a reformat or a reworded
    comment does not orphan a declaration."""
    lines = (re.sub(r"\s+#.*$", "", line) for line in code.strip().splitlines())
    return "\n".join(re.sub(r"\s+", "", line) for line in lines if line.strip())


# -- arguments ---------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="workflow/bin/mutate",
        description="Mutation testing of modules with their own tests (docs/testing.md).",
    )
    parser.add_argument("modules", nargs="+", help="source files, e.g. src/wavbrivl/train/loss.py")
    parser.add_argument(
        "--tests",
        nargs="+",
        action="extend",
        help="test files to run instead of the table's (tests/mutation/modules.toml)",
    )
    parser.add_argument(
        "--max-minutes", type=float, default=20.0, help="time limit for the whole run (20)"
    )
    parser.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1, help="mutants tested at once (CPUs)"
    )
    parser.add_argument("--keep", type=Path, help="keep the scratch folders under this folder")
    args = parser.parse_args(argv)
    if args.max_minutes <= 0 or args.jobs < 1:
        parser.error("--max-minutes and --jobs must be positive")
    return args


def module_path(module: str, root: Path = ROOT) -> str:
    """The module as a repository-relative path under src/, checked to exist."""
    path = Path(module)
    path = path.resolve().relative_to(root) if path.is_absolute() else path
    if path.suffix != ".py" or path.parts[0] != "src" or not (root / path).is_file():
        raise ValueError(f"{module}: not a Python file under {root / 'src'}")
    return path.as_posix()


def tests_for(module: str, table: Table, override: list[str] | None) -> list[str]:
    tests = override or table.tests.get(module)
    if not tests:
        raise ValueError(f"{module}: no tests in {TABLE.relative_to(ROOT)}; name them with --tests")
    return tests


# -- results -----------------------------------------------------------------------------------


def function_of(mutant: str) -> str:
    """'wavbrivl.train.moco.xǁCrossModalMoCoǁforward__mutmut_3' -> 'CrossModalMoCo.forward'."""
    mangled = mutant.partition("__mutmut_")[0].rpartition(".")[2]
    if mangled.startswith("x_"):
        return mangled[2:]
    return ".".join(part for part in mangled[1:].split("ǁ") if part)


def changed_lines(diff: str) -> tuple[str, str]:
    """The removed and the added lines of a unified diff."""
    lines = diff.splitlines()
    was = [x[1:] for x in lines if x.startswith("-") and not x.startswith("---")]
    now = [x[1:] for x in lines if x.startswith("+") and not x.startswith("+++")]
    return "\n".join(was), "\n".join(now)


@dataclass
class Summary:
    module: str
    status: dict[str, str]  # mutant name -> mutmut's status word
    diffs: dict[str, str] = field(default_factory=dict)  # survivor -> its diff
    equivalent: dict[str, Equivalent] = field(default_factory=dict)  # survivor -> declaration
    timed_out: bool = False

    def count(self, words: set[str]) -> int:
        return sum(status in words for status in self.status.values())

    @property
    def survivors(self) -> list[str]:
        return [name for name, status in self.status.items() if status in SURVIVED]

    @property
    def unexplained(self) -> list[str]:
        return [name for name in self.survivors if name not in self.equivalent]

    @property
    def complete(self) -> bool:
        return bool(self.status) and not self.timed_out and not self.count(UNFINISHED)

    def passes(self) -> bool:
        """At most MAX_SURVIVED of all mutants survive without being declared equivalent."""
        return self.complete and len(self.unexplained) <= MAX_SURVIVED * len(self.status)

    def line(self) -> str:
        total = len(self.status)
        share = len(self.unexplained) / total if total else 0.0
        verdict = "ok" if self.passes() else ("UNFINISHED" if not self.complete else "FAIL")
        return (
            f"{self.module}: {total} mutants, {self.count(KILLED)} killed, "
            f"{self.count({'timeout'})} timeouts, {len(self.survivors)} survived "
            f"({len(self.equivalent)} equivalent, {len(self.unexplained)} not = {share:.1%}, "
            f"limit {MAX_SURVIVED:.0%}), {self.count(UNFINISHED)} not run: {verdict}"
        )

    def table_row(self) -> str:
        """docs/testing.md's row: module | mutants | killed | equivalent | survived."""
        killed = len(self.status) - len(self.survivors) - self.count(UNFINISHED)
        cells = [self.module, len(self.status), killed, len(self.equivalent), len(self.unexplained)]
        return "| " + " | ".join(str(c) for c in cells) + " |"


def match_equivalents(summary: Summary, declared: list[Equivalent]) -> list[Equivalent]:
    """Fill ``summary.equivalent`` from its survivors' diffs; return the declarations of this
    module that matched no survivor (stale: the code changed, or a test now kills it)."""
    mine = [e for e in declared if e.module == summary.module]
    used: set[int] = set()
    for name in summary.survivors:
        was, now = changed_lines(summary.diffs.get(name, ""))
        for i, entry in enumerate(mine):
            if entry.matches(function_of(name), was, now):
                summary.equivalent[name] = entry
                used.add(i)
                break
    return [entry for i, entry in enumerate(mine) if i not in used]


# -- running mutmut ----------------------------------------------------------------------------


def scratch_copy(dest: Path, root: Path = ROOT) -> None:
    """Copy git's tracked and unignored files (symlinks as links) to ``dest``."""
    listed = subprocess.run(  # noqa: S603 - fixed argv, no shell
        ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True,
        capture_output=True,
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        src = root / rel
        if Path(rel).parts[0] in SKIP or not (src.is_file() or src.is_symlink()):
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            target.symlink_to(os.readlink(src))
        else:
            shutil.copy2(src, target)


def mutmut_settings(module: str, tests: list[str], top_level: list[str]) -> str:
    """The [tool.mutmut] table for one module (TOML; JSON strings are valid TOML strings)."""
    also_copy = sorted(p for p in top_level if p not in {"src", "tests", "mutants"})
    settings = {
        "source_paths": ["src"],
        "only_mutate": [module],
        "pytest_add_cli_args_test_selection": tests,
        "pytest_add_cli_args": ["-p", "no:cacheprovider"],
        "also_copy": also_copy,
        # torch is not fork-safe once used: fork each mutant's run from a clean server.
        "process_isolation": "forkserver",
    }
    lines = ["", "[tool.mutmut]"] + [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
    return "\n".join(lines) + "\n"


def _mutmut(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "mutmut"), *args]


def _environment(scratch: Path) -> dict[str, str]:
    env = dict(os.environ)
    # The mutated copy first, even in subprocesses of the tests; the folder must exist before
    # Python starts, or the import system caches it as missing.
    (scratch / "mutants" / "src").mkdir(parents=True, exist_ok=True)
    env["PYTHONPATH"] = str(scratch / "mutants" / "src")
    # Parallel mutants, not threads: one thread each keeps torch fork-safe and the CPUs shared.
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = "1"
    return env


def run_mutmut(scratch: Path, jobs: int, seconds: float, log: Path) -> bool:
    """Run ``mutmut run`` in ``scratch``; False when it hit the time limit. The process group
    is killed on a timeout or an interrupt, so no mutant run outlives this script."""
    with log.open("w") as out:
        proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            _mutmut("run", "--max-children", str(jobs)),
            cwd=scratch,
            env=_environment(scratch),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            proc.wait(timeout=max(seconds, 1.0))
            return True
        except subprocess.TimeoutExpired:
            return False
        finally:
            if proc.poll() is None:
                _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def _output_in(scratch: Path, argv: list[str], *, check: bool) -> str:
    """The standard output of ``argv`` run in ``scratch`` with the mutated tree importable."""
    return subprocess.run(  # noqa: S603 - fixed argv, no shell
        argv,
        cwd=scratch,
        env=_environment(scratch),
        capture_output=True,
        text=True,
        check=check,
    ).stdout


def _ask(scratch: Path, *args: str) -> str:
    """The output of a quick mutmut command in ``scratch``."""
    return _output_in(scratch, _mutmut(*args), check=False)


# One process for every diff (``mutmut show`` takes seconds per mutant): mutmut's own function.
_DIFFS = """
import json, sys
from mutmut.mutation.diff_apply import get_diff_for_mutant
path, names = sys.argv[1], sys.argv[2:]
print(json.dumps({name: get_diff_for_mutant(name, path=path) for name in names}))
"""


def diffs(scratch: Path, module: str, names: list[str]) -> dict[str, str]:
    """Mutant name -> its unified diff against the original function."""
    if not names:
        return {}
    out = _output_in(scratch, [sys.executable, "-c", _DIFFS, module, *names], check=True)
    return json.loads(out)


def read_results(scratch: Path) -> dict[str, str]:
    """Mutant name -> status, from ``mutmut results --all true`` (empty when none ran)."""
    return parse_results(_ask(scratch, "results", "--all", "true"))


def parse_results(text: str) -> dict[str, str]:
    found = (re.match(r"^\s+(\S+__mutmut_\d+): (.+)$", line) for line in text.splitlines())
    return {m[1]: m[2].strip() for m in found if m}


def mutate_module(
    module: str, tests: list[str], scratch: Path, jobs: int, seconds: float
) -> tuple[Summary, Path]:
    scratch_copy(scratch)
    top_level = sorted(p.name for p in scratch.iterdir())
    with (scratch / "pyproject.toml").open("a", encoding="utf-8") as f:
        f.write(mutmut_settings(module, tests, top_level))
    log = scratch / "mutmut.log"
    finished = run_mutmut(scratch, jobs, seconds, log)
    summary = Summary(module=module, status=read_results(scratch), timed_out=not finished)
    summary.diffs = diffs(scratch, module, summary.survivors)
    return summary, log


def report(summary: Summary, stale: list[Equivalent], log: Path) -> None:
    print(summary.line())
    if not summary.status or (not summary.complete and not summary.timed_out):
        tail = log.read_text(errors="replace").replace("\r", "\n").splitlines()[-30:]
        print("  mutmut did not finish; the end of its log:", *tail, sep="\n    ")
    for name in summary.unexplained:
        print(f"\n  survived: {name} ({summary.status[name]})")
        print("    " + summary.diffs[name].strip().replace("\n", "\n    "))
    for name, entry in summary.equivalent.items():
        print(f"  equivalent: {name}: {entry.reason}")
    for entry in stale if summary.complete else []:
        print(f"  warning: stale equivalent in {entry.function}, it matches no survivor:")
        print(f"    {entry.was.strip()}  ->  {' | '.join(n.strip() for n in entry.now)}")
    print(f"  table row: {summary.table_row()}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        table = load_table()
        modules = [module_path(m) for m in args.modules]
        plan = [(m, tests_for(m, table, args.tests)) for m in modules]
    except (ValueError, OSError, KeyError, tomllib.TOMLDecodeError) as err:
        print(f"mutate: {err}", file=sys.stderr)
        return 2
    if not (Path(sys.executable).parent / "mutmut").exists():
        print("mutate: mutmut is not installed; run workflow/bin/setup", file=sys.stderr)
        return 2

    def interrupt(signum, frame):
        raise Interrupted(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
    deadline = time.monotonic() + 60 * args.max_minutes
    base = args.keep or Path(tempfile.mkdtemp(prefix="wavbrivl-mutate-"))
    status = 0
    try:
        for i, (module, tests) in enumerate(plan):
            if time.monotonic() >= deadline:
                print(f"mutate: {module} not run: the {args.max_minutes:g} min limit is spent")
                status = 2
                continue
            scratch = base / f"{i}-{Path(module).stem}"
            print(f"mutate: {module} with {' '.join(tests)} (in {scratch})", flush=True)
            summary, log = mutate_module(
                module, tests, scratch, args.jobs, deadline - time.monotonic()
            )
            stale = match_equivalents(summary, table.equivalent)
            report(summary, stale, log)
            status = max(status, 0 if summary.passes() else (1 if summary.complete else 2))
    except Interrupted as why:
        print(f"mutate: stopped by {why}", file=sys.stderr)
        status = 2
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
