"""The error a row can fail with."""
from __future__ import annotations

from swift.utils.errors import SwiftError


class EncodeError(SwiftError):
    """A row cannot be encoded. `reason` is "too_long", "no_labels" or "bad_messages"."""

    def __init__(self, reason: str, message: str):
        self.reason = reason
        super().__init__(message)

    def __reduce__(self):  # picklable, for datasets.map workers
        return (EncodeError, (self.reason, str(self)))
