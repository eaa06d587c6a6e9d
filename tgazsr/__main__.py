"""``python -m tgazsr <command> ...``: the same as the ``tgazsr`` command."""

import sys

from .cli import main

sys.exit(main())
