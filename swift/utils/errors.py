"""One error family for everything a user can get wrong.

Messages name the file, row, field or flag, say what was found and what to do. The CLI prints
`SwiftError`s without a traceback; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations


class SwiftError(Exception):
    """Base class of every error caused by user input or environment."""


class ArgumentError(SwiftError):
    """A flag or argument has a bad value or combination."""

    def __init__(self, flag: str, message: str):
        self.flag, self.reason = flag, message
        super().__init__(f"--{flag.lstrip('-')}: {message}")


class DataError(SwiftError):
    """A dataset row is malformed. Names the file, the 1-based row number and the field."""

    def __init__(self, message: str, *, file: str | None = None, row: int | None = None,
                 field: str | None = None):
        self.file, self.row, self.field, self.reason = file, row, field, message
        where = []
        if file is not None:
            where.append(str(file))
        if row is not None:
            where.append(f"row {row}")
        if field is not None:
            where.append(f"field '{field}'")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class MissingExtraError(SwiftError):
    """An optional package is needed but not installed."""

    def __init__(self, package: str, extra: str, purpose: str = ""):
        self.package, self.extra = package, extra
        what = f" for {purpose}" if purpose else ""
        super().__init__(
            f"The package '{package}' is needed{what} but is not installed. "
            f"Install it with: pip install 'swiftlab[{extra}]'"
        )


def require(package: str, extra: str, purpose: str = ""):
    """Import `package` lazily, or raise MissingExtraError naming the pip extra."""
    import importlib

    try:
        return importlib.import_module(package)
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise MissingExtraError(package, extra, purpose) from e
