"""Webhook secrets at rest: sealed (AES-256-GCM) with a key derived from the rack secret,
so that a copy of the store, a backup or a replica of the database, does not hold them in
clear. Signing needs the secret itself, so a hash will not do.

A sealed value reads ``v1.<base64 nonce+ciphertext>``; anything else is a secret written
before sealing existed, which ``ControlPlane`` seals on its start (``seal_clear``).
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_PREFIX = "v1."
_AAD = b"skylight webhook secret"


class Sealer:
    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return "Sealer(<key hidden>)"

    def seal(self, secret: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, secret.encode(), _AAD)
        return _PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, stored: str) -> str:
        if not is_sealed(stored):
            return stored  # written before secrets were sealed: sealed on the next start
        raw = base64.urlsafe_b64decode(stored[len(_PREFIX) :])
        try:
            return self._aead.decrypt(raw[:12], raw[12:], _AAD).decode()
        except InvalidTag:
            raise ValueError(
                "a webhook secret was sealed with another rack secret: check --rack-secret-file"
            ) from None


def is_sealed(stored: str) -> bool:
    return stored.startswith(_PREFIX)
