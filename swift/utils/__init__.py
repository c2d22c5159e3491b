"""Small shared helpers: errors, logging, atomic file writes, environment."""
from swift.utils.errors import ArgumentError, DataError, MissingExtraError, SwiftError
from swift.utils.io import atomic_write_json, atomic_write_text, read_json
from swift.utils.logging import get_logger

__all__ = [
    "SwiftError", "DataError", "ArgumentError", "MissingExtraError",
    "atomic_write_json", "atomic_write_text", "read_json", "get_logger",
]
