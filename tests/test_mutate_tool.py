"""workflow/bin/mutate's own logic, without running mutmut: arguments, the module -> tests
table, equivalent-mutant matching, the 10 % rule, the scratch copy, the settings it writes."""

from __future__ import annotations

import ast
import subprocess
import tomllib

import pytest
from conftest import REPO, load_script

TOOL = REPO / "workflow" / "bin" / "mutate.py"


def _tool():
    return load_script(TOOL, "wavbrivl_mutate_tool")


mutate = _tool()

DIFF = """\
--- src/wavbrivl/train/loss.py
+++ src/wavbrivl/train/loss.py
@@ -12,7 +12,7 @@
     logits = torch.cat([key_logits, q @ queue.T], dim=1) / temperature  # (B, B|1 + K)
     positives = torch.cat([key_positive, extra_positives], dim=1)
-    log_prob = F.log_softmax(logits, dim=1)
+    log_prob = F.log_softmax(logits, dim=None)
     loss = -torch.where(positives, log_prob, torch.zeros_like(log_prob)).sum() / b"""


def _equivalent(**overrides):
    values = dict(
        module="src/wavbrivl/train/loss.py",
        function="moco_infonce",
        was="log_prob = F.log_softmax(logits, dim=1)",
        now=("log_prob = F.log_softmax(logits, dim=None)",),
        reason="softmax over the last axis either way",
    )
    return mutate.Equivalent(**{**values, **overrides})


def _summary(n_killed: int, survivors: list[str], **statuses: str):
    status = {f"m.x_f__mutmut_{i}": "killed" for i in range(n_killed)}
    status |= {name: "survived" for name in survivors}
    status |= statuses
    return mutate.Summary(module="src/m.py", status=status)


# -- arguments and the table -------------------------------------------------------------------


def test_arguments_take_modules_tests_and_limits():
    args = mutate.parse_args(["src/a.py", "src/b.py", "--tests", "tests/t1.py", "--tests", "t2"])
    assert args.modules == ["src/a.py", "src/b.py"]
    assert args.tests == ["tests/t1.py", "t2"]
    assert args.max_minutes == 20.0 and args.jobs >= 1 and args.keep is None
    assert mutate.parse_args(["src/a.py", "--max-minutes", "2.5"]).max_minutes == 2.5
    for bad in (["--max-minutes", "0"], ["--jobs", "0"], []):
        with pytest.raises(SystemExit):
            mutate.parse_args(["src/a.py", *bad] if bad else bad)


def test_module_paths_must_be_python_files_under_src():
    loss = "src/wavbrivl/train/loss.py"
    assert mutate.module_path(loss) == loss
    assert mutate.module_path(str(REPO / loss)) == loss
    for bad in ("src/wavbrivl/train/nothing.py", "tests/test_moco_loss.py", "README.md"):
        with pytest.raises(ValueError, match="not a Python file"):
            mutate.module_path(bad)


def test_tests_come_from_the_table_unless_overridden():
    table = mutate.Table(tests={"src/a.py": ["tests/test_a.py"]}, equivalent=[])
    assert mutate.tests_for("src/a.py", table, None) == ["tests/test_a.py"]
    assert mutate.tests_for("src/a.py", table, ["tests/x.py"]) == ["tests/x.py"]
    assert mutate.tests_for("src/b.py", table, ["tests/x.py"]) == ["tests/x.py"]
    with pytest.raises(ValueError, match="src/b.py: no tests"):
        mutate.tests_for("src/b.py", table, None)


def test_the_committed_table_names_real_files_and_real_code():
    """Every module and test file exists; every equivalent mutant has a reason and its `was`
    line is still in the named function (a stale declaration fails here, before any run)."""
    table = mutate.load_table()
    assert table.tests, "the table lists no module"
    for module, tests in table.tests.items():
        assert mutate.module_path(module) == module
        for test in tests:
            assert (REPO / test.partition("::")[0]).is_file(), test
    for entry in table.equivalent:
        assert entry.module in table.tests, entry
        assert entry.reason.strip() and entry.now, entry
        source = (REPO / entry.module).read_text()
        functions = {
            f"{cls.name}.{node.name}" if cls else node.name: ast.get_source_segment(source, node)
            for cls, node in _functions(ast.parse(source))
        }
        assert entry.function in functions, entry
        assert mutate.normalise(entry.was) in mutate.normalise(functions[entry.function]), entry


