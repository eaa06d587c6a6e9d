"""``python -m tgazsr.visualize`` (also ``tgazsr visualize``): see ``tgazsr.evaluation.visualize``."""

import sys

from .errors import run_command
from .evaluation.visualize import main

if __name__ == "__main__":
    sys.exit(run_command(main))
