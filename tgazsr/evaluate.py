"""``python -m tgazsr.evaluate``: the evaluation harness's command (see ``tgazsr.evaluation``)."""

import sys

from .errors import run_command
from .evaluation.cli import main

if __name__ == "__main__":
    sys.exit(run_command(main))
