"""Domain errors. Domain code raises these; ``skylight.api.errors`` alone maps them to HTTP,
with one table for the error classes and one for the reason codes of failed operations.
They know nothing of status codes or of the API's error codes.
"""

from __future__ import annotations

from skylight.events.reasons import Reason


class SkylightError(Exception):
    """Base of every error a caller is meant to see."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(SkylightError):
    @classmethod
    def by_name(cls, kind: str, name: str) -> NotFound:
        return cls(f'not found: {kind} with name "{name}"')

    @classmethod
    def by_id(cls, kind: str, ident: str) -> NotFound:
        return cls(f'not found: {kind} with id "{ident}"')


class AlreadyExists(SkylightError):
    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f'already exists: {kind} "{name}"')


class Unauthenticated(SkylightError):
    """The request carries no credential, or one that proves nothing (Oxide: credentials
    missing or invalid). The message never repeats what was sent."""


class Forbidden(SkylightError):
    """The caller can see this resource but may not do this to it."""


class TooManyRequests(SkylightError):
    """The caller asked too often (logins) or holds too much open (event streams)."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class InvalidRequest(SkylightError):
    """The request cannot be carried out as asked (a rule of the resource forbids it)."""


class OAuthError(InvalidRequest):
    """A device-flow token request the client must act on; ``error`` is RFC 8628's code
    (``authorization_pending``, ``expired_token``, ...), which the CLI polls on."""

    def __init__(self, error: str, message: str) -> None:
        super().__init__(message)
        self.error = error


class InvalidValue(SkylightError):
    """A value in the request is not acceptable."""


class Conflict(SkylightError):
    """The resource is in a state that does not allow the operation right now."""


class ServiceUnavailable(SkylightError):
    """A part of the control plane this request needs is not running here."""


class OperationFailed(SkylightError):
    """A saga ended unwound; carries the reason it recorded in its outcome event, whose
    code decides what the caller is answered."""

    def __init__(self, reason: Reason) -> None:
        super().__init__(str(reason.get("message", "the operation failed")))
        self.reason = reason
