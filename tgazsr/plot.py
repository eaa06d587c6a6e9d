"""``python -m tgazsr.plot``: the robust-versus-clean plot (see ``tgazsr.evaluation.plot``)."""

import sys

from .evaluation.plot import main

if __name__ == "__main__":
    sys.exit(main())
