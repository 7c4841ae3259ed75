"""The first user: on a store with no silo yet, the recovery silo and its admin.

The admin is fleet admin and silo admin, so it can create silos and users and grant roles.
Its password is the operator's (``--recovery-password-file`` or
``SKYLIGHT_RECOVERY_PASSWORD``); with neither, one is generated and written to
``DATA_DIR/recovery-password`` (mode 0600). Only the file's path is ever logged.
"""

from __future__ import annotations

import logging
import os
import secrets as random
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from skylight.identity import secrets
from skylight.ids import new_id
from skylight.store import identity as rows
from skylight.store.schema import silo_user

log = logging.getLogger(__name__)

# The recovery silo binds nothing by default: an operator sets quotas on the silos it makes.
UNLIMITED = 2**62


@dataclass(frozen=True)
class Recovery:
    silo_name: str
    user_name: str
    password: str | None  # None: the generated one, kept under ``data_dir``
    data_dir: Path


def recovery_password(password: str | None, data_dir: Path) -> tuple[str, Path | None]:
    """The recovery password, and the file it was generated into (None if it was given)."""
    if password is not None:
        return password, None
    path = data_dir / "recovery-password"
    if path.exists():
        return path.read_text().strip(), path
    data_dir.mkdir(parents=True, exist_ok=True)
    generated = random.token_urlsafe(18)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(generated + "\n")
    return generated, path


def ensure_recovery(conn: Connection, recovery: Recovery) -> bool:
    """Create the recovery silo and admin if the store has never had a user; True if it did.
    A peer doing the same at the same moment wins and this one steps back."""
    if conn.execute(sa.select(silo_user.c.id).limit(1)).first():
        return False
    password, generated = recovery_password(recovery.password, recovery.data_dir)
    silo_id, user_id = new_id(), new_id()
    try:
        with conn.begin_nested():
            rows.insert_silo(
                conn,
                silo_id=silo_id,
                name=recovery.silo_name,
                description="the recovery silo, made on the first start",
                discoverable=False,
                quotas=(UNLIMITED, UNLIMITED, UNLIMITED),
            )
            rows.insert_user(
                conn,
                user_id=user_id,
                silo_id=silo_id,
                name=recovery.user_name,
                password_hash=secrets.hash_password(password),
            )
            rows.replace_assignments(conn, "fleet", "", [(user_id, "admin")])
            rows.replace_assignments(conn, "silo", silo_id, [(user_id, "admin")])
    except sa.exc.IntegrityError:
        return False
    where = f"its password is in {generated}" if generated else "with the password you gave"
    log.warning(
        "first start: created silo %r and its admin %r (fleet admin); %s",
        recovery.silo_name,
        recovery.user_name,
        where,
    )
    return True