def _functions(tree):
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            yield None, node
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    yield node, item


def test_equivalents_without_a_reason_are_refused(tmp_path):
    path = tmp_path / "modules.toml"
    path.write_text(
        '[modules."src/a.py"]\ntests = ["t"]\n\n[[equivalent]]\nmodule = "src/a.py"\n'
        'function = "f"\nwas = "x = 1"\nnow = "x = 2"\nreason = " "\n'
    )
    with pytest.raises(ValueError, match="no reason"):
        mutate.load_table(path)


# -- reading mutmut's results ------------------------------------------------------------------


def test_function_names_from_mutant_names():
    assert mutate.function_of("wavbrivl.train.loss.x_moco_infonce__mutmut_3") == "moco_infonce"
    method = "wavbrivl.train.moco.xǁCrossModalMoCoǁforward__mutmut_12"
    assert mutate.function_of(method) == "CrossModalMoCo.forward"


def test_results_and_diffs_are_parsed():
    text = (
        "    wavbrivl.train.loss.x_f__mutmut_1: killed\n"
        "    wavbrivl.train.loss.xǁCǁm__mutmut_2: no tests\n"
        "some other line\n"
    )
    assert mutate.parse_results(text) == {
        "wavbrivl.train.loss.x_f__mutmut_1": "killed",
        "wavbrivl.train.loss.xǁCǁm__mutmut_2": "no tests",
    }
    was, now = mutate.changed_lines(DIFF)
    assert was == "    log_prob = F.log_softmax(logits, dim=1)"
    assert now == "    log_prob = F.log_softmax(logits, dim=None)"


def test_normalise_ignores_whitespace_and_comments_only():
    assert mutate.normalise("  x = f(a,  b)  # why\n\n") == mutate.normalise("x = f(a, b)")
    assert mutate.normalise("x = f(a, )") == mutate.normalise("x = f(a,)")
    assert mutate.normalise("x = f(a, b)") != mutate.normalise("x = f(b, a)")
    assert mutate.normalise('s = "a#b"') == 's="a#b"'  # a '#' inside code is kept


def test_equivalents_match_by_function_and_changed_line():
    declared = [
        _equivalent(),
        _equivalent(function="cx_loss"),  # same lines, other function: not this mutant
        _equivalent(module="src/other.py"),  # another module's declaration: ignored
        _equivalent(was="x = 1", now=("x = 2",)),  # matches nothing: stale
    ]
    name = "wavbrivl.train.loss.x_moco_infonce__mutmut_44"
    other = "wavbrivl.train.loss.x_moco_infonce__mutmut_45"
    summary = mutate.Summary(
        module="src/wavbrivl/train/loss.py",
        status={name: "survived", other: "survived", "x.x_f__mutmut_1": "killed"},
        diffs={name: DIFF, other: DIFF.replace("dim=None", "dim=2")},
    )
    stale = mutate.match_equivalents(summary, declared)
    assert summary.equivalent == {name: declared[0]}
    assert summary.unexplained == [other]
    assert stale == [declared[1], declared[3]]


# -- the 10 % rule -----------------------------------------------------------------------------


def test_at_most_ten_percent_may_survive_unexplained():
    ten = [f"m.x_f__mutmut_s{i}" for i in range(10)]
    assert _summary(90, ten).passes()  # 10 of 100
    assert not _summary(89, [*ten, "m.x_f__mutmut_s10"]).passes()  # 11 of 100
    untested = {"m.x_f__mutmut_n": "no tests", "m.x_f__mutmut_o": "no tests"}
    assert not _summary(89, ten[:9], **untested).passes()  # "no tests" survives too: 11
    summary = _summary(85, ten + [f"m.x_f__mutmut_e{i}" for i in range(5)])
    assert not summary.passes()  # 15 of 100
    summary.equivalent = {f"m.x_f__mutmut_e{i}": _equivalent() for i in range(5)}
    assert summary.passes()  # 10 of 100 once 5 are declared equivalent
    assert summary.table_row() == "| src/m.py | 100 | 85 | 5 | 10 |"
    assert "100 mutants, 85 killed, 0 timeouts, 15 survived (5 equivalent, 10 not" in (
        summary.line()
    )


