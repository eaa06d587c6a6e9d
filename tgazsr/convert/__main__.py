"""``python -m tgazsr.convert``: the same as ``tgazsr convert``."""

import sys

from ..errors import run_command
from .cli import main

sys.exit(run_command(main))
