"""How a saga is written down: typed parameters, actions beside their undo actions, and the
steps of its end.

A saga module reads top to bottom as Oxide's ``declare_saga_actions!`` does: its ``Params``,
then its ``SagaDef`` (each node ``action / undo``, then the end steps), then the functions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from sqlalchemy.engine import Connection

from skylight.events.kinds import Actor
from skylight.events.reasons import Reason
from skylight.services import SagaParams, Services
from skylight.wire import JsonObject

T = TypeVar("T")
Out = TypeVar("Out")
P = TypeVar("P", bound=SagaParams)


@dataclass(frozen=True)
class VmmParams:
    """The parameters of a saga on an instance's VMM where it runs (stop, reboot)."""

    saga: ClassVar[str]
    instance_id: str
    vmm_id: str
    sled_id: str
    actor: Actor


class ActionError(Exception):
    """An action failed in a way worth telling the user: ``reason`` says how. The API's one
    error table (``api/errors.py``) turns its code into a status and an error code."""

    def __init__(self, reason: Reason) -> None:
        super().__init__(reason.get("message", "action failed"))
        self.reason = reason


class _Fencing(Protocol):
    async def fenced_tx(self, ctx: SagaContext[Any], fn: Callable[[Connection], T]) -> T: ...


@dataclass
class SagaContext(Generic[P]):
    """What an action sees: the saga's parameters, earlier actions' outputs (by action
    name, as logged), the replica's services."""

    saga_id: str
    name: str
    params: P
    outputs: dict[str, object]  # by action name: what each returned (its declared type)
    executor: _Fencing
    generation: int
    services: Services

    async def tx(self, fn: Callable[[Connection], T]) -> T:
        """A transaction that commits only while this replica still owns the saga."""
        return await self.executor.fenced_tx(self, fn)

    def output(self, action: str, kind: type[Out]) -> Out:
        """What an earlier action returned, as the type its ``Action`` declares."""
        value = self.outputs[action]
        if not isinstance(value, kind):
            raise TypeError(f"{action} returned {type(value).__name__}, not {kind.__name__}")
        return value


ActionFn = Callable[[SagaContext[P]], Awaitable[Any]]
UndoFn = Callable[[SagaContext[P]], Awaitable[None]]
EndFn = Callable[[Connection, SagaContext[P]], None]
FailFn = Callable[[Connection, SagaContext[P], Reason], None]


def _nothing(_conn: Connection, _ctx: SagaContext[Any]) -> None:
    return None


def _nothing_failed(_conn: Connection, _ctx: SagaContext[Any], _reason: Reason) -> None:
    return None


def _unexplained(_exc: Exception) -> Reason | None:
    return None


@dataclass(frozen=True)
class Action(Generic[P]):
    """One node: its action and the undo that reverses it (None: nothing to undo)."""

    name: str
    do: ActionFn[P]
    undo: UndoFn[P] | None = None
    # The dataclass the action returns (logged as JSON, typed again on replay); None: it
    # returns nothing, or plain JSON.
    output: type[Any] | None = None

    def load(self, logged: object) -> object:
        """The action's output as its log entry keeps it, typed again."""
        if self.output is None or not isinstance(logged, dict):
            return logged
        return self.output(**logged)


@dataclass(frozen=True)
class SagaDef(Generic[P]):
    """A saga: its parameters' type, its nodes in order, and the steps of its end, each run
    in the transaction that records that end (done, unwound, or stuck in an undo)."""

    params: type[P]
    actions: Sequence[Action[P]]
    on_done: EndFn[P] = _nothing
    on_unwound: FailFn[P] = _nothing_failed
    on_stuck: FailFn[P] = _nothing_failed
    # The reason for an exception of something the saga calls (a sled agent's error), in
    # this saga's words; None: an internal error.
    explain: Callable[[Exception], Reason | None] = _unexplained

    @property
    def name(self) -> str:
        return self.params.saga

    def load(self, stored: Mapping[str, Any]) -> P:
        """The parameters as the saga log stores them (JSON), typed again. Keys the type
        does not know, and nulls where it has a default (an older version wrote them), are
        left out."""
        fields = {f.name: f for f in dataclasses.fields(self.params)}  # type: ignore[arg-type]
        given = {
            k: v
            for k, v in stored.items()
            if k in fields and not (v is None and _has_default(fields[k]))
        }
        return self.params(**given)


def _has_default(f: dataclasses.Field[Any]) -> bool:
    missing = dataclasses.MISSING
    return f.default is not missing or f.default_factory is not missing


def dump(params: SagaParams) -> JsonObject:
    """The parameters as the saga log stores them."""
    return dataclasses.asdict(params)  # type: ignore[call-overload]


def dump_output(output: object) -> object:
    """An action's output as its log entry stores it (a dataclass as a JSON object)."""
    if dataclasses.is_dataclass(output) and not isinstance(output, type):
        return dataclasses.asdict(output)
    return output
