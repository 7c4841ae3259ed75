"""The rack secret: how sled agents and control-plane replicas know each other.

Every machine of a rack holds the same secret (``--rack-secret-file`` on ``serve`` and
``sled-agent``; the embedded default generates one as ``DATA_DIR/rack-secret``). The secret
itself never travels: each side sends a credential derived from it with HMAC-SHA256, one per
role, so a credential seen on the wire proves only what it was made for:

* the control plane calls sled agents with ``Bearer cp.<HMAC(secret, "control-plane")>``;
* a sled agent speaks with ``Bearer sled.<serial, base64url>.<HMAC(secret, "sled:"+serial)>``,
  which names the one sled it may speak for: it registers that serial, and reports only
  for the sled registered under it.

Comparisons are constant-time (``hmac.compare_digest``). ``RackSecret`` never shows its key
(``repr`` hides it); nothing here logs, and errors name the file, never its content.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

FILE_NAME = "rack-secret"
# A generated secret has 32 random bytes; a given one must have at least 16 characters, so a
# placeholder such as "secret" is refused rather than trusted.
_MIN_LENGTH = 16
_CP_PREFIX = "cp."
_SLED_PREFIX = "sled."


class RackSecretError(Exception):
    """The secret cannot be had (missing, unreadable, too short); the message says which
    file and what to do, never what is in it."""


def default_path(data_dir: Path) -> Path:
    """Where the embedded default keeps the secret: ``DATA_DIR/rack-secret``."""
    return data_dir / FILE_NAME


@dataclass(frozen=True)
class RackSecret:
    """The key, and the credentials derived from it."""

    key: bytes = field(repr=False)

    def __repr__(self) -> str:
        return "RackSecret(<hidden>)"

    def _mac(self, purpose: str) -> str:
        return hmac.new(self.key, purpose.encode(), hashlib.sha256).hexdigest()

    def derived_key(self, purpose: str) -> bytes:
        """A 256-bit key for ``purpose`` alone (sealing webhook secrets in the store), which
        every replica of the rack derives alike and which tells nothing of the secret."""
        return hmac.new(self.key, f"key:{purpose}".encode(), hashlib.sha256).digest()

    # -- control plane -> sled agent -------------------------------------------------------

    def control_plane_credential(self) -> str:
        return _CP_PREFIX + self._mac("control-plane")

    def is_control_plane(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header carries the control plane's credential."""
        token = _bearer(authorization)
        return token is not None and hmac.compare_digest(
            token.encode(), self.control_plane_credential().encode()
        )

    # -- sled agent -> control plane -------------------------------------------------------

    def sled_credential(self, serial: str) -> str:
        """The credential of the agent of the sled with this serial."""
        name = base64.urlsafe_b64encode(serial.encode()).decode().rstrip("=")
        return f"{_SLED_PREFIX}{name}.{self._mac('sled:' + serial)}"

    def sled_serial(self, authorization: str | None) -> str | None:
        """The serial of the sled an ``Authorization`` header's credential speaks for, or
        None when it is missing, malformed or not made with this secret."""
        token = _bearer(authorization)
        if token is None or not token.startswith(_SLED_PREFIX):
            return None
        name, _, _mac = token[len(_SLED_PREFIX) :].partition(".")
        try:
            serial = base64.urlsafe_b64decode(name + "=" * (-len(name) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        expected = self.sled_credential(serial)
        if not hmac.compare_digest(token.encode(), expected.encode()):
            return None
        return serial


def bearer(credential: str) -> dict[str, str]:
    """The request header that carries a credential."""
    return {"Authorization": f"Bearer {credential}"}


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip().isascii():
        return None
    return token.strip()


# -- the file --------------------------------------------------------------------------------


def load(path: Path) -> RackSecret:
    """The secret in ``path`` (surrounding whitespace ignored)."""
    try:
        text = path.read_bytes().strip()
    except FileNotFoundError:
        raise RackSecretError(f"the rack secret file {path} does not exist") from None
    except OSError as exc:
        raise RackSecretError(
            f"the rack secret file {path} cannot be read: {exc.strerror}"
        ) from None
    if len(text) < _MIN_LENGTH:
        raise RackSecretError(
            f"the rack secret in {path} is too short: it needs at least {_MIN_LENGTH} characters"
        )
    return RackSecret(text)


def create(path: Path) -> RackSecret:
    """Write a new random secret to ``path`` (mode 0600) unless the file exists, and answer
    the secret the file holds. The file appears whole or not at all: the secret is written
    to a private temporary file that is then linked to its name, so two processes starting
    together agree on one secret and a crash leaves no half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        return load(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_hex(32).encode() + b"\n")
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):  # another process made it first: theirs
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return load(path)
