"""How a saga is written down: actions, undo actions, and the hooks of its end."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.engine import Connection

if TYPE_CHECKING:
    from skylight.sagas.executor import SagaExecutor

T = TypeVar("T")


class ActionError(Exception):
    """An action failed in a way worth telling the user: ``reason`` says how."""

    def __init__(self, reason: dict[str, Any], error_code: str = "Internal") -> None:
        super().__init__(reason.get("message", "action failed"))
        self.reason = reason
        self.error_code = error_code


@dataclass
class SagaContext:
    """What an action sees: the saga's parameters, earlier actions' outputs, the services."""

    saga_id: str
    name: str
    params: dict[str, Any]
    outputs: dict[str, Any]
    executor: SagaExecutor
    generation: int
    services: Any = None

    async def tx(self, fn: Callable[[Connection], T]) -> T:
        """A transaction that commits only while this replica still owns the saga."""
        return await self.executor.fenced_tx(self, fn)


ActionFn = Callable[[SagaContext], Awaitable[Any]]
UndoFn = Callable[[SagaContext], Awaitable[None]]
EndFn = Callable[[Connection, SagaContext], None]
FailFn = Callable[[Connection, SagaContext, dict[str, Any]], None]


def _nothing(_conn: Connection, _ctx: SagaContext) -> None:
    return None


def _nothing_failed(_conn: Connection, _ctx: SagaContext, _reason: dict[str, Any]) -> None:
    return None


@dataclass(frozen=True)
class Action:
    name: str
    do: ActionFn
    undo: UndoFn | None = None


@dataclass(frozen=True)
class SagaDef:
    """``on_done``/``on_unwound``/``on_stuck`` run in the transaction that records the end."""

    name: str
    actions: Sequence[Action]
    on_done: EndFn = _nothing
    on_unwound: FailFn = _nothing_failed
    on_stuck: FailFn = _nothing_failed
    extra: dict[str, Any] = field(default_factory=dict)
