"""Metric modules that ship with tgazsr, loaded with ``evaluate.load(path)`` (no network)."""

from __future__ import annotations

import os

ACCURACY_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "accuracy.py")


def load_accuracy():
    """The package's accuracy metric, loaded by local path through ``evaluate``."""
    import evaluate

    return evaluate.load(ACCURACY_PATH)
