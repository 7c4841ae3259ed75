"""A durable saga executor in the style of Oxide's steno.

A saga is a list of named actions, each beside its undo. Every step is appended to the saga
log in the store before the next one begins; a failed action unwinds, in reverse, every action
that had started; a crashed replica's sagas are replayed from the log (actions are idempotent).
The saga's end (done, unwound or stuck) and its outcome event are written in one transaction.
"""

from skylight.sagas.definition import Action, ActionError, SagaContext, SagaDef
from skylight.sagas.executor import Fenced, SagaExecutor
from skylight.services import SagaOutcome

__all__ = [
    "Action",
    "ActionError",
    "Fenced",
    "SagaContext",
    "SagaDef",
    "SagaExecutor",
    "SagaOutcome",
]
