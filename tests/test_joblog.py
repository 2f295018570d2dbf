"""A failing job's traceback reaches its log file."""

from __future__ import annotations

import sys

import pytest

from wavbrivl.joblog import job_log


def test_traceback_lands_in_the_log_and_stderr_is_restored(tmp_path):
    path = tmp_path / "job.log"
    before = sys.stderr
    with pytest.raises(KeyError), job_log(str(path)) as log:
        print("working", file=log)
        raise KeyError("missing_column")
    text = path.read_text()
    assert "working" in text
    assert "KeyError: 'missing_column'" in text and "Traceback" in text
    assert sys.stderr is before


def test_append_mode_keeps_earlier_attempts(tmp_path):
    path = tmp_path / "job.log"
    with job_log(str(path)) as log:
        print("attempt 1", file=log)
    with job_log(str(path), mode="a") as log:
        print("attempt 2", file=log)
    assert path.read_text().splitlines() == ["attempt 1", "attempt 2"]
