"""The error of a dataset (or one of its images) that cannot be used as given."""

from __future__ import annotations

from ..errors import UserError


class DataError(ValueError, UserError):
    """A dataset that cannot be used as given; the message says how to fix it."""
