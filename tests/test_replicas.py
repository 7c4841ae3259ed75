"""Several replicas on one PostgreSQL store: adoption of a silent replica's sagas, fencing
of the old owner, fleet-wide leases, and SQLite's refusal of a second replica."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from skylight.config import Settings
from skylight.controlplane import ControlPlane, StartupRefused
from skylight.events.kinds import control_plane
from skylight.operations import instances as operations
from skylight.sled.sim import Fault
from skylight.store import replicas
from skylight.store.schema import event as instance_event
from skylight.store.schema import saga
from tests.conftest import GiB, make_settings, recovery_admin


def _settings(tmp_path: Path, db: str, port: int, **kw: Any) -> Settings:
    s = make_settings(tmp_path / "data", db, start_delay=kw.pop("start_delay", 0.02))
    s.bind = f"127.0.0.1:{port}"
    s.heartbeat_interval = 0.1
    s.adoption_timeout = kw.pop("adoption_timeout", 0.6)
    for k, v in kw.items():
        setattr(s, k, v)
    return s


async def _project_and_instance(cp: ControlPlane, name: str) -> str:
    from skylight import projects

    admin = await cp.store.tx(recovery_admin)
    await cp.store.tx(lambda c: projects.create(c, admin, "demo", ""))
    body = {
        "name": name,
        "description": "",
        "hostname": name,
        "ncpus": 2,
        "memory": 4 * GiB,
        "auto_restart_policy": None,
        "cpu_platform": None,
        "enable_jumbo_frames": False,
        "user_data": "",
        "start": False,
    }
    row = await operations.create(cp, admin, "demo", body, wait=0)
    return str(row.id)


def test_sqlite_refuses_a_second_replica(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'one.db'}"

    async def scenario() -> None:
        a = ControlPlane(_settings(tmp_path, db, 1001))
        await a.start()
        try:
            b = ControlPlane(_settings(tmp_path, db, 1002))
            with pytest.raises(StartupRefused, match="SQLite allows one replica"):
                await b.start()
            b.store.dispose()
        finally:
            await a.stop()

    asyncio.run(scenario())


def test_silent_replica_is_adopted_and_fenced(tmp_path: Path, pg_url: str) -> None:
    """Replica A goes silent while its start saga waits on a sled that does not answer (as
    if A were paused); B adopts the saga and finishes it. A's copy then wakes up, fails, and
    tries to unwind — and none of A's writes land: one outcome, B's."""

    async def scenario() -> tuple[str, str, list[Any], list[Any]]:
        a = ControlPlane(_settings(tmp_path, pg_url, 2001, sled_call_timeout=2.0))
        await a.start()
        assert a.rack is not None
        a.rack.arm(Fault(at="ensure_running", kind="hang", count=1))
        instance_id = await _project_and_instance(a, "web")
        await operations.start_instance(a, instance_id, control_plane("test"), "user", wait=0)
        # A is stuck in ensure_running once the one-shot fault has fired (the simulated rack
        # is in-process, and B reads its state file when B starts: after this point).
        while a.rack.faults():
            await asyncio.sleep(0.02)
        for task in a._background:  # A goes silent; its saga keeps running in memory
            task.cancel()
        b = ControlPlane(_settings(tmp_path, pg_url, 2002))
        await b.start()
        try:
            deadline = asyncio.get_running_loop().time() + 30
            while True:
                row = await b.store.tx(
                    lambda c: c.execute(
                        sa.select(saga).where(saga.c.name == "instance-start")
                    ).one()
                )
                if row.state == "done":
                    break
                assert asyncio.get_running_loop().time() < deadline, row
                await asyncio.sleep(0.05)
            # A's sled call times out (2 s): A's copy fails and tries to record it.
            while a.executor._tasks:
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.05)
            events = await b.store.tx(
                lambda c: list(c.execute(sa.select(instance_event).order_by(instance_event.c.seq)))
            )
            sagas = await b.store.tx(lambda c: list(c.execute(sa.select(saga))))
        finally:
            await b.stop()
            await a.stop()
        return a.sec_id, b.sec_id, events, sagas

    a_id, b_id, events, sagas = asyncio.run(scenario())
    (start,) = [s for s in sagas if s.name == "instance-start"]
    assert start.state == "done"
    assert start.current_sec == b_id
    assert start.adopt_generation == 2
    kinds = [e.kind for e in events]
    assert kinds.count("instance.running") == 1  # one outcome: B's; A's was fenced off
    assert "instance.start_failed" not in kinds
    assert "instance.operation_adopted" in kinds
    adopted = next(e for e in events if e.kind == "instance.operation_adopted")
    assert adopted.detail["internal"] == {"from_replica": a_id, "to_replica": b_id, "generation": 2}
    assert adopted.operation_id == start.id


def test_leases_are_held_by_one_replica_at_a_time(pg_url: str) -> None:
    from skylight.store import Store

    store = Store(pg_url)
    try:
        assert store.tx_sync(lambda c: replicas.hold_lease(c, "job", "a", 0.3))
        assert not store.tx_sync(lambda c: replicas.hold_lease(c, "job", "b", 0.3))
        assert store.tx_sync(lambda c: replicas.hold_lease(c, "job", "a", 0.3))  # renews
        import time

        time.sleep(0.4)  # a stopped renewing: b takes over
        assert store.tx_sync(lambda c: replicas.hold_lease(c, "job", "b", 0.3))
        assert not store.tx_sync(lambda c: replicas.hold_lease(c, "job", "a", 0.3))
    finally:
        store.dispose()


def test_two_adopters_never_both_adopt(tmp_path: Path, pg_url: str) -> None:
    from skylight.store import Store

    store = Store(pg_url)
    now = sa.func.now()
    with store.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO replica (id, bind, time_started, time_heartbeat) "
                "VALUES ('dead', 'x', now(), now() - interval '1 hour')"
            )
        )
        for i in range(20):
            conn.execute(
                saga.insert().values(
                    id=f"s{i}",
                    name="instance-start",
                    state="running",
                    params={},
                    current_sec="dead",
                    adopt_generation=1,
                    log_length=0,
                    time_created=now,
                )
            )

    def adopt_as(who: str) -> list[Any]:
        return store.tx_sync(lambda c: replicas.adopt(c, "dead", who))

    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(adopt_as, ["r1", "r2", "r3", "r4"]))
    store.dispose()
    adopted = [r.id for rows in results for r in rows]
    assert sorted(adopted) == sorted(f"s{i}" for i in range(20))  # each saga exactly once
    assert sum(1 for rows in results if rows) == 1
