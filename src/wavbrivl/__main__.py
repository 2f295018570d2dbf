"""``python -m wavbrivl``: the ``wavbrivl`` command (:mod:`wavbrivl.cli`)."""

import sys

from wavbrivl.cli import main

sys.exit(main())
