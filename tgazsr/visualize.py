"""``python -m tgazsr.visualize``: clean and adversarial attention of one image (see ``tgazsr.evaluation.visualize``)."""

import sys

from .evaluation.visualize import main

if __name__ == "__main__":
    sys.exit(main())