def test_unfinished_runs_never_pass():
    assert not _summary(10, [], **{"m.x_f__mutmut_x": "not checked"}).passes()
    timed_out = _summary(10, [])
    timed_out.timed_out = True
    assert not timed_out.passes() and "UNFINISHED" in timed_out.line()
    assert not mutate.Summary(module="src/m.py", status={}).passes()  # mutmut failed


def test_timeouts_count_as_killed_and_no_tests_as_survived():
    summary = _summary(8, [], **{"m.x_f__mutmut_t": "timeout", "m.x_f__mutmut_n": "no tests"})
    assert summary.survivors == ["m.x_f__mutmut_n"]
    assert summary.table_row() == "| src/m.py | 10 | 9 | 0 | 1 |"


# -- what it hands mutmut ----------------------------------------------------------------------


def test_mutmut_settings_mutate_one_module_with_its_tests():
    text = mutate.mutmut_settings(
        "src/wavbrivl/train/loss.py",
        ["tests/test_moco_loss.py"],
        ["README.md", "src", "tests", "workflow", "mutants"],
    )
    settings = tomllib.loads(text)["tool"]["mutmut"]
    assert settings["only_mutate"] == ["src/wavbrivl/train/loss.py"]
    assert settings["source_paths"] == ["src"]
    assert settings["pytest_add_cli_args_test_selection"] == ["tests/test_moco_loss.py"]
    assert settings["also_copy"] == ["README.md", "workflow"]


def test_scratch_copy_takes_tracked_and_unignored_files_only(tmp_path):
    repo, dest = tmp_path / "repo", tmp_path / "scratch"
    (repo / "src" / "pkg").mkdir(parents=True)
    (repo / "src" / "pkg" / "a.py").write_text("A = 1\n")
    (repo / "data.yaml").write_text("x: 1\n")
    (repo / "src" / "pkg" / "data.yaml").symlink_to("../../data.yaml")
    (repo / ".gitignore").write_text("/results/\n")
    (repo / "results").mkdir()
    (repo / "results" / "big.bin").write_text("ignored")
    (repo / ".venv").mkdir()
    (repo / ".venv" / "python").write_text("not copied")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "add", "src", ".gitignore"], check=True)
    (repo / "new.py").write_text("untracked but not ignored\n")

    mutate.scratch_copy(dest, root=repo)
    copied = {p.relative_to(dest).as_posix() for p in dest.rglob("*") if not p.is_dir()}
    assert copied == {".gitignore", "data.yaml", "new.py", "src/pkg/a.py", "src/pkg/data.yaml"}
    assert (dest / "src" / "pkg" / "data.yaml").is_symlink()
    assert (dest / "src" / "pkg" / "data.yaml").read_text() == "x: 1\n"


def test_report_prints_survivor_diffs_and_stale_declarations(tmp_path, capsys):
    name = "wavbrivl.train.loss.x_moco_infonce__mutmut_45"
    summary = mutate.Summary(
        module="src/wavbrivl/train/loss.py",
        status={name: "survived", "x.x_f__mutmut_1": "killed"},
        diffs={name: DIFF},
    )
    stale = mutate.match_equivalents(summary, [_equivalent(now=("x = 2",))])
    mutate.report(summary, stale, tmp_path / "mutmut.log")
    out = capsys.readouterr().out
    assert f"survived: {name} (survived)" in out
    assert "+    log_prob = F.log_softmax(logits, dim=None)" in out
    assert "stale equivalent in moco_infonce" in out
    assert "table row: | src/wavbrivl/train/loss.py | 2 | 1 | 0 | 1 |" in out
    summary.timed_out = True  # an unfinished run proves nothing stale
    mutate.report(summary, stale, tmp_path / "mutmut.log")
    assert "stale" not in capsys.readouterr().out
