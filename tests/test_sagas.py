"""The saga executor on its own: log, unwind order, replay after a crash, fencing."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, cast

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from skylight.events import reasons
from skylight.sagas import Action, ActionError, Fenced, SagaContext, SagaDef, SagaExecutor
from skylight.services import Services
from skylight.store import Store, migrate
from skylight.store.schema import saga, saga_node_event


@dataclass(frozen=True)
class RecordedParams:
    saga: ClassVar[str] = "test-saga"


@dataclass(frozen=True)
class FencedParams:
    saga: ClassVar[str] = "fenced"


NO_SERVICES = cast(Services, object())  # these sagas use none


def _executor(store: Store, sec: str, **kw: Any) -> SagaExecutor:
    ex = SagaExecutor(store, sec, **kw)
    ex.services = NO_SERVICES
    return ex


@pytest.fixture
def store(db_url: str) -> Store:
    s = Store(db_url)
    migrate.upgrade(s.engine)
    return s


class Recorder:
    """Actions that note what ran, optionally failing at one of them."""

    def __init__(self, fail_at: str | None = None, undo_fails: str | None = None) -> None:
        self.calls: list[str] = []
        self.ends: list[tuple[str, Any]] = []
        self.fail_at = fail_at
        self.undo_fails = undo_fails

    def action(self, name: str) -> Action:
        async def do(ctx: SagaContext) -> dict[str, str]:
            self.calls.append(name)
            if name == self.fail_at:
                raise ActionError(reasons.make("internal", f"{name} failed"))
            return {"out": name}

        async def undo(ctx: SagaContext) -> None:
            self.calls.append(f"undo:{name}")
            if name == self.undo_fails:
                raise RuntimeError("undo cannot")

        return Action(name, do, undo)

    def saga(self, names: list[str]) -> SagaDef:
        def done(conn: Connection, ctx: SagaContext) -> None:
            self.ends.append(("done", dict(ctx.outputs)))

        def unwound(conn: Connection, ctx: SagaContext, reason: dict[str, Any]) -> None:
            self.ends.append(("unwound", reason["message"]))

        def stuck(conn: Connection, ctx: SagaContext, reason: dict[str, Any]) -> None:
            self.ends.append(("stuck", reason["code"]))

        return SagaDef(RecordedParams, [self.action(n) for n in names], done, unwound, stuck)


async def _run(store: Store, rec: Recorder, names: list[str], sec: str = "sec-1") -> Any:
    ex = _executor(store, sec, undo_attempts=2, undo_retry_delay=0.001)
    ex.register(rec.saga(names))
    saga_id = await store.tx(lambda c: ex.create_in(c, RecordedParams(), instance_id=None))
    ex.launch(saga_id)
    return saga_id, await ex.wait(saga_id, 10)


def _forge_log(conn: Connection, saga_id: str, rows: list[tuple[str, int, str, object]]) -> None:
    """Write the log a replica left when it died: (node, index, event type, data) rows."""
    for seq, (name, index, kind, data) in enumerate(rows, start=1):
        conn.execute(
            saga_node_event.insert().values(
                saga_id=saga_id,
                seq=seq,
                node_index=index,
                node_name=name,
                event_type=kind,
                data=data,
                time=sa.func.now(),
            )
        )
    conn.execute(saga.update().where(saga.c.id == saga_id).values(log_length=len(rows)))


def _log(store: Store, saga_id: str) -> list[tuple[str, str]]:
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(saga_node_event.c.node_name, saga_node_event.c.event_type)
            .where(saga_node_event.c.saga_id == saga_id)
            .order_by(saga_node_event.c.seq)
        )
        return [(r.node_name, r.event_type) for r in rows]


def test_done_logs_every_step(store: Store) -> None:
    rec = Recorder()
    saga_id, outcome = asyncio.run(_run(store, rec, ["a", "b", "c"]))
    assert outcome.state == "done"
    assert rec.calls == ["a", "b", "c"]
    assert rec.ends == [("done", {"a": {"out": "a"}, "b": {"out": "b"}, "c": {"out": "c"}})]
    assert _log(store, saga_id) == [
        ("a", "started"),
        ("a", "succeeded"),
        ("b", "started"),
        ("b", "succeeded"),
        ("c", "started"),
        ("c", "succeeded"),
    ]


def test_failure_unwinds_in_reverse(store: Store) -> None:
    rec = Recorder(fail_at="c")
    saga_id, outcome = asyncio.run(_run(store, rec, ["a", "b", "c", "d"]))
    assert outcome.state == "unwound"
    assert outcome.error["reason"]["message"] == "c failed"
    # The failed action's undo runs too (undo actions tolerate a half-done action); "d"
    # never started, so it is not undone.
    assert rec.calls == ["a", "b", "c", "undo:c", "undo:b", "undo:a"]
    assert rec.ends == [("unwound", "c failed")]
    assert ("d", "started") not in _log(store, saga_id)


def test_undo_that_keeps_failing_marks_the_saga_stuck(store: Store) -> None:
    rec = Recorder(fail_at="c", undo_fails="b")
    saga_id, outcome = asyncio.run(_run(store, rec, ["a", "b", "c"]))
    assert outcome.state == "stuck"
    assert rec.ends == [("stuck", "operation_stuck")]
    assert rec.calls.count("undo:b") == 2  # retried, then given up
    assert "undo:a" not in rec.calls  # nothing below a stuck undo is touched
    assert ("b", "undo_failed") in _log(store, saga_id)


def test_replay_after_crash_skips_finished_actions(store: Store) -> None:
    """A saga whose log says a, b succeeded and c started resumes at c."""
    rec = Recorder()
    sdef = rec.saga(["a", "b", "c"])

    async def scenario() -> Any:
        ex = _executor(store, "sec-1")
        ex.register(sdef)
        await ex.close()  # as if it died right after the commit: it launches nothing
        saga_id = await store.tx(lambda c: ex.create_in(c, RecordedParams(), instance_id=None))

        rows = [
            ("a", 0, "started", None),
            ("a", 0, "succeeded", {"out": "a"}),
            ("b", 1, "started", None),
            ("b", 1, "succeeded", {"out": "b"}),
            ("c", 2, "started", None),
        ]
        await store.tx(lambda c: _forge_log(c, saga_id, rows))
        # A new executor of the same replica identity, as after a restart.
        ex2 = _executor(store, "sec-1")
        ex2.register(sdef)
        assert await ex2.resume_all() == [saga_id]
        return await ex2.wait(saga_id, 10)

    outcome = asyncio.run(scenario())
    assert outcome.state == "done"
    assert rec.calls == ["c"]
    assert rec.ends == [("done", {"a": {"out": "a"}, "b": {"out": "b"}, "c": {"out": "c"}})]


def test_fenced_replica_cannot_write(store: Store) -> None:
    """Once another replica adopts the saga, the first one's writes are refused."""
    gate = asyncio.Event

    async def scenario() -> tuple[list[str], Any]:
        release = gate()
        calls: list[str] = []

        async def slow(ctx: SagaContext) -> None:
            calls.append("slow")
            await release.wait()

        async def after(ctx: SagaContext) -> None:
            calls.append("after")

        sdef = SagaDef(FencedParams, [Action("slow", slow), Action("after", after)])
        ex = _executor(store, "sec-old")
        ex.register(sdef)
        saga_id = await store.tx(lambda c: ex.create_in(c, FencedParams(), instance_id=None))
        ex.launch(saga_id)
        while not calls:
            await asyncio.sleep(0.01)
        await store.tx(
            lambda c: c.execute(
                saga.update()
                .where(saga.c.id == saga_id)
                .values(current_sec="sec-new", adopt_generation=saga.c.adopt_generation + 1)
            )
        )
        release.set()
        outcome = await ex.wait(saga_id, 5)
        return calls, (saga_id, outcome)

    calls, (saga_id, outcome) = asyncio.run(scenario())
    assert calls == ["slow"]  # the old owner stopped at its next write
    assert outcome is None  # and recorded no end
    assert _log(store, saga_id) == [("slow", "started")]


