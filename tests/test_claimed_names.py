"""A name checked free can still be taken before the row is written (another request, another
replica): the unique index refuses the second writer, and ``lookup.claimed`` answers that as
the AlreadyExists the check would have given, leaving the caller's transaction usable."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import Connection

from skylight import lookup, projects
from skylight.errors import AlreadyExists
from skylight.operations import bootstrap
from skylight.store import Store, migrate
from skylight.store import projects as project_rows
from skylight.store.rows import count
from skylight.store.schema import project
from tests.conftest import recovery_admin


@pytest.fixture
def store(db_url: str, tmp_path: Path) -> Store:
    store = Store(db_url)
    migrate.upgrade(store.engine)
    recovery = bootstrap.Recovery("recovery", "admin", "a-password", tmp_path)
    store.tx_sync(lambda c: bootstrap.ensure_recovery(c, recovery))
    return store


def test_a_name_taken_between_check_and_write_is_already_exists(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.tx_sync(lambda c: projects.create(c, recovery_admin(c), "demo", "the first"))
    # The check sees the name free, as it would if the other writer had not committed yet.
    monkeypatch.setattr(project_rows, "by_name", lambda *_: None)

    def create_again_then_carry_on(conn: Connection) -> int:
        with pytest.raises(AlreadyExists) as refused:
            projects.create(conn, recovery_admin(conn), "demo", "the second")
        assert str(refused.value) == 'already exists: project "demo"'
        # The refused insert was undone to its savepoint: the transaction goes on.
        return count(conn, project)

    assert store.tx_sync(create_again_then_carry_on) == 1


def test_claimed_lets_other_errors_through(store: Store) -> None:
    def fail_inside(conn: Connection) -> None:
        with lookup.claimed(conn, "project", "demo"):
            raise ValueError("not a unique index")

    with pytest.raises(ValueError, match="not a unique index"):
        store.tx_sync(fail_inside)
