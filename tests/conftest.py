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

from skylight.api.app import create_app
from skylight.config import Settings, SimSettings

GiB = 1024**3
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


@pytest.fixture(params=["sqlite", "postgres"])
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
    settings = Settings(data_dir=data_dir, db_url=db_url, sim=sim, start_wait=10.0)
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


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
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
