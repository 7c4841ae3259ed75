"""Events as a product: project and fleet lists, coalescing, retention, streams.

Streams are read from a real server (the ASGI test client buffers whole responses), on
SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from skylight.clock import now
from skylight.events.feed import Feed
from skylight.events.kinds import Kind, control_plane, user_actor
from skylight.operations.event_stream import sse
from skylight.store import Store, events, identity, migrate
from skylight.store.schema import event, instance, project
from skylight.testing import ServerProcess
from tests.conftest import instance_body

P = {"project": "demo"}


# -- lists -------------------------------------------------------------------------------


def test_project_and_fleet_event_lists(client: TestClient, project: str) -> None:
    client.post("/v1/projects", json={"name": "other", "description": ""})
    client.post("/v1/instances", params=P, json=instance_body("a"))
    client.post("/v1/instances", params={"project": "other"}, json=instance_body("b"))
    mine = client.get("/v1/events", params=P).json()["items"]
    assert {e["instance_id"] for e in mine} == {
        client.get("/v1/instances/a", params=P).json()["id"]
    }
    fleet = client.get("/v1/system/events", params={"limit": 1000}).json()["items"]
    assert len(fleet) == len(mine) * 2
    seqs = [e["time"] for e in fleet]
    assert seqs == sorted(seqs, reverse=True)  # newest first
    errors = client.get("/v1/events", params={**P, "severity": "error"}).json()["items"]
    assert errors == []
    running = client.get("/v1/events", params={**P, "kind": "instance.running"}).json()
    assert [e["kind"] for e in running["items"]] == ["instance.running"]
    assert client.get("/v1/events").status_code == 400  # project required
    assert client.get("/v1/events", params={"project": "nope"}).status_code == 404
    assert client.get("/v1/events", params={**P, "severity": "loud"}).status_code == 400


def test_event_filters_operation_and_since(client: TestClient, project: str) -> None:
    client.post("/v1/instances", params=P, json=instance_body("a"))
    items = client.get("/v1/instances/a/events", params=P).json()["items"]
    op = next(e["operation_id"] for e in items if e["kind"] == "instance.running")
    by_op = client.get("/v1/instances/a/events", params={**P, "operation": op}).json()["items"]
    assert [e["kind"] for e in by_op] == [
        "instance.running",
        "instance.placed",
        "instance.start_requested",
    ]
    later = client.get(
        "/v1/instances/a/events", params={**P, "since": items[0]["time_last"]}
    ).json()["items"]
    assert items[0]["id"] in {e["id"] for e in later}
    assert len(later) < len(items)


def test_since_is_an_instant_whatever_its_offset(client: TestClient, project: str) -> None:
    """``since`` names an instant: the same one written with any offset selects the same
    events, on both stores. (SQLite compares times as text, and was given the offset's wall
    clock: an hour ago written at +05:00 selected nothing there.) Found by tests/test_fuzz.py,
    which also found ``since=0.2`` taken for a number of seconds."""
    client.post("/v1/instances", params=P, json=instance_body("a"))
    urls = ("/v1/instances/a/events", "/v1/events", "/v1/system/events")
    for url in urls:
        every = client.get(url, params=P).json()["items"]
        assert every
        for hours in (0, 5, -5, 14):
            zone = timezone(timedelta(hours=hours))
            for when, expected in (
                (now() - timedelta(hours=1), every),
                (now() + timedelta(hours=1), []),
            ):
                since = when.astimezone(zone).isoformat()
                r = client.get(url, params={**P, "since": since})
                assert r.status_code == 200, r.text
                assert r.json()["items"] == expected, (url, since)
        # the first and the last instant there is, whatever the offset
        for since, expected in (
            ("0001-01-01T00:00:00+05:00", every),
            ("9999-12-31T23:59:59-05:00", []),
        ):
            r = client.get(url, params={**P, "since": since})
            assert r.status_code == 200, r.text
            assert r.json()["items"] == expected, (url, since)
        # not an instant: a number, a date alone, a time without its zone
        for since in (
            "0.2",
            "1700000000",
            "2026-01-01",
            "2026-01-01T00:00:00",
            "2026-01-01T00:00:00+0500",
        ):
            r = client.get(url, params={**P, "since": since})
            assert r.status_code == 400, (url, since, r.text)
            assert "since" in r.json()["message"] and "RFC 3339" in r.json()["message"]


# -- coalescing and retention, on the store ------------------------------------------------


@pytest.fixture
def store(db_url: str) -> Store:
    s = Store(db_url)
    migrate.upgrade(s.engine)
    t = now()
    with s.engine.begin() as conn:
        identity.insert_silo(
            conn,
            silo_id="s",
            name="s",
            description="",
            discoverable=True,
            quotas=(64, 2**40, 2**40),
        )
        conn.execute(
            project.insert().values(
                id="p", silo_id="s", name="p", description="", time_created=t, time_modified=t
            )
        )
        for iid in ("i1", "i2"):
            conn.execute(
                instance.insert().values(
                    id=iid,
                    project_id="p",
                    name=iid,
                    description="",
                    hostname=iid,
                    ncpus=1,
                    memory=1,
                    enable_jumbo_frames=False,
                    user_data="",
                    state="failed",
                    intended_state="running",
                    generation=1,
                    time_created=t,
                    time_modified=t,
                    time_run_state_updated=t,
                )
            )
    return s


def _new(
    kind: Kind,
    actor: dict[str, Any],
    code: str | None = "insufficient_capacity",
    instance_id: str = "i1",
) -> events.NewEvent:
    reason = {"code": code, "message": "m"} if code else None
    return events.NewEvent(instance_id, "p", kind, actor, "failed", reason=reason)


def test_control_plane_repeats_are_coalesced(store: Store) -> None:
    cp_actor = control_plane("auto_restart")
    first = store.tx_sync(lambda c: events.insert(c, _new(Kind.AUTO_RESTART_FAILED, cp_actor)))
    store.tx_sync(lambda c: events.insert(c, _new(Kind.START_REQUESTED, cp_actor, None)))
    for _ in range(5):
        again = store.tx_sync(lambda c: events.insert(c, _new(Kind.AUTO_RESTART_FAILED, cp_actor)))
        assert again == first
    # a different reason, a user's action, or another instance is not a repeat
    other = store.tx_sync(
        lambda c: events.insert(c, _new(Kind.AUTO_RESTART_FAILED, cp_actor, "sled_failure"))
    )
    user = store.tx_sync(
        lambda c: events.insert(c, _new(Kind.AUTO_RESTART_FAILED, user_actor("u", "tester")))
    )
    elsewhere = store.tx_sync(
        lambda c: events.insert(c, _new(Kind.AUTO_RESTART_FAILED, cp_actor, instance_id="i2"))
    )
    assert len({first, other, user, elsewhere}) == 4
    rows = store.tx_sync(
        lambda c: events.page(c, events.EventFilter(instance_id="i1"), limit=100, before_seq=None)
    )
    by_id = {r.id: r for r in rows}
    assert by_id[first].count == 6
    assert by_id[first].time_last > by_id[first].time
    assert len(rows) == 4  # 6 failures + 1 start_requested + 2 others fold into 4 rows
    # the repeat moved to the newest position, so streams deliver the update
    assert rows[2].id == first or rows[0].id in (user, other)


def test_a_repeat_moves_past_every_cursor(store: Store) -> None:
    """Even when the original is the newest row, its repeat gets a higher seq (SQLite must
    not hand out the same rowid again), so a stream at that cursor delivers the update."""
    cp_actor = control_plane("auto_restart")
    for _ in range(4):
        store.tx_sync(lambda c: events.insert(c, _new(Kind.AUTO_RESTART_FAILED, cp_actor)))
        seen = store.tx_sync(events.last_seq)
        again = store.tx_sync(
            lambda c, cursor=seen - 1: events.after(
                c, events.EventFilter(instance_id="i1"), after_seq=cursor, limit=10
            )
        )
        assert [r.seq for r in again] == [seen]
    assert seen >= 4
    rows = store.tx_sync(
        lambda c: events.page(c, events.EventFilter(instance_id="i1"), limit=10, before_seq=None)
    )
    assert len(rows) == 1 and rows[0].count == 4 and rows[0].seq == seen


def test_retention_keeps_the_newest_the_status_reason_and_its_origin(store: Store) -> None:
    actor = user_actor("u", "tester")
    ids = [
        store.tx_sync(lambda c: events.insert(c, _new(Kind.UPDATED, actor, None))) for _ in range(8)
    ]
    store.tx_sync(lambda c: events.insert(c, _new(Kind.UPDATED, actor, None, instance_id="i2")))
    old = now() - timedelta(days=40)
    with store.engine.begin() as conn:
        conn.execute(event.update().values(time=old, time_last=old))
        conn.execute(
            instance.update()
            .where(instance.c.id == "i1")
            .values(status_event_id=ids[1], status_origin_event_id=ids[0])
        )
    removed = store.tx_sync(
        lambda c: events.enforce_retention(c, older_than=now() - timedelta(days=30), keep=3)
    )
    assert removed == 3  # i1: 8 - newest 3 - the status reason and its origin; i2's one stays
    with store.engine.connect() as conn:
        left = set(conn.execute(sa.select(event.c.id)).scalars())
    assert set(ids[-3:]) <= left and {ids[0], ids[1]} <= left
    assert not set(ids[2:5]) & left
    # recent events are never removed
    fresh = store.tx_sync(lambda c: events.insert(c, _new(Kind.UPDATED, actor, None)))
    store.tx_sync(
        lambda c: events.enforce_retention(c, older_than=now() - timedelta(days=30), keep=0)
    )
    with store.engine.connect() as conn:
        assert fresh in set(conn.execute(sa.select(event.c.id)).scalars())


def test_retention_runs_in_short_transactions_over_every_instance(store: Store) -> None:
    """A pass is many transactions of a few instances each (on SQLite each holds the store's
    lock); together they cover every instance, the first and the last batch included."""
    actor = user_actor("u", "tester")
    t = now()
    with store.engine.begin() as conn:
        for n in range(3, 10):  # i3..i9, besides i1 and i2
            conn.execute(
                instance.insert().values(
                    id=f"i{n}", project_id="p", name=f"i{n}", description="", hostname="h",
                    ncpus=1, memory=1, enable_jumbo_frames=False, user_data="",
                    state="stopped", intended_state="stopped", generation=1,
                    time_created=t, time_modified=t, time_run_state_updated=t,
                )
            )  # fmt: skip
    per_instance = {f"i{n}": n for n in range(1, 10)}  # i1 has 1 event, ..., i9 has 9
    for iid, count in per_instance.items():
        for _ in range(count):
            store.tx_sync(lambda c, i=iid: events.insert(c, _new(Kind.UPDATED, actor, None, i)))
    old = now() - timedelta(days=40)
    with store.engine.begin() as conn:
        conn.execute(event.update().values(time=old, time_last=old))
    cutoff = now() - timedelta(days=30)
    batches = []
    after: str | None = None
    while True:
        removed, after = store.tx_sync(
            lambda c, a=after: events.retention_batch(
                c, older_than=cutoff, keep=4, after=a, instances=2
            )
        )
        batches.append(removed)
        if after is None:
            break
    assert len(batches) == 5  # 9 instances, 2 at a time
    assert sum(batches) == sum(max(0, n - 4) for n in per_instance.values())
    with store.engine.connect() as conn:
        left = dict(
            conn.execute(
                sa.select(event.c.instance_id, sa.func.count()).group_by(event.c.instance_id)
            ).all()
        )
    assert left == {iid: min(n, 4) for iid, n in per_instance.items()}


def test_pages_match_the_log_for_every_filter_and_cursor(store: Store) -> None:
    """Every page equals the log filtered and cut by hand (on PostgreSQL a page is read
    through a prefetching plan, ``events._page_prefetched``: its bounds must be exact)."""
    import random

    rng = random.Random(5)
    actor = user_actor("u", "tester")
    kinds = [Kind.UPDATED, Kind.REBOOTED, Kind.STOPPED]
    for _ in range(240):
        store.tx_sync(
            lambda c: events.insert(
                c, _new(rng.choice(kinds), actor, None, rng.choice(["i1", "i2"]))
            )
        )
    with store.engine.connect() as conn:
        log = list(conn.execute(sa.select(event).order_by(event.c.seq.desc())))
    filters = [
        events.EventFilter(),
        events.EventFilter(instance_id="i1"),
        events.EventFilter(instance_id="i2", kind=str(Kind.REBOOTED)),
        events.EventFilter(project_id="p"),
        events.EventFilter(project_id="p", kind=str(Kind.STOPPED)),
        events.EventFilter(kind=str(Kind.UPDATED)),
        events.EventFilter(instance_id="i1", severity="info"),
        events.EventFilter(instance_id="nobody"),
    ]
    for flt in filters:
        wanted = [
            r.seq
            for r in log
            if (flt.instance_id is None or r.instance_id == flt.instance_id)
            and (flt.kind is None or r.kind == flt.kind)
            and (flt.severity is None or r.severity == flt.severity)
        ]
        for limit in (1, 7, 100, 1000):
            got: list[int] = []
            cursor: int | None = None
            while True:
                rows = store.tx_sync(
                    lambda c, f=flt, b=cursor, n=limit: events.page(c, f, limit=n, before_seq=b)
                )
                assert len(rows) <= limit
                got += [r.seq for r in rows]
                if len(rows) < limit:
                    break
                cursor = rows[-1].seq
            assert got == wanted, (flt, limit)


def test_repeats_within_one_transaction_are_one_event(store: Store) -> None:
    cp_actor = control_plane("auto_restart")

    def twice(conn: Any) -> tuple[str, str]:
        a = events.insert(conn, _new(Kind.AUTO_RESTART_FAILED, cp_actor))
        b = events.insert(conn, _new(Kind.AUTO_RESTART_FAILED, cp_actor))
        return a, b

    a, b = store.tx_sync(twice)
    assert a == b
    with store.engine.connect() as conn:
        rows = list(conn.execute(sa.select(event.c.id, event.c.count)))
    assert [(r.id, r.count) for r in rows] == [(a, 2)]


def test_stream_generator_heartbeats_and_pages(store: Store) -> None:
    actor = user_actor("u", "tester")
    for _ in range(450):
        store.tx_sync(lambda c: events.insert(c, _new(Kind.UPDATED, actor, None)))

    async def scenario() -> list[str]:
        feed = Feed()
        feed.bind(asyncio.get_running_loop())
        gen = sse(
            store,
            feed,
            events.EventFilter(instance_id="i1"),
            cursor=0,
            render=lambda r: {"id": r.id},
            poll_interval=0.01,
            heartbeat=0.05,
        )
        out = [await gen.__anext__() for _ in range(452)]
        await gen.aclose()
        return out

    out = asyncio.run(scenario())
    assert out[0] == "retry: 2000\nid: 0\n\n"
    assert sum(1 for m in out if m.startswith("id:")) == 450
    assert out[-1] == ": keepalive\n\n"
    ids = [int(m.split("\n")[0][4:]) for m in out if m.startswith("id:")]
    assert ids == sorted(ids) and len(set(ids)) == 450


# -- streams from a real server ------------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path, db_url: str) -> Iterator[ServerProcess]:
    db = None if db_url.startswith("sqlite") else db_url
    proc = ServerProcess(
        tmp_path / "srv", db=db, args=["--sim-start-delay", "0.05", "--stream-heartbeat", "0.2"]
    )
    proc.start()
    httpx.post(
        f"{proc.url}/v1/projects", json={"name": "demo", "description": ""}, headers=proc.headers
    )
    yield proc
    proc.stop()


class Reader:
    """Reads an SSE stream on a thread, collecting (id, event) pairs."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.items: list[tuple[int, dict[str, Any]]] = []
        self.comments = 0
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._response: httpx.Response
        self._thread = threading.Thread(target=self._run, args=(url, headers or {}), daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "stream did not open"

    def _run(self, url: str, headers: dict[str, str]) -> None:
        try:
            with httpx.stream("GET", url, headers=headers, timeout=30) as r:
                assert r.status_code == 200
                assert r.headers["content-type"].startswith("text/event-stream")
                self._response = r
                self._ready.set()
                self._read(r)
        except (httpx.HTTPError, RuntimeError):
            pass  # closed by close(), or the server went away at the end of the test

    def _read(self, r: httpx.Response) -> None:
        ident, data = None, None
        for line in r.iter_lines():
            if self._stop.is_set():
                return
            if line.startswith("id: "):
                ident = int(line[4:])
            elif line.startswith("data: "):
                data = json.loads(line[6:])
            elif line.startswith(":"):
                self.comments += 1
            elif line == "" and ident is not None and data is not None:
                self.items.append((ident, data))
                ident, data = None, None

    def wait_for(self, pred: Any, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while not pred(self.items):
            assert time.monotonic() < deadline, [e["kind"] for _, e in self.items]
            time.sleep(0.02)

    def close(self) -> None:
        """Hang up: the server must notice and end the stream."""
        self._stop.set()
        self._response.close()
        self._thread.join(5)


def test_instance_stream_and_resume(server: ServerProcess) -> None:
    api = server.client(timeout=30)
    api.post("/v1/instances", params=P, json=instance_body("a", start=False))
    reader = Reader(f"{server.url}/v1/instances/a/events/stream?project=demo", server.headers)
    api.post("/v1/instances/a/start", params=P)
    reader.wait_for(lambda items: any(e["kind"] == "instance.running" for _, e in items))
    kinds = [e["kind"] for _, e in reader.items]
    assert kinds == ["instance.start_requested", "instance.placed", "instance.running"]
    reader.close()
    # Resume after the first: exactly what came after it, nothing twice, nothing missed.
    first_id = reader.items[0][0]
    api.post("/v1/instances/a/stop", params=P)
    resumed = Reader(
        f"{server.url}/v1/instances/a/events/stream?project=demo",
        headers={**server.headers, "Last-Event-ID": str(first_id)},
    )
    resumed.wait_for(lambda items: any(e["kind"] == "instance.stopped" for _, e in items))
    assert [e["kind"] for _, e in resumed.items] == [
        "instance.placed",
        "instance.running",
        "instance.stop_requested",
        "instance.stopped",
    ]
    ids = [i for i, _ in resumed.items]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    listed = api.get("/v1/instances/a/events", params=P).json()["items"]
    assert [e["id"] for _, e in resumed.items] == [e["id"] for e in listed[:4]][::-1]
    resumed.close()


def test_project_stream_sees_every_instance(server: ServerProcess) -> None:
    api = server.client(timeout=30)
    reader = Reader(f"{server.url}/v1/events/stream?project=demo", server.headers)
    for name in ("a", "b", "c"):
        api.post("/v1/instances", params=P, json=instance_body(name))
    reader.wait_for(lambda items: sum(e["kind"] == "instance.running" for _, e in items) == 3)
    assert len({e["instance_id"] for _, e in reader.items}) == 3
    reader.close()


def test_stream_bad_input_and_vanishing_clients(server: ServerProcess) -> None:
    api = server.client(timeout=30)
    r = api.get("/v1/instances/nope/events/stream", params=P)
    assert r.status_code == 404 and r.json()["error_code"] == "ObjectNotFound"
    r = api.get("/v1/events/stream", params=P, headers={"Last-Event-ID": "x1"})
    assert r.status_code == 400 and "Last-Event-ID" in r.json()["message"]
    assert api.get("/v1/events/stream").status_code == 400
    for _ in range(30):  # clients that open a stream and vanish cost the server nothing
        with httpx.stream(
            "GET", f"{server.url}/v1/events/stream?project=demo", headers=server.headers
        ) as s:
            assert s.status_code == 200
    assert api.post("/v1/instances", params=P, json=instance_body("z")).status_code == 201


def test_metrics(client: TestClient, project: str) -> None:
    client.post("/v1/instances", params=P, json=instance_body("a"))
    client.post("/v1/instances", params=P, json=instance_body("huge", ncpus=64))
    client.post("/v1/system/sim/instances/a/crash", params=P)
    r = client.get("/metrics")
    assert r.status_code == 200
    text = r.text
    assert 'skylight_sagas_total{outcome="done",saga="instance-start"} 1.0' in text
    assert 'skylight_sagas_total{outcome="unwound",saga="instance-start"} 1.0' in text
    assert (
        'skylight_start_failures_total{cause="auto_start",reason="exceeds_sled_size"} 1.0' in text
    )
    assert 'skylight_events_written_total{kind="instance.failed"} 1.0' in text
    assert 'skylight_events_written_total{kind="instance.created"} 2.0' in text
    assert "skylight_auto_restart_attempts_total 0.0" in text


def test_retention_task_covers_every_batch(
    client: TestClient, project: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The background pass (as every server runs it hourly) goes batch by batch, one
    transaction each, over every instance: with one instance per batch, all three lose
    their events past the newest kept."""
    from skylight.background import retention

    cp = client.app.state.cp  # type: ignore[attr-defined]
    monkeypatch.setattr(events, "RETENTION_BATCH", 1)
    monkeypatch.setattr(cp.settings, "event_retention_keep", 2)
    names = ["a", "b", "c"]
    for name in names:
        body = instance_body(name, 1, 1, start=False)
        assert (
            client.post("/v1/instances", params={"project": project}, json=body).status_code == 201
        )
        for _ in range(2):  # created, then start/running/stop/stopped... : well over 2 events
            for action in ("start", "stop"):
                r = client.post(f"/v1/instances/{name}/{action}", params={"project": project})
                assert r.status_code == 202, r.text
    old = now() - timedelta(days=40)
    with cp.store.engine.begin() as conn:
        conn.execute(event.update().values(time=old, time_last=old))
        before = dict(
            conn.execute(
                sa.select(event.c.instance_id, sa.func.count()).group_by(event.c.instance_id)
            ).all()
        )
    assert len(before) == 3 and min(before.values()) > 2
    removed = client.portal.call(retention.run_once, cp)  # type: ignore[union-attr]
    with cp.store.engine.connect() as conn:
        after = dict(
            conn.execute(
                sa.select(event.c.instance_id, sa.func.count()).group_by(event.c.instance_id)
            ).all()
        )
    assert after == {iid: 2 for iid in before}
    assert removed == sum(before.values()) - 6


def test_a_prefetched_page_leaves_the_planner_as_it_found_it(store: Store) -> None:
    """On PostgreSQL an instance's page turns index scans off for its one statement: the rest
    of the transaction plans as usual."""
    actor = user_actor("u", "tester")
    for _ in range(5):
        store.tx_sync(lambda c: events.insert(c, _new(Kind.UPDATED, actor, None)))

    def page_then_setting(conn: Any) -> tuple[int, str | None]:
        rows = events.page(conn, events.EventFilter(instance_id="i1"), limit=3, before_seq=None)
        if conn.dialect.name != "postgresql":
            return len(rows), None
        return len(rows), conn.exec_driver_sql("SHOW enable_indexscan").scalar()

    count, setting = store.tx_sync(page_then_setting)
    assert count == 3
    assert setting in (None, "on")
