"""The error of a dataset (or one of its images) that cannot be used as given."""

from __future__ import annotations

from ..errors import UserError


def _unwrapped(message: str) -> str:
    """The original message of an error re-raised from a DataLoader worker process.

    torch re-raises a worker's exception in the main process as the same class, built from the
    worker's whole traceback ("Caught X in DataLoader worker process 0. Original Traceback ...");
    the user is meant to read the message alone, the traceback stays behind ``--debug``.
    """
    if not message.startswith("Caught ") or "Original Traceback" not in message:
        return message
    lines = message.split("Original Traceback", 1)[1].splitlines()[1:]
    for i, line in enumerate(lines):
        if line and not line[0].isspace():
            first = line.split(": ", 1)[1] if ": " in line else line
            return "\n".join([first, *lines[i + 1:]]).strip()
    return message


class DataError(ValueError, UserError):
    """A dataset that cannot be used as given; the message says how to fix it."""

    def __init__(self, message: object = "", *args):
        super().__init__(_unwrapped(str(message)), *args)
