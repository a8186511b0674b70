"""``python -m gmmlimit``: the ``gmmlimit`` command (:mod:`gmmlimit.cli`)."""

import sys

from .cli import main

sys.exit(main())
