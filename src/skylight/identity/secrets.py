"""Credentials, kept only as hashes.

Passwords are low-entropy, so they get a slow salted hash (argon2id, argon2-cffi's
defaults). Session and access tokens are 256 random bits, so one SHA-256 is enough to
make the stored value useless to a thief while keeping each request's lookup cheap.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()  # argon2id, RFC 9106's low-memory profile
# Verified against when the user does not exist, so an unknown name costs as much time as
# a wrong password and the answer's timing does not tell which usernames exist.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def configure_hashing(time_cost: int, memory_kib: int) -> None:
    """Set the cost of new password hashes (``--password-hash-cost``). A stored hash keeps
    the cost it was made with, so changing this never locks anyone out; the test suite
    lowers it, since it makes hundreds of users on two cores."""
    global _hasher, _DUMMY_HASH
    if (_hasher.time_cost, _hasher.memory_cost) == (time_cost, memory_kib):
        return
    _hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=1)
    _DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


TOKEN_PREFIX = "oxide-token-"  # as Oxide's access tokens look


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def password_matches(stored_hash: str | None, password: str) -> bool:
    """Constant work whether or not there is a hash to check against."""
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def new_token(prefix: str = "") -> str:
    return prefix + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def user_code() -> str:
    """What a person types to confirm a device: 8 letters from an alphabet without look-alikes."""
    alphabet = "BCDFGHJKLMNPQRSTVWXZ"
    code = "".join(secrets.choice(alphabet) for _ in range(8))
    return f"{code[:4]}-{code[4:]}"
