"""Warnings attributed to the user's line, not to wavbrivl's own code.

``warnings.warn(..., stacklevel=N)`` counts frames, so the right ``N`` depends on how many
of our functions lie between the user's call and the warning, and goes wrong when a helper
or a wrapper is added. :func:`warn_caller` instead walks up to the first frame outside this
package (what Python 3.12's ``skip_file_prefixes`` does; we support 3.11).
"""

from __future__ import annotations

import os
import sys
import warnings

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
#: Folders whose frames a warning passes over on its way to the user's line: this package,
#: and any code that wraps calls into it (the tests add mutation testing's trampolines).
SKIPPED_DIRS: list[str] = [PACKAGE_DIR]


def warn_caller(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` pointing at the nearest caller outside :data:`SKIPPED_DIRS`."""
    frame = sys._getframe(1)  # the wavbrivl function that warns
    level = 2  # its stack level as warnings.warn counts from here
    while frame.f_back is not None and is_skipped(frame.f_code.co_filename):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)


def is_skipped(filename: str) -> bool:
    """Whether code from ``filename`` lies in one of :data:`SKIPPED_DIRS`."""
    path = os.path.abspath(filename)
    return any(path.startswith(folder) for folder in SKIPPED_DIRS)
