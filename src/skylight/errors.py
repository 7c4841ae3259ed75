"""Domain errors. Domain code raises these; ``skylight.api.errors`` alone maps them to HTTP.

Each carries an Oxide ``error_code`` so the mapping is one table, not a chain of ifs.
"""

from __future__ import annotations

from typing import Any


class SkylightError(Exception):
    """Base of every error a caller is meant to see."""

    error_code: str = "Internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(SkylightError):
    error_code = "ObjectNotFound"

    @classmethod
    def by_name(cls, kind: str, name: str) -> NotFound:
        return cls(f'not found: {kind} with name "{name}"')

    @classmethod
    def by_id(cls, kind: str, ident: str) -> NotFound:
        return cls(f'not found: {kind} with id "{ident}"')


class AlreadyExists(SkylightError):
    error_code = "ObjectAlreadyExists"

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f'already exists: {kind} "{name}"')


class Forbidden(SkylightError):
    """The caller may not do this (until identity lands: an operator-only resource)."""

    error_code = "Forbidden"


class InvalidRequest(SkylightError):
    error_code = "InvalidRequest"


class InvalidValue(SkylightError):
    error_code = "InvalidValue"


class Conflict(SkylightError):
    """The resource is in a state that does not allow the operation right now."""

    error_code = "Conflict"


class InsufficientCapacity(SkylightError):
    """No sled can take the instance; ``reason`` is the explained reason (see events.reasons)."""

    error_code = "InsufficientCapacity"

    def __init__(self, message: str, reason: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.reason = reason


class ServiceUnavailable(SkylightError):
    error_code = "ServiceUnavailable"


class InternalError(SkylightError):
    error_code = "Internal"


class OperationFailed(SkylightError):
    """A saga ended unwound; carries the reason it recorded in its outcome event."""

    def __init__(self, reason: dict[str, Any], error_code: str = "Internal") -> None:
        super().__init__(str(reason.get("message", "the operation failed")))
        self.reason = reason
        self.error_code = error_code
