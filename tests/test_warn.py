"""wavbrivl.warn: a warning points at the first line outside the package, however deep.

Frames "inside the package" are made by compiling code under a file name in the package's
folder (nothing is written there)."""

from __future__ import annotations

import os
import sys
import warnings

import pytest

from wavbrivl import warn
from wavbrivl.warn import PACKAGE_DIR, is_skipped, warn_caller

# Three nested functions as if they were wavbrivl's: outer -> middle -> inner -> warn_caller.
INSIDE = """
def inner(message):
    warn_caller(message)

def middle(message):
    inner(message)

def outer(message):
    middle(message)
"""


def package_functions(name: str = "fake_module.py") -> dict:
    namespace = {"warn_caller": warn_caller}
    exec(compile(INSIDE, os.path.join(PACKAGE_DIR, name), "exec"), namespace)  # noqa: S102
    return namespace


def caught(call, *args):
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        line = sys._getframe().f_lineno + 1
        call(*args)
    assert len(records) == 1
    return records[0], line


def test_a_warning_from_three_calls_deep_points_at_the_user_s_line():
    record, line = caught(package_functions()["outer"], "deep")
    assert (record.filename, record.lineno) == (__file__, line)
    assert (str(record.message), record.category) == ("deep", UserWarning)


def test_a_warning_from_one_call_deep_points_at_the_user_s_line():
    record, line = caught(package_functions()["inner"], "shallow")
    assert (record.filename, record.lineno) == (__file__, line)


def test_called_from_outside_the_package_it_points_at_that_line():
    record, line = caught(warn_caller, "direct")
    assert (record.filename, record.lineno) == (__file__, line)


def test_the_category_is_passed_on():
    with pytest.warns(DeprecationWarning, match="^old$") as records:
        warn_caller("old", DeprecationWarning)
    assert records[0].filename == __file__


def test_a_stack_all_inside_the_package_stops_at_its_outermost_frame(monkeypatch):
    # Everything counts as the package: the warning goes to the outermost frame there is.
    monkeypatch.setattr(warn, "is_skipped", lambda filename: True)
    record, _ = caught(package_functions()["outer"], "everywhere")
    outermost = sys._getframe()
    while outermost.f_back is not None:
        outermost = outermost.f_back
    assert (record.filename, record.lineno) == (
        outermost.f_code.co_filename,
        outermost.f_lineno,
    )


def test_skipped_by_folder():
    assert is_skipped(warn.__file__)
    assert is_skipped(os.path.join(PACKAGE_DIR, "sub", "x.py"))
    assert not is_skipped(__file__)
    # A sibling folder whose name starts like the package's is not the package.
    assert not is_skipped(PACKAGE_DIR.rstrip(os.sep) + "_extra" + os.sep + "x.py")
    # Relative names are taken from the working directory.
    assert is_skipped(os.path.relpath(warn.__file__))


def test_a_wrapper_s_folder_can_be_skipped_too(tmp_path, monkeypatch):
    # A wrapper outside the package (here: compiled under tmp_path) calling into it.
    wrapper = {"outer": package_functions()["outer"]}
    code = "def wrapped(message):\n    outer(message)\n"
    exec(compile(code, str(tmp_path / "wrapper.py"), "exec"), wrapper)  # noqa: S102
    record, _ = caught(wrapper["wrapped"], "w")
    assert record.filename == str(tmp_path / "wrapper.py")  # not skipped: the wrapper's line
    monkeypatch.setattr(warn, "SKIPPED_DIRS", [*warn.SKIPPED_DIRS, str(tmp_path) + os.sep])
    record, line = caught(wrapper["wrapped"], "w")
    assert (record.filename, record.lineno) == (__file__, line)
