"""``python -m tgazsr.plot`` (also ``tgazsr plot``): see ``tgazsr.evaluation.plot``."""

import sys

from .errors import run_command
from .evaluation.plot import main

if __name__ == "__main__":
    sys.exit(run_command(main))