def test_fenced_tx_raises(store: Store, tmp_path: Path) -> None:
    async def scenario() -> None:
        ex = _executor(store, "sec-a")
        ex.register(SagaDef(RecordedParams, []))
        await ex.close()
        saga_id = await store.tx(lambda c: ex.create_in(c, RecordedParams(), instance_id=None))
        params = RecordedParams()
        ctx = SagaContext(saga_id, "x", params, {}, ex, generation=2, services=NO_SERVICES)
        with pytest.raises(Fenced):
            await ctx.tx(lambda c: None)

    asyncio.run(scenario())


@dataclass(frozen=True)
class Picked:
    sled_id: str


@dataclass(frozen=True)
class PickParams:
    saga: ClassVar[str] = "pick"


def test_typed_outputs_are_typed_again_on_replay(store: Store) -> None:
    """An action's dataclass output is logged as JSON; a replay that skips the action hands
    the next one the dataclass, not the JSON."""
    seen: list[Picked] = []

    async def pick(ctx: SagaContext[PickParams]) -> Picked:
        raise AssertionError("already done: the log says so")

    async def use(ctx: SagaContext[PickParams]) -> None:
        seen.append(ctx.output("pick", Picked))

    sdef = SagaDef(PickParams, [Action("pick", pick, output=Picked), Action("use", use)])

    async def scenario() -> Any:
        ex = _executor(store, "sec-1")
        ex.register(sdef)
        await ex.close()
        saga_id = await store.tx(lambda c: ex.create_in(c, PickParams(), instance_id=None))

        rows = [("pick", 0, "started", None), ("pick", 0, "succeeded", {"sled_id": "s1"})]
        await store.tx(lambda c: _forge_log(c, saga_id, rows))
        ex2 = _executor(store, "sec-1")
        ex2.register(sdef)
        await ex2.resume_all()
        return await ex2.wait(saga_id, 10)

    outcome = asyncio.run(scenario())
    assert outcome.state == "done", outcome
    assert seen == [Picked("s1")]
