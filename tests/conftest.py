"""Shared fixtures: a control plane on SQLite and on PostgreSQL, driven through its API.

PostgreSQL tests get a fresh database each, cloned from a migrated template made once per
run. Under ``CI=true`` PostgreSQL must be reachable: its tests fail instead of skipping.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Connection

from skylight import login_flow
from skylight.api.app import create_app
from skylight.config import Settings, SimSettings
from skylight.identity.access import Caller
from skylight.operations import sessions
from skylight.store import identity

GiB = 1024**3
# The recovery admin's password in every test control plane (SPEC: Bootstrap).
ADMIN_PASSWORD = "test-recovery-password"
USER_PASSWORD = "test-user-password"
PG_ADMIN = os.environ.get("SKYLIGHT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _pg_available() -> str | None:
    try:
        with psycopg.connect(PG_ADMIN, connect_timeout=3):
            return None
    except Exception as exc:  # pragma: no cover - depends on the machine
        return str(exc)


def _admin_exec(sql: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


def pg_allow_connections(db_url: str, allow: bool) -> None:
    """Open or close a test database to new connections; closing also ends the live ones, so
    every client of it meets a refused connection until it is opened again (an outage)."""
    dbname = db_url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS {str(allow).lower()}')  # type: ignore[arg-type]
        if not allow:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (dbname,),
            )


def _pg_url(dbname: str) -> str:
    base = PG_ADMIN.rsplit("/", 1)[0]
    return f"{base}/{dbname}"


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    problem = _pg_available()
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required under CI=true: {problem}")
        pytest.skip(f"PostgreSQL not reachable: {problem}")
    name = f"skylight_tmpl_{uuid.uuid4().hex[:10]}"
    _admin_exec(f'CREATE DATABASE "{name}"')
    from skylight.store import migrate
    from skylight.store.engine import make_engine

    engine = make_engine(_pg_url(name))
    migrate.upgrade(engine)
    engine.dispose()
    yield name
    _admin_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(pg_template: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for one test."""
    name = f"skylight_t_{uuid.uuid4().hex[:12]}"
    _admin_exec(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    yield _pg_url(name)
    _admin_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# The stores the tests that take ``db_url`` run on: both, unless SKYLIGHT_TEST_STORES names
# fewer (`make test-fast` runs on SQLite alone). Under CI=true always both.
_CHOSEN = "" if os.environ.get("CI") == "true" else os.environ.get("SKYLIGHT_TEST_STORES", "")
STORES = [s for s in _CHOSEN.split(",") if s] or ["sqlite", "postgres"]


@pytest.fixture(params=STORES)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test that takes this runs once per store."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'skylight.db'}"
    return str(request.getfixturevalue("pg_url"))


def make_settings(data_dir: Path, db_url: str | None = None, **overrides: Any) -> Settings:
    sim = SimSettings(
        sleds=overrides.pop("sleds", 4),
        sled_cpus=overrides.pop("sled_cpus", 16),
        sled_memory_gib=overrides.pop("sled_memory_gib", 64),
        start_delay=overrides.pop("start_delay", 0.02),
    )
    settings = Settings(
        data_dir=data_dir,
        db_url=db_url,
        sim=sim,
        start_wait=10.0,
        recovery_password=ADMIN_PASSWORD,
        # Cheap password hashes: the suite makes and checks hundreds on two cores.
        password_hash_cost=(1, 1024),
    )
    settings.undo_retry_delay = 0.01
    # Tests that exercise auto-restart shorten this; the rest see failures stay put.
    settings.auto_restart_interval = 3600.0
    # The tests' webhook receivers listen on 127.0.0.1, which webhooks may not reach unless
    # allowed (tests/test_webhook_destinations.py checks the rule without this).
    settings.webhook_allow_cidrs = (ip_network("127.0.0.0/8"),)
    for key, value in overrides.items():
        setattr(settings, key, value)
    return settings


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return make_settings(tmp_path / "data", db_url)


def sign_in(client: TestClient) -> TestClient:
    """Make every request of ``client`` the recovery admin's (fleet admin, silo admin), as
    an operator who just set the rack up would be."""
    token = login_flow.with_password(client, "recovery", "admin", ADMIN_PASSWORD)
    client.headers["authorization"] = f"Bearer {token}"
    return client


def user_headers(
    client: TestClient,
    name: str,
    *,
    silo_role: str | None = "collaborator",
    project: tuple[str, str] | None = None,
    silo: str = "recovery",
) -> dict[str, str]:
    """Headers of a new user of ``silo`` (made by the signed-in admin) holding ``silo_role``
    there, and/or ``project`` = (project, role): a user, not an operator."""
    r = client.post(
        "/v1/system/identity-providers/local/users",
        params={"silo": silo},
        json={"external_id": name, "password": {"mode": "password", "value": USER_PASSWORD}},
    )
    assert r.status_code == 201, r.text
    user_id = r.json()["id"]
    if silo_role is not None:
        _grant(client, f"/v1/system/silos/{silo}/policy", user_id, silo_role)
    if project is not None:
        _grant(client, f"/v1/projects/{project[0]}/policy", user_id, project[1])
    token = login_flow.with_password(client, silo, name, USER_PASSWORD)
    return {"authorization": f"Bearer {token}"}


def as_user(client: TestClient) -> dict[str, str]:
    """Headers of "alice", a silo collaborator of the recovery silo: she may do anything in
    its projects but is no operator, so she sees what a user sees (made once per client)."""
    cached: dict[str, str] | None = getattr(client, "_alice", None)
    if cached is None:
        cached = user_headers(client, "alice", silo_role="collaborator")
        client._alice = cached  # type: ignore[attr-defined]
    return cached


def recovery_admin(conn: Connection) -> Caller:
    """The recovery admin, as a request of theirs would be authenticated (for tests that
    call the domain directly)."""
    silo = identity.silo_by_name(conn, "recovery")
    assert silo is not None
    user = identity.user_by_name(conn, silo.id, "admin")
    assert user is not None
    return sessions.caller_for(conn, user, auth_method="session", credential_id=user.id)


def _grant(client: TestClient, policy_url: str, user_id: str, role: str) -> None:
    policy = client.get(policy_url).json()
    policy["role_assignments"].append(
        {"identity_id": user_id, "identity_type": "silo_user", "role_name": role}
    )
    r = client.put(policy_url, json=policy)
    assert r.status_code == 200, r.text


class AdminClient(TestClient):
    """A test client that, once its app has started, is signed in as the recovery admin."""

    def __enter__(self) -> AdminClient:
        super().__enter__()
        sign_in(self)
        return self


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with AdminClient(create_app(settings)) as c:
        yield c


@pytest.fixture
def project(client: TestClient) -> str:
    r = client.post("/v1/projects", json={"name": "demo", "description": "tests"})
    assert r.status_code == 201, r.text
    return "demo"


def instance_body(name: str, ncpus: int = 2, memory_gib: int = 4, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "description": f"instance {name}",
        "hostname": name,
        "ncpus": ncpus,
        "memory": memory_gib * GiB,
    }
    body.update(extra)
    return body


def event_kinds(client: TestClient, instance: str, project: str | None = "demo") -> list[str]:
    """The instance's event kinds, oldest first (select by id with ``project=None``)."""
    params: dict[str, Any] = {"limit": 1000}
    if project is not None:
        params["project"] = project
    r = client.get(f"/v1/instances/{instance}/events", params=params)
    assert r.status_code == 200, r.text
    return [e["kind"] for e in reversed(r.json()["items"])]
