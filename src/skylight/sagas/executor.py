"""Runs sagas, writes their log, resumes them after a crash, and fences lost ones.

What the executor promises, beyond running actions in order and unwinding on failure:

* **Chaining.** A saga created in a transaction (:meth:`SagaExecutor.create_in`) is launched
  when that transaction commits, wherever it commits: a request, another saga's end (create
  begins the start), the auto-restart task, adoption. On start-up and every heartbeat, each
  replica also launches every unfinished saga it owns that it is not running
  (:meth:`SagaExecutor.resume_all`), so no commit whose aftermath was lost strands a saga.
* **Outages are waited out.** A step that finds the store unreachable waits with capped
  backoff until it is back, checks that the saga is still this replica's (an adopter may
  have taken it meanwhile), and runs again; actions are idempotent. A log write whose commit
  is in doubt (the connection dropped during COMMIT) is recognised by the log's length, so it
  is never written twice, nor an end hook run twice. Only errors of the actions themselves
  fail a saga.
* **Draining.** A replica told to stop (:meth:`SagaExecutor.drain`) begins no new step: each
  saga stops at its next log entry and is handed over at once, so a live peer carries on
  without waiting for the adoption timeout.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from skylight.clock import now
from skylight.events import reasons
from skylight.events.reasons import Reason
from skylight.ids import new_id
from skylight.sagas.crash import CrashPoint
from skylight.sagas.definition import (
    ActionError,
    SagaContext,
    SagaDef,
    UndoFn,
    dump,
    dump_output,
)
from skylight.services import SagaError, SagaOutcome, SagaParams, Services
from skylight.store import Row, Store, StoreUnavailable, after_commit
from skylight.store.schema import saga, saga_node_event

log = logging.getLogger(__name__)
T = TypeVar("T")

_UNFINISHED = ("running", "unwinding")
# One log entry: (node index, event type, data: an action's output, or what failed it).
Entry = tuple[int, str, object]
_BACKOFF_FIRST = 0.05  # seconds before the first retry of a step that found the store down
_RELAUNCH_MAX = 60.0  # cap on the wait before relaunching a saga the executor failed on


class Fenced(Exception):
    """This replica no longer owns the saga (another adopted it): stop touching it."""


class _Paused(Exception):
    """The replica is draining: the saga stopped at a log entry, ready to be handed over."""


@dataclass
class _Run:
    """One execution of a saga: its context and what its log says so far."""

    ctx: SagaContext[Any]
    sdef: SagaDef[Any]
    log_length: int = 0
    started: list[int] = field(default_factory=list)
    succeeded: dict[int, object] = field(default_factory=dict)
    undone: set[int] = field(default_factory=set)
    error: SagaError | None = None

    def replay(self, events: list[Row]) -> None:
        for ev in events:
            if ev.event_type == "started" and ev.node_index not in self.started:
                self.started.append(ev.node_index)
            elif ev.event_type == "succeeded":
                self.succeeded[ev.node_index] = ev.data
            elif ev.event_type == "failed":
                self.error = ev.data
            elif ev.event_type == "undo_finished":
                self.undone.add(ev.node_index)
        for index, output in self.succeeded.items():
            action = self.sdef.actions[index]
            self.ctx.outputs[action.name] = action.load(output)


class SagaExecutor:
    def __init__(
        self,
        store: Store,
        sec_id: str,
        *,
        undo_attempts: int = 5,
        undo_retry_delay: float = 0.2,
        store_retry_max: float = 2.0,
        crash: CrashPoint | None = None,
    ) -> None:
        self.store = store
        self.sec_id = sec_id
        self.undo_attempts = undo_attempts
        self.undo_retry_delay = undo_retry_delay
        self.store_retry_max = store_retry_max
        self.crash = crash
        # Set once by whoever wires the replica, before any saga runs.
        self.services: Services | None = None
        # Told (name, params, state, error) after a saga's end has been committed.
        self.on_end: list[Callable[[str, SagaParams, str, SagaError | None], None]] = []
        # How many times a step waited for the store (for /metrics and tests).
        self.store_waits = 0
        self._defs: dict[str, SagaDef[Any]] = {}
        self._tasks: dict[str, asyncio.Task[SagaOutcome | None]] = {}
        self._paused: set[str] = set()
        self._broken: dict[str, tuple[int, float]] = {}  # saga -> (failures, relaunch after)
        self._draining = False
        self._closing = False

    def register(self, sdef: SagaDef[Any]) -> None:
        self._defs[sdef.name] = sdef

    # -- creating and waiting --------------------------------------------------------------

    def create_in(
        self,
        conn: Connection,
        params: SagaParams,
        *,
        instance_id: str | None,
        saga_id: str | None = None,
    ) -> str:
        """Insert a saga inside the caller's transaction; it is launched when that commits."""
        saga_id = saga_id or new_id()
        sdef = self._defs[params.saga]
        conn.execute(
            saga.insert().values(
                id=saga_id,
                name=sdef.name,
                state="running",
                params=dump(params),
                instance_id=instance_id,
                current_sec=self.sec_id,
                adopt_generation=1,
                log_length=0,
                time_created=now(),
            )
        )
        after_commit(conn, lambda: self.launch(saga_id, params))
        return saga_id

    def launch(self, saga_id: str, fresh: SagaParams | None = None) -> None:
        """Run the saga in its own task (once: a saga already running is left alone).
        ``fresh`` is the parameters of a saga just created by this replica: it has no log
        yet, so there is nothing to load."""
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
        """Launch every unfinished saga of this replica that it is not running: at start-up
        (what it left when it died) and on a timer (a saga whose launch was lost with the
        commit's aftermath, or that the executor itself failed on). Returns those launched."""

        def mine(conn: Connection) -> list[str]:
            q = sa.select(saga.c.id).where(
                saga.c.state.in_(_UNFINISHED), saga.c.current_sec == self.sec_id
            )
            return list(conn.execute(q.order_by(saga.c.time_created)).scalars())

        if self._closing:
            return []
        ids = await self.store.tx(mine)
        t = time.monotonic()
        launched = []
        for saga_id in ids:
            if saga_id in self._tasks or self._broken.get(saga_id, (0, 0.0))[1] > t:
                continue
            self.launch(saga_id)
            launched.append(saga_id)
        return launched

    # -- stopping --------------------------------------------------------------------------

    async def drain(
        self, timeout: float, hand_over: Callable[[list[str]], Awaitable[object]]
    ) -> None:
        """Stop without leaving sagas to the adoption timeout.

        No saga is launched and none begins another step: each stops at its next log entry
        and ``hand_over`` gets it at once (a peer carries on from that entry). Actions under
        way may finish within ``timeout``; what is still inside an action then is cancelled
        (its replay re-runs the action) and handed over too.
        """
        self._draining = True
        self._closing = True
        tasks = dict(self._tasks)
        pending = set(tasks.values())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while pending:
            done, pending = await asyncio.wait(
                pending, timeout=max(0.0, deadline - loop.time()), return_when="FIRST_COMPLETED"
            )
            if not done:
                break
            paused = [sid for sid, t in tasks.items() if t in done and sid in self._paused]
            if paused:
                await self._hand_over(hand_over, paused)
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.wait(pending, timeout=1.0)
            await self._hand_over(hand_over, [sid for sid, t in tasks.items() if t in pending])

    async def _hand_over(
        self, hand_over: Callable[[list[str]], Awaitable[object]], saga_ids: list[str]
    ) -> None:
        try:
            await hand_over(saga_ids)
        except StoreUnavailable as exc:
            # They stay this replica's: adopted when its heartbeat goes stale, or resumed
            # when it comes back.
            log.warning("could not hand over %d sagas (%s)", len(saga_ids), exc)

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

    # -- fencing and waiting for the store -------------------------------------------------

    def _check_fence(self, conn: Connection, ctx: SagaContext[Any]) -> None:
        q = sa.select(saga.c.state).where(
            saga.c.id == ctx.saga_id,
            saga.c.current_sec == self.sec_id,
            saga.c.adopt_generation == ctx.generation,
        )
        if conn.dialect.name == "postgresql":
            q = q.with_for_update()
        if conn.execute(q).first() is None:
            raise Fenced(ctx.saga_id)

    async def fenced_tx(self, ctx: SagaContext[Any], fn: Callable[[Connection], T]) -> T:
        def run(conn: Connection) -> T:
            self._check_fence(conn, ctx)
            return fn(conn)

        return await self.store.tx(run)

    async def _patiently(self, saga_id: str, call: Callable[[], Awaitable[T]]) -> T:
        """``call()`` until the store answers it, waiting out outages with capped backoff."""
        delay = _BACKOFF_FIRST
        while True:
            try:
                return await call()
            except StoreUnavailable as exc:
                delay = await self._outage(saga_id, exc, delay)

    async def _outage(self, saga_id: str, exc: StoreUnavailable, delay: float) -> float:
        """One wait of a saga for the store; the next delay. A draining replica stops the
        saga here instead: it stands at its last log entry, as after a crash."""
        if self._draining:
            self._paused.add(saga_id)
            raise _Paused(saga_id) from exc
        self.store_waits += 1
        if delay == _BACKOFF_FIRST:
            log.warning("saga %s waits for the store: %s", saga_id, exc)
        await asyncio.sleep(delay)
        return min(delay * 2, self.store_retry_max)

    async def _until_store_back(self, ctx: SagaContext[Any], exc: StoreUnavailable) -> None:
        """Wait until the store answers again and the saga is still ours (else Fenced)."""
        delay = _BACKOFF_FIRST
        while True:
            delay = await self._outage(ctx.saga_id, exc, delay)
            try:
                await self.store.tx(lambda c: self._check_fence(c, ctx))
                return
            except StoreUnavailable as again:
                exc = again

    # -- the log ---------------------------------------------------------------------------

    async def _log(
        self,
        run: _Run,
        entries: list[Entry],
        *,
        state: str | None = None,
        end: tuple[str, SagaError | None] | None = None,
    ) -> None:
        """Append ``entries`` (node index, event type, data) to the log in one transaction.

        The UPDATE that claims the sequence numbers matches only while this replica owns the
        saga at this generation and the log is as long as this run believes (the fence, and
        the proof that an earlier attempt whose commit was in doubt did not land). ``end``
        (state, error) also records the saga's end and runs its outcome hook, in the same
        transaction.
        """
        ctx, sdef = run.ctx, run.sdef
        expected = run.log_length
        length = expected + len(entries)

        def write(conn: Connection) -> None:
            values: dict[str, object] = {"log_length": length}
            if state is not None:
                values["state"] = state
            if end is not None:
                values.update(state=end[0], error=end[1], time_done=now())
            matched = conn.execute(
                saga.update()
                .where(
                    saga.c.id == ctx.saga_id,
                    saga.c.current_sec == self.sec_id,
                    saga.c.adopt_generation == ctx.generation,
                    saga.c.log_length == expected,
                    saga.c.state.in_(_UNFINISHED),
                )
                .values(**values)
            ).rowcount
            if not matched:
                if self._landed(conn, ctx, length, state or (end[0] if end else None)):
                    return  # an earlier attempt committed, though its caller never heard
                raise Fenced(ctx.saga_id)
            t = now()
            for offset, (index, event_type, data) in enumerate(entries):
                conn.execute(
                    saga_node_event.insert().values(
                        saga_id=ctx.saga_id,
                        seq=expected + offset + 1,
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

        await self._patiently(ctx.saga_id, lambda: self.store.tx(write))
        run.log_length = length
        if end is not None:
            if self.crash is not None:
                self.crash.hit("after_end", ctx.name)
            for callback in self.on_end:
                callback(ctx.name, ctx.params, end[0], end[1])

    def _landed(
        self, conn: Connection, ctx: SagaContext[Any], length: int, state: str | None
    ) -> bool:
        row = conn.execute(
            sa.select(
                saga.c.state, saga.c.log_length, saga.c.current_sec, saga.c.adopt_generation
            ).where(saga.c.id == ctx.saga_id)
        ).first()
        return (
            row is not None
            and row.current_sec == self.sec_id
            and row.adopt_generation == ctx.generation
            and row.log_length == length
            and (state is None or row.state == state)
        )

    # -- running ---------------------------------------------------------------------------

    def _load(self, conn: Connection, saga_id: str) -> tuple[Row, list[Row]]:
        row = conn.execute(sa.select(saga).where(saga.c.id == saga_id)).one()
        events = list(
            conn.execute(
                sa.select(saga_node_event)
                .where(saga_node_event.c.saga_id == saga_id)
                .order_by(saga_node_event.c.seq)
            )
        )
        return row, events

    async def _run(self, saga_id: str, fresh: SagaParams | None) -> SagaOutcome | None:
        try:
            outcome = await self._execute(saga_id, fresh)
        except Fenced:
            log.warning("saga %s was adopted by another replica; this one stops", saga_id)
            return None
        except _Paused:
            log.info("saga %s paused for hand-over", saga_id)
            return None
        except asyncio.CancelledError:
            raise
        except Exception:
            # A bug, not an outage: the saga stays unfinished, and the timer relaunches it
            # after a growing delay (the auditor reports its instance meanwhile).
            failures = self._broken.get(saga_id, (0, 0.0))[0] + 1
            wait = min(2.0**failures, _RELAUNCH_MAX)
            self._broken[saga_id] = (failures, time.monotonic() + wait)
            log.exception("saga %s: executor failure; relaunched in %.0f s", saga_id, wait)
            return None
        self._broken.pop(saga_id, None)
        return outcome

    async def _execute(self, saga_id: str, fresh: SagaParams | None) -> SagaOutcome | None:
        assert self.services is not None, "the executor runs sagas once it has services"
        events: list[Row] = []
        log_length = 0
        if fresh is not None:
            sdef, params, generation = self._defs[fresh.saga], fresh, 1
        else:
            row, events = await self._patiently(
                saga_id, lambda: self.store.tx(lambda c: self._load(c, saga_id))
            )
            if row.state not in _UNFINISHED:
                return SagaOutcome(saga_id, row.state, row.error)
            sdef = self._defs[row.name]
            params, generation = sdef.load(row.params), row.adopt_generation
            log_length = row.log_length
        ctx: SagaContext[Any] = SagaContext(
            saga_id=saga_id,
            name=sdef.name,
            params=params,
            outputs={},
            executor=self,
            generation=generation,
            services=self.services,
        )
        run = _Run(ctx, sdef, log_length)
        run.replay(events)
        if run.error is None:
            outcome = await self._forward(run)
            if outcome is not None:
                return outcome
        return await self._unwind(run)

    async def _forward(self, run: _Run) -> SagaOutcome | None:
        """Run the actions not yet done, in order; the outcome if all succeed, else None
        (``run.error`` says why)."""
        ctx, sdef = run.ctx, run.sdef
        # A step's "succeeded" and the next step's "started" share one transaction, and the
        # last step's "succeeded" shares the saga's final one.
        pending: list[Entry] = []
        for index, action in enumerate(sdef.actions):
            if index in run.succeeded:
                continue
            if self._draining:
                if pending:
                    await self._log(run, pending)
                self._paused.add(ctx.saga_id)
                raise _Paused(ctx.saga_id)
            if index not in run.started:
                if not run.started and self.crash is not None:
                    self.crash.hit("before_first_step", ctx.name)
                pending.append((index, "started", None))
                await self._log(run, pending)
                pending = []
                run.started.append(index)
            elif pending:
                await self._log(run, pending)
                pending = []
            output, error = await self._act(run, index)
            if self.crash is not None:
                self.crash.hit("before_log", ctx.name, action.name)
            if error is not None:
                run.error = error
                await self._log(run, [(index, "failed", error)], state="unwinding")
                return None
            pending.append((index, "succeeded", dump_output(output)))
            ctx.outputs[action.name] = output
        await self._log(run, pending, end=("done", None))
        return SagaOutcome(ctx.saga_id, "done")

    async def _act(self, run: _Run, index: int) -> tuple[object, SagaError | None]:
        """Run one action: (output, None), or (None, the error that fails the saga). A store
        outage is not the action's failure: it is waited out and the action runs again."""
        ctx = run.ctx
        action = run.sdef.actions[index]
        while True:
            try:
                return await action.do(ctx), None
            except Fenced:
                raise
            except StoreUnavailable as exc:
                await self._until_store_back(ctx, exc)
            except ActionError as exc:
                return None, SagaError(reason=exc.reason)
            except Exception as exc:
                reason = run.sdef.explain(exc)
                if reason is None:
                    log.exception("saga %s action %s failed", ctx.saga_id, action.name)
                    reason = _internal_reason(exc)
                return None, SagaError(reason=reason)

    async def _unwind(self, run: _Run) -> SagaOutcome:
        """Undo every action that started, newest first. Undo actions must tolerate an
        action that failed halfway or never took effect."""
        ctx, sdef = run.ctx, run.sdef
        for index in reversed(run.started):
            undo = sdef.actions[index].undo
            if undo is None or index in run.undone:
                continue
            if self._draining:
                self._paused.add(ctx.saga_id)
                raise _Paused(ctx.saga_id)
            if not await self._undo(run, index, undo):
                stuck = SagaError(reason=_stuck_reason(sdef.actions[index].name, run.error))
                await self._log(run, [], end=("stuck", stuck))
                return SagaOutcome(ctx.saga_id, "stuck", stuck)
            run.undone.add(index)
        await self._log(run, [], end=("unwound", run.error))
        return SagaOutcome(ctx.saga_id, "unwound", run.error)

    async def _undo(self, run: _Run, index: int, undo: UndoFn[Any]) -> bool:
        ctx = run.ctx
        await self._log(run, [(index, "undo_started", None)])
        last: Exception | None = None
        failures = 0
        while failures < self.undo_attempts:
            try:
                await undo(ctx)
            except Fenced:
                raise
            except StoreUnavailable as exc:
                await self._until_store_back(ctx, exc)  # an outage is not the undo's failure
                continue
            except Exception as exc:
                last = exc
                log.warning(
                    "saga %s undo %d attempt %d failed: %s", ctx.saga_id, index, failures, exc
                )
                await asyncio.sleep(self.undo_retry_delay * (2**failures))
                failures += 1
                continue
            await self._log(run, [(index, "undo_finished", None)])
            return True
        await self._log(run, [(index, "undo_failed", {"error": str(last)})])
        return False


def _internal_reason(exc: Exception) -> Reason:
    return reasons.make(
        "internal",
        "The control plane hit an internal error while carrying out the operation.",
        internal={"error": f"{type(exc).__name__}: {exc}"},
    )


def _stuck_reason(action: str, error: SagaError | None) -> Reason:
    cause = error["reason"] if error is not None else {}
    return reasons.make(
        "operation_stuck",
        "An operation on this instance failed and could not be rolled back; operators must "
        "act before the instance can change state again.",
        internal={"undo_failed": action, "original_reason": cause},
    )
