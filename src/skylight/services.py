"""What sagas, operations and background loops work with: one replica's services.

They are typed against this protocol, never against the control plane that provides it, so
the house has one direction: ``controlplane.py`` at the top wires a replica together and
nothing below it imports it. Tests may hand any object of this shape to what they drive.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import ClassVar, Protocol, TypedDict

from sqlalchemy.engine import Connection

from skylight.config import Settings
from skylight.events.feed import Feed
from skylight.events.reasons import Reason
from skylight.identity.sealing import Sealer
from skylight.metrics import Metrics
from skylight.sled.directory import SledDirectory
from skylight.store import Store
from skylight.store.sleds import RackCache


class SagaParams(Protocol):
    """A saga's parameters: a frozen dataclass that names the saga it is for, so creating
    a saga takes one typed value and the executor finds the definition from it."""

    saga: ClassVar[str]


class SagaError(TypedDict):
    """What failed a saga, as its log and its row keep it."""

    reason: Reason


@dataclass(frozen=True)
class SagaOutcome:
    """How a saga ended, as whoever waits for it sees it."""

    saga_id: str
    state: str  # done | unwound | stuck
    error: SagaError | None = None  # None when it is done

    @property
    def ok(self) -> bool:
        return self.state == "done"


class Sagas(Protocol):
    """The saga executor, as operations and loops use it."""

    def create_in(
        self,
        conn: Connection,
        params: SagaParams,
        *,
        instance_id: str | None,
        saga_id: str | None = None,
    ) -> str:
        """Insert the saga in the caller's transaction; it is launched when that commits."""
        ...

    def launch(self, saga_id: str) -> None: ...

    async def wait(self, saga_id: str, timeout: float | None) -> SagaOutcome | None: ...

    async def resume_all(self) -> list[str]: ...


class Services(Protocol):
    """One replica's services (read-only: whoever provides them decides what they are)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def store(self) -> Store: ...

    @property
    def sleds(self) -> SledDirectory: ...

    @property
    def rack_cache(self) -> RackCache:
        """The rack as this replica last read it, for placement."""
        ...

    @property
    def rng(self) -> random.Random: ...

    @property
    def executor(self) -> Sagas: ...

    @property
    def metrics(self) -> Metrics: ...

    @property
    def feed(self) -> Feed:
        """Told of this replica's event commits (streams and webhooks wake on it)."""
        ...

    @property
    def webhook_sealer(self) -> Sealer:
        """Seals webhook secrets for the store, and opens them to sign (rack-secret keyed)."""
        ...

    @property
    def sec_id(self) -> str:
        """The replica's identity as the owner of sagas and leases."""
        ...
