"""``python -m tgazsr.evaluate``: the evaluation harness's command (see ``tgazsr.evaluation``)."""

import sys

from .evaluation.cli import main

if __name__ == "__main__":
    sys.exit(main())
