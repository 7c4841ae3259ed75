"""Silos, their users, role assignments, sessions and device tokens.

Secrets never come here in clear: callers hand over a password's argon2id hash and a
token's SHA-256, and look tokens up by that hash.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from skylight.clock import now
from skylight.store import Row, paging
from skylight.store.rows import CREATED, NEVER_MODIFIED, insert_new
from skylight.store.schema import (
    console_session,
    device_access_token,
    device_auth_request,
    instance,
    project,
    role_assignment,
    silo,
    silo_user,
    sled_reservation,
)
from skylight.store.schema import disk as disk_table

_live_silo = silo.c.time_deleted.is_(None)
_live_user = silo_user.c.time_deleted.is_(None)


# -- silos -------------------------------------------------------------------------------


def silo_by_id(conn: Connection, silo_id: str) -> Row | None:
    return conn.execute(sa.select(silo).where(silo.c.id == silo_id, _live_silo)).first()


def silo_by_name(conn: Connection, name: str) -> Row | None:
    return conn.execute(sa.select(silo).where(silo.c.name == name, _live_silo)).first()


def silo_page(
    conn: Connection, *, sort: str, limit: int, marker: str | None, silo_id: str | None = None
) -> list[Row]:
    """Discoverable silos (and ``silo_id``, the caller's own, which it may always see)."""
    q = sa.select(silo).where(_live_silo, sa.or_(silo.c.discoverable, silo.c.id == (silo_id or "")))
    return paging.page(conn, q, silo, sort=sort, limit=limit, marker=marker)


def insert_silo(
    conn: Connection,
    *,
    silo_id: str,
    name: str,
    description: str,
    discoverable: bool,
    quotas: tuple[int, int, int],
) -> None:
    cpus, memory, storage = quotas
    insert_new(
        conn,
        silo,
        CREATED,
        id=silo_id,
        name=name,
        description=description,
        discoverable=discoverable,
        identity_mode="local_only",
        quota_cpus=cpus,
        quota_memory=memory,
        quota_storage=storage,
    )


def update_silo(conn: Connection, silo_id: str, **values: object) -> None:
    conn.execute(silo.update().where(silo.c.id == silo_id).values(time_modified=now(), **values))


def silo_has_projects(conn: Connection, silo_id: str) -> bool:
    q = sa.select(project.c.id).where(
        project.c.silo_id == silo_id, project.c.time_deleted.is_(None)
    )
    return conn.execute(q.limit(1)).first() is not None


def delete_silo(conn: Connection, silo_id: str) -> None:
    """The silo and everything that only means something inside it: its users, their
    credentials, and the roles granted on it or to them."""
    t = now()
    users = sa.select(silo_user.c.id).where(silo_user.c.silo_id == silo_id)
    for table in (console_session, device_access_token):
        conn.execute(table.delete().where(table.c.user_id.in_(users)))
    conn.execute(role_assignment.delete().where(role_assignment.c.identity_id.in_(users)))
    conn.execute(role_assignment.delete().where(role_assignment.c.resource_id == silo_id))
    conn.execute(silo_user.update().where(silo_user.c.silo_id == silo_id).values(time_deleted=t))
    conn.execute(silo.update().where(silo.c.id == silo_id).values(time_deleted=t))


def silo_of_instance(conn: Connection, instance_id: str, *, lock: bool = False) -> Row | None:
    """The silo the instance's project belongs to; ``lock``: held until commit, so that
    quota checks of one silo take turns (PostgreSQL; SQLite has one writer anyway)."""
    q = (
        sa.select(silo)
        .join(project, project.c.silo_id == silo.c.id)
        .join(instance, instance.c.project_id == project.c.id)
        .where(instance.c.id == instance_id)
    )
    return conn.execute(q.with_for_update(of=silo) if lock else q).first()


def provisioned(conn: Connection, silo_id: str | None = None) -> dict[str, tuple[int, int]]:
    """silo id -> (vCPUs, memory) held by its instances' sled reservations: what its
    starting and running instances take (one silo, or all)."""
    q = (
        sa.select(
            project.c.silo_id,
            sa.func.coalesce(sa.func.sum(sled_reservation.c.hardware_threads), 0),
            sa.func.coalesce(sa.func.sum(sled_reservation.c.memory), 0),
        )
        .select_from(sled_reservation)
        .join(instance, instance.c.id == sled_reservation.c.instance_id)
        .join(project, project.c.id == instance.c.project_id)
        .group_by(project.c.silo_id)
    )
    if silo_id is not None:
        q = q.where(project.c.silo_id == silo_id)
    return {r[0]: (int(r[1]), int(r[2])) for r in conn.execute(q)}


def disk_storage(conn: Connection, silo_ids: list[str]) -> dict[str, int]:
    """silo id -> bytes of its live disks."""
    q = (
        sa.select(project.c.silo_id, sa.func.coalesce(sa.func.sum(disk_table.c.size), 0))
        .select_from(disk_table)
        .join(project, project.c.id == disk_table.c.project_id)
        .where(disk_table.c.time_deleted.is_(None), project.c.silo_id.in_(silo_ids))
        .group_by(project.c.silo_id)
    )
    return {r[0]: int(r[1]) for r in conn.execute(q)}


# -- users -------------------------------------------------------------------------------


def user_by_id(conn: Connection, user_id: str) -> Row | None:
    return conn.execute(sa.select(silo_user).where(silo_user.c.id == user_id, _live_user)).first()


def user_by_name(conn: Connection, silo_id: str, name: str) -> Row | None:
    q = sa.select(silo_user).where(
        silo_user.c.silo_id == silo_id, silo_user.c.name == name, _live_user
    )
    return conn.execute(q).first()


def user_page(
    conn: Connection, silo_id: str, *, sort: str, limit: int, marker: str | None
) -> list[Row]:
    q = sa.select(silo_user).where(silo_user.c.silo_id == silo_id, _live_user)
    return paging.page(conn, q, silo_user, sort=sort, limit=limit, marker=marker)


def insert_user(
    conn: Connection, *, user_id: str, silo_id: str, name: str, password_hash: str | None
) -> None:
    insert_new(
        conn,
        silo_user,
        CREATED,
        id=user_id,
        silo_id=silo_id,
        name=name,
        password_hash=password_hash,
    )


def set_password_hash(conn: Connection, user_id: str, password_hash: str | None) -> None:
    conn.execute(
        silo_user.update()
        .where(silo_user.c.id == user_id)
        .values(password_hash=password_hash, time_modified=now())
    )


def delete_user(conn: Connection, user_id: str) -> None:
    for table in (console_session, device_access_token):
        conn.execute(table.delete().where(table.c.user_id == user_id))
    conn.execute(role_assignment.delete().where(role_assignment.c.identity_id == user_id))
    conn.execute(silo_user.update().where(silo_user.c.id == user_id).values(time_deleted=now()))


# -- roles -------------------------------------------------------------------------------


def roles_of(conn: Connection, user_id: str) -> list[Row]:
    """Every (resource_type, resource_id, role_name) the user holds."""
    q = sa.select(
        role_assignment.c.resource_type, role_assignment.c.resource_id, role_assignment.c.role_name
    ).where(role_assignment.c.identity_id == user_id)
    return list(conn.execute(q))


def assignments_on(conn: Connection, resource_type: str, resource_id: str) -> list[Row]:
    q = (
        sa.select(role_assignment.c.identity_id, role_assignment.c.role_name)
        .where(
            role_assignment.c.resource_type == resource_type,
            role_assignment.c.resource_id == resource_id,
        )
        .order_by(role_assignment.c.identity_id, role_assignment.c.role_name)
    )
    return list(conn.execute(q))


def replace_assignments(
    conn: Connection, resource_type: str, resource_id: str, pairs: list[tuple[str, str]]
) -> None:
    """Make ``pairs`` of (identity id, role name) the resource's whole policy."""
    conn.execute(
        role_assignment.delete().where(
            role_assignment.c.resource_type == resource_type,
            role_assignment.c.resource_id == resource_id,
        )
    )
    if pairs:
        conn.execute(
            role_assignment.insert(),
            [
                {
                    "resource_type": resource_type,
                    "resource_id": resource_id,
                    "identity_id": identity,
                    "role_name": role,
                }
                for identity, role in sorted(set(pairs))
            ],
        )


# -- sessions and tokens -----------------------------------------------------------------


def insert_session(conn: Connection, *, session_id: str, token_hash: str, user_id: str) -> None:
    insert_new(
        conn,
        console_session,
        ("time_created", "time_last_used"),
        id=session_id,
        token_hash=token_hash,
        user_id=user_id,
    )


def credential_owner(conn: Connection, kind: str, token_hash: str) -> Row | None:
    """A session's or an access token's row joined with its live user and silo, in one
    query (every request asks this): credential_id, time_created, time_last_used (sessions)
    or time_expires (tokens), user_id, user_name, silo_id, silo_name."""
    cred = console_session if kind == "session" else device_access_token
    extra = (
        [cred.c.time_last_used, sa.null().label("time_expires")]
        if kind == "session"
        else [sa.null().label("time_last_used"), cred.c.time_expires]
    )
    columns: list[sa.ColumnElement[Any]] = [
        cred.c.id.label("credential_id"),
        cred.c.time_created,
        *extra,
        silo_user.c.id.label("user_id"),
        silo_user.c.name.label("user_name"),
        silo.c.id.label("silo_id"),
        silo.c.name.label("silo_name"),
    ]
    q = (
        sa.select(*columns)
        .join(silo_user, silo_user.c.id == cred.c.user_id)
        .join(silo, silo.c.id == silo_user.c.silo_id)
        .where(cred.c.token_hash == token_hash, _live_user, _live_silo)
    )
    return conn.execute(q).first()


def session_by_hash(conn: Connection, token_hash: str) -> Row | None:
    q = sa.select(console_session).where(console_session.c.token_hash == token_hash)
    return conn.execute(q).first()


def touch_session(conn: Connection, session_id: str, at: datetime) -> None:
    conn.execute(
        console_session.update().where(console_session.c.id == session_id).values(time_last_used=at)
    )


def delete_session(conn: Connection, session_id: str) -> None:
    conn.execute(console_session.delete().where(console_session.c.id == session_id))


def insert_token(
    conn: Connection,
    *,
    token_id: str,
    token_hash: str,
    user_id: str,
    client_id: str,
    expires: datetime | None,
) -> None:
    insert_new(
        conn,
        device_access_token,
        NEVER_MODIFIED,
        id=token_id,
        token_hash=token_hash,
        user_id=user_id,
        client_id=client_id,
        time_expires=expires,
    )


def token_page(
    conn: Connection, user_id: str, *, sort: str, limit: int, marker: str | None
) -> list[Row]:
    q = sa.select(device_access_token).where(device_access_token.c.user_id == user_id)
    return paging.page(conn, q, device_access_token, sort=sort, limit=limit, marker=marker)


def delete_token(conn: Connection, user_id: str, token_id: str) -> bool:
    result = conn.execute(
        device_access_token.delete().where(
            device_access_token.c.id == token_id, device_access_token.c.user_id == user_id
        )
    )
    return bool(result.rowcount)


# -- device flow -------------------------------------------------------------------------


def insert_device_request(
    conn: Connection,
    *,
    user_code: str,
    device_code_hash: str,
    client_id: str,
    token_ttl: int | None,
    expires: datetime,
) -> None:
    insert_new(
        conn,
        device_auth_request,
        NEVER_MODIFIED,
        user_code=user_code,
        device_code_hash=device_code_hash,
        client_id=client_id,
        token_ttl=token_ttl,
        time_expires=expires,
    )


def device_request_by_user_code(conn: Connection, user_code: str) -> Row | None:
    q = sa.select(device_auth_request).where(device_auth_request.c.user_code == user_code)
    return conn.execute(q).first()


def device_request_by_hash(conn: Connection, device_code_hash: str) -> Row | None:
    q = sa.select(device_auth_request).where(
        device_auth_request.c.device_code_hash == device_code_hash
    )
    return conn.execute(q).first()


def confirm_device_request(conn: Connection, user_code: str, user_id: str) -> None:
    conn.execute(
        device_auth_request.update()
        .where(device_auth_request.c.user_code == user_code)
        .values(user_id=user_id)
    )


def delete_device_request(conn: Connection, user_code: str) -> None:
    conn.execute(device_auth_request.delete().where(device_auth_request.c.user_code == user_code))


def delete_expired_device_requests(conn: Connection, at: datetime) -> None:
    conn.execute(device_auth_request.delete().where(device_auth_request.c.time_expires <= at))
