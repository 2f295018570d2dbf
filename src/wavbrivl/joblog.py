"""A job's log file for the workflow's script adapters.

Scripts send stderr (progress bars, warnings) to the rule's log. Done naively
(``sys.stderr = open(log)`` inside ``with``), a failure's traceback is lost: the file is
closed before Python prints it. Here the traceback is written to the log first.
"""

from __future__ import annotations

import contextlib
import sys
import traceback
from collections.abc import Iterator
from typing import TextIO


@contextlib.contextmanager
def job_log(path: str, mode: str = "w") -> Iterator[TextIO]:
    """Redirect stderr to ``path`` for the block; log a failure's traceback, then re-raise."""
    previous = sys.stderr
    with open(path, mode, encoding="utf-8") as log:
        sys.stderr = log
        try:
            yield log
        except BaseException:
            traceback.print_exc(file=log)
            log.flush()
            raise
        finally:
            sys.stderr = previous
