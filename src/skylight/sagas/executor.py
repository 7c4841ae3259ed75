"""Runs sagas, writes their log, resumes them after a crash, and fences lost ones."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from skylight.clock import now
from skylight.events import reasons
from skylight.ids import new_id
from skylight.sagas.definition import ActionError, SagaContext, SagaDef
from skylight.sled.agent import SledAgentError
from skylight.store import Store
from skylight.store.schema import saga, saga_node_event

log = logging.getLogger(__name__)
T = TypeVar("T")

_UNFINISHED = ("running", "unwinding")


class Fenced(Exception):
    """This replica no longer owns the saga (another adopted it): stop touching it."""


@dataclass(frozen=True)
class SagaOutcome:
    saga_id: str
    state: str  # done | unwound | stuck
    error: dict[str, Any] | None = None  # {"reason": ..., "error_code": ...}

    @property
    def ok(self) -> bool:
        return self.state == "done"


class SagaExecutor:
    def __init__(
        self,
        store: Store,
        sec_id: str,
        *,
        undo_attempts: int = 5,
        undo_retry_delay: float = 0.2,
    ) -> None:
        self.store = store
        self.sec_id = sec_id
        self.undo_attempts = undo_attempts
        self.undo_retry_delay = undo_retry_delay
        self.services: Any = None
        # Told (name, params, state, error) after a saga's end has been committed.
        self.on_end: list[Callable[[str, dict[str, Any], str, Any], None]] = []
        self._defs: dict[str, SagaDef] = {}
        self._tasks: dict[str, asyncio.Task[SagaOutcome | None]] = {}
        self._closing = False

    def register(self, sdef: SagaDef) -> None:
        self._defs[sdef.name] = sdef

    # -- creating and waiting --------------------------------------------------------------

    def create_in(
        self, conn: Connection, sdef: SagaDef, params: dict[str, Any], *, instance_id: str | None
    ) -> str:
        """Insert a saga inside the caller's transaction; call :meth:`launch` after commit."""
        saga_id = params.get("saga_id") or new_id()
        conn.execute(
            saga.insert().values(
                id=saga_id,
                name=sdef.name,
                state="running",
                params=params,
                instance_id=instance_id,
                current_sec=self.sec_id,
                adopt_generation=1,
                log_length=0,
                time_created=now(),
            )
        )
        return str(saga_id)

    def launch(self, saga_id: str, fresh: tuple[str, dict[str, Any]] | None = None) -> None:
        """Run the saga in its own task. ``fresh`` is (name, params) of a saga just created
        by this replica: it has no log yet, so there is nothing to load."""
        if saga_id in self._tasks or self._closing:
            return
        task = asyncio.get_running_loop().create_task(
            self._run(saga_id, fresh), name=f"saga-{saga_id}"
        )
        self._tasks[saga_id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(saga_id, None))

    async def wait(self, saga_id: str, timeout: float | None) -> SagaOutcome | None:
        """The saga's outcome, or None if it has not ended within ``timeout`` seconds.

        Waiting never cancels the saga: a caller that gives up (or hangs up) leaves it running.
        """
        task = self._tasks.get(saga_id)
        if task is not None:
            try:
                outcome = await asyncio.wait_for(asyncio.shield(task), timeout)
            except TimeoutError:
                return None
            if outcome is not None:
                return outcome
        return await self.store.tx(lambda c: self._outcome(c, saga_id))

    def _outcome(self, conn: Connection, saga_id: str) -> SagaOutcome | None:
        row = conn.execute(
            sa.select(saga.c.state, saga.c.error).where(saga.c.id == saga_id)
        ).first()
        if row is None or row.state in _UNFINISHED:
            return None
        return SagaOutcome(saga_id, row.state, row.error)

    async def resume_all(self) -> list[str]:
        """At start-up: pick up every saga this replica left unfinished."""

        def mine(conn: Connection) -> list[str]:
            q = sa.select(saga.c.id).where(
                saga.c.state.in_(_UNFINISHED), saga.c.current_sec == self.sec_id
            )
            return list(conn.execute(q.order_by(saga.c.time_created)).scalars())

        ids = await self.store.tx(mine)
        for saga_id in ids:
            self.launch(saga_id)
        return ids

    async def close(self, timeout: float = 5.0) -> None:
        """Stop launching; give running sagas a moment, then cancel them (they resume later)."""
        self._closing = True
        tasks = list(self._tasks.values())
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=timeout)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)

    # -- fencing ---------------------------------------------------------------------------

    def _check_fence(self, conn: Connection, ctx: SagaContext) -> None:
        q = sa.select(saga.c.state).where(
            saga.c.id == ctx.saga_id,
            saga.c.current_sec == self.sec_id,
            saga.c.adopt_generation == ctx.generation,
        )
        if conn.dialect.name == "postgresql":
            q = q.with_for_update()
        if conn.execute(q).first() is None:
            raise Fenced(ctx.saga_id)

    async def fenced_tx(self, ctx: SagaContext, fn: Callable[[Connection], T]) -> T:
        def run(conn: Connection) -> T:
            self._check_fence(conn, ctx)
            return fn(conn)

        return await self.store.tx(run)

    async def _log(
        self,
        ctx: SagaContext,
        entries: list[tuple[int, str, Any]],
        *,
        state: str | None = None,
        end: tuple[str, dict[str, Any] | None] | None = None,
    ) -> None:
        """Append ``entries`` (node index, event type, data) to the log in one transaction.

        The fence and the sequence number come from one statement: the UPDATE matches only
        while this replica owns the saga at this generation. ``end`` (state, error) also
        records the saga's end and runs its outcome hook, in the same transaction.
        """
        sdef = self._defs[ctx.name]

        def write(conn: Connection) -> None:
            values: dict[str, Any] = {"log_length": saga.c.log_length + len(entries)}
            if state is not None:
                values["state"] = state
            if end is not None:
                values.update(state=end[0], error=end[1], time_done=now())
            last = conn.execute(
                saga.update()
                .where(
                    saga.c.id == ctx.saga_id,
                    saga.c.current_sec == self.sec_id,
                    saga.c.adopt_generation == ctx.generation,
                )
                .values(**values)
                .returning(saga.c.log_length)
            ).scalar()
            if last is None:
                raise Fenced(ctx.saga_id)
            t = now()
            for offset, (index, event_type, data) in enumerate(entries):
                conn.execute(
                    saga_node_event.insert().values(
                        saga_id=ctx.saga_id,
                        seq=last - len(entries) + offset + 1,
                        node_index=index,
                        node_name=sdef.actions[index].name,
                        event_type=event_type,
                        data=data,
                        time=t,
                    )
                )
            if end is None:
                return
            final, error = end
            if final == "done":
                sdef.on_done(conn, ctx)
            elif final == "unwound":
                assert error is not None
                sdef.on_unwound(conn, ctx, error["reason"])
            else:
                assert error is not None
                sdef.on_stuck(conn, ctx, error["reason"])

        await self.store.tx(write)
        if end is not None:
            for callback in self.on_end:
                callback(ctx.name, ctx.params, end[0], end[1])

    # -- running ---------------------------------------------------------------------------

    def _load(self, conn: Connection, saga_id: str) -> tuple[Any, list[Any]]:
        row = conn.execute(sa.select(saga).where(saga.c.id == saga_id)).one()
        events = list(
            conn.execute(
                sa.select(saga_node_event)
                .where(saga_node_event.c.saga_id == saga_id)
                .order_by(saga_node_event.c.seq)
            )
        )
        return row, events

    async def _run(
        self, saga_id: str, fresh: tuple[str, dict[str, Any]] | None
    ) -> SagaOutcome | None:
        try:
            return await self._execute(saga_id, fresh)
        except Fenced:
            log.warning("saga %s was adopted by another replica; this one stops", saga_id)
            return None
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("saga %s: executor failure; it stays unfinished for recovery", saga_id)
            return None

    async def _execute(
        self, saga_id: str, fresh: tuple[str, dict[str, Any]] | None
    ) -> SagaOutcome | None:
        events: list[Any] = []
        if fresh is not None:
            name, params, generation = fresh[0], fresh[1], 1
        else:
            row, events = await self.store.tx(lambda c: self._load(c, saga_id))
            if row.state not in _UNFINISHED:
                return SagaOutcome(saga_id, row.state, row.error)
            name, params, generation = row.name, row.params, row.adopt_generation
        sdef = self._defs[name]
        ctx = SagaContext(
            saga_id=saga_id,
            name=name,
            params=dict(params),
            outputs={},
            executor=self,
            generation=generation,
            services=self.services,
        )
        started: list[int] = []
        succeeded: dict[int, Any] = {}
        undone: set[int] = set()
        error: dict[str, Any] | None = None
        for ev in events:
            if ev.event_type == "started" and ev.node_index not in started:
                started.append(ev.node_index)
            elif ev.event_type == "succeeded":
                succeeded[ev.node_index] = ev.data
            elif ev.event_type == "failed":
                error = ev.data
            elif ev.event_type == "undo_finished":
                undone.add(ev.node_index)
        for index, output in succeeded.items():
            ctx.outputs[sdef.actions[index].name] = output

        if error is None:
            # A step's "succeeded" and the next step's "started" share one transaction, and
            # the last step's "succeeded" shares the saga's final one.
            pending: list[tuple[int, str, Any]] = []
            for index, action in enumerate(sdef.actions):
                if index in succeeded:
                    continue
                if index not in started:
                    pending.append((index, "started", None))
                    await self._log(ctx, pending)
                    pending = []
                    started.append(index)
                elif pending:
                    await self._log(ctx, pending)
                    pending = []
                try:
                    output = await action.do(ctx)
                except Fenced:
                    raise
                except ActionError as exc:
                    error = {"reason": exc.reason, "error_code": exc.error_code}
                except SledAgentError as exc:
                    error = {"reason": _sled_reason(exc), "error_code": "Internal"}
                except Exception as exc:
                    log.exception("saga %s action %s failed", saga_id, action.name)
                    error = {"reason": _internal_reason(exc), "error_code": "Internal"}
                if error is not None:
                    await self._log(ctx, [(index, "failed", error)], state="unwinding")
                    break
                pending.append((index, "succeeded", output))
                ctx.outputs[action.name] = output
            else:
                await self._log(ctx, pending, end=("done", None))
                return SagaOutcome(saga_id, "done")

        # Unwind every action that started, newest first. Undo actions must tolerate an
        # action that failed halfway or never took effect.
        for index in reversed(started):
            undo = sdef.actions[index].undo
            if undo is None or index in undone:
                continue
            if not await self._undo(ctx, index, undo):
                stuck = {
                    "reason": _stuck_reason(sdef.actions[index].name, error),
                    "error_code": "Internal",
                }
                await self._log(ctx, [], end=("stuck", stuck))
                return SagaOutcome(saga_id, "stuck", stuck)
        await self._log(ctx, [], end=("unwound", error))
        return SagaOutcome(saga_id, "unwound", error)

    async def _undo(self, ctx: SagaContext, index: int, undo: Any) -> bool:
        await self._log(ctx, [(index, "undo_started", None)])
        last: Exception | None = None
        for attempt in range(self.undo_attempts):
            try:
                await undo(ctx)
            except Fenced:
                raise
            except Exception as exc:
                last = exc
                log.warning(
                    "saga %s undo %d attempt %d failed: %s", ctx.saga_id, index, attempt, exc
                )
                await asyncio.sleep(self.undo_retry_delay * (2**attempt))
                continue
            await self._log(ctx, [(index, "undo_finished", None)])
            return True
        await self._log(ctx, [(index, "undo_failed", {"error": str(last)})])
        return False


def _sled_reason(exc: SledAgentError) -> dict[str, Any]:
    code = "sled_failure" if exc.kind in ("unreachable", "timeout") else "vmm_failure"
    message = {
        "sled_failure": "The sled chosen for the instance stopped responding while it started.",
        "vmm_failure": "The instance's virtual machine failed while it was being started.",
    }[code]
    return reasons.make(
        code,
        message,
        action="Start the instance again; it will be placed afresh.",
        internal={"sled_agent_error": exc.kind, "detail": exc.message},
    )


def _internal_reason(exc: Exception) -> dict[str, Any]:
    return reasons.make(
        "internal",
        "The control plane hit an internal error while carrying out the operation.",
        internal={"error": f"{type(exc).__name__}: {exc}"},
    )


def _stuck_reason(action: str, error: dict[str, Any] | None) -> dict[str, Any]:
    cause = (error or {}).get("reason") or {}
    return reasons.make(
        "operation_stuck",
        "An operation on this instance failed and could not be rolled back; operators must "
        "act before the instance can change state again.",
        internal={"undo_failed": action, "original_reason": cause},
    )
