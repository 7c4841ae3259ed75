"""The simulated rack: sleds whose VMMs boot after a delay and fail when told to.

Its VMMs outlive a restart of the control plane, as real sleds' would: the rack keeps them in
its own small SQLite file (``sim-rack.db`` in the data directory). A VMM moves
``creating -> starting -> running``; ``running`` is reached ``start_delay`` seconds after
``ensure_running``, computed when asked rather than by a ticking task.

Faults (``Fault``) are armed through the operator API and fire at a named call
(``register``, ``ensure_running``, ``unregister``, ``stop``) with a kind: ``error`` (the agent
refuses), ``vmm_gone`` (the VMM vanishes) or ``hang`` (the agent never answers).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from skylight.ids import new_id
from skylight.sled.agent import SledAgentError, VmmLostListener, VmmSpec
from skylight.wire import JsonObject

FAULT_POINTS = ("register", "ensure_running", "unregister", "stop")
FAULT_KINDS = ("error", "vmm_gone", "hang")


@dataclass
class Fault:
    at: str
    kind: str
    sled: str | None = None
    instance: str | None = None
    count: int | None = None  # None: until removed
    message: str = "injected fault"
    id: str = field(default_factory=new_id)


@dataclass
class _Vmm:
    vmm_id: str
    instance_id: str
    sled_id: str
    state: str  # creating | starting | running
    ready_at: float | None = None


class _Persistence:
    """The rack's memory across restarts. Small synchronous writes; the file is local.

    In WAL mode with ``synchronous=NORMAL`` a write reaches the OS before it returns, so it
    outlives the process (a SIGKILLed control plane finds its VMMs again), but it is not
    fsynced: the rack is simulated, and an fsync per VMM change cost a start 1.9 to 2.9 ms of
    the event loop against 0.13 to 0.22 ms without (measured side by side, issue 14).
    """

    def __init__(self, path: Path | None) -> None:
        self._lock = threading.Lock()
        target = ":memory:" if path is None else str(path)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS vmm (vmm_id TEXT PRIMARY KEY, instance_id TEXT,"
            " sled_id TEXT, state TEXT, ready_at REAL)"
        )
        self._db.execute("CREATE TABLE IF NOT EXISTS fault (id TEXT PRIMARY KEY, body TEXT)")
        self._db.execute("CREATE TABLE IF NOT EXISTS sled (id TEXT PRIMARY KEY, powered INT)")

    def load(self) -> tuple[list[_Vmm], list[Fault], dict[str, bool]]:
        with self._lock:
            vmms = [_Vmm(*row) for row in self._db.execute("SELECT * FROM vmm")]
            faults = [Fault(**json.loads(b)) for (b,) in self._db.execute("SELECT body FROM fault")]
            power = {i: bool(p) for i, p in self._db.execute("SELECT id, powered FROM sled")}
        return vmms, faults, power

    def put_vmm(self, v: _Vmm) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO vmm VALUES (?, ?, ?, ?, ?)",
                (v.vmm_id, v.instance_id, v.sled_id, v.state, v.ready_at),
            )

    def drop_vmm(self, vmm_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM vmm WHERE vmm_id = ?", (vmm_id,))

    def put_fault(self, f: Fault) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO fault VALUES (?, ?)", (f.id, json.dumps(asdict(f)))
            )

    def drop_fault(self, fault_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM fault WHERE id = ?", (fault_id,))

    def put_power(self, sled_id: str, powered: bool) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO sled VALUES (?, ?)", (sled_id, int(powered)))


class SimRack:
    """All simulated sleds of one control plane, their VMMs and the armed faults."""

    def __init__(self, state_file: Path | None, start_delay: float) -> None:
        self.start_delay = start_delay
        self._store = _Persistence(state_file)
        vmms, faults, power = self._store.load()
        self._vmms: dict[str, _Vmm] = {v.vmm_id: v for v in vmms}
        self._faults: dict[str, Fault] = {f.id: f for f in faults}
        self._powered: dict[str, bool] = power
        self._listener: VmmLostListener | None = None

    def set_listener(self, listener: VmmLostListener) -> None:
        self._listener = listener

    def agent(self, sled_id: str) -> SimSledAgent:
        self._powered.setdefault(sled_id, True)
        return SimSledAgent(self, sled_id)

    # -- fault injection (operator API) ----------------------------------------------------

    def arm(self, fault: Fault) -> Fault:
        self._faults[fault.id] = fault
        self._store.put_fault(fault)
        return fault

    def faults(self) -> list[Fault]:
        return list(self._faults.values())

    def disarm(self, fault_id: str) -> bool:
        if self._faults.pop(fault_id, None) is None:
            return False
        self._store.drop_fault(fault_id)
        return True

    async def trip(
        self, sled_id: str, vmm_id: str | None, instance_id: str | None, at: str
    ) -> None:
        """Fire the first armed fault that matches this call, if any."""
        if not self._powered.get(sled_id, True):
            raise SledAgentError("unreachable", "the sled is powered off")
        for fault in list(self._faults.values()):
            if fault.at != at or (fault.sled is not None and fault.sled != sled_id):
                continue
            if fault.instance is not None and fault.instance != instance_id:
                continue
            if fault.count is not None:
                fault.count -= 1
                if fault.count <= 0:
                    self.disarm(fault.id)
                else:
                    self._store.put_fault(fault)
            if fault.kind == "hang":
                await asyncio.sleep(3600)
            if fault.kind == "vmm_gone" and vmm_id is not None:
                self.forget(vmm_id)
                raise SledAgentError("vmm_gone", fault.message)
            raise SledAgentError("error", fault.message)

    # -- VMMs ------------------------------------------------------------------------------

    def vmm(self, vmm_id: str) -> _Vmm | None:
        v = self._vmms.get(vmm_id)
        if v is not None and v.state == "starting" and v.ready_at and time.time() >= v.ready_at:
            v.state = "running"
            self._store.put_vmm(v)
        return v

    def save(self, v: _Vmm) -> None:
        self._vmms[v.vmm_id] = v
        self._store.put_vmm(v)

    def forget(self, vmm_id: str) -> _Vmm | None:
        v = self._vmms.pop(vmm_id, None)
        if v is not None:
            self._store.drop_vmm(vmm_id)
        return v

    def vmms_on(self, sled_id: str) -> list[_Vmm]:
        return [v for v in self._vmms.values() if v.sled_id == sled_id]

    def is_powered(self, sled_id: str) -> bool:
        return self._powered.get(sled_id, True)

    # -- failures from outside (operator API) ----------------------------------------------

    async def crash_instance(self, instance_id: str) -> bool:
        """The VMM of ``instance_id`` dies (cause ``vmm_failure``)."""
        found = [v for v in self._vmms.values() if v.instance_id == instance_id]
        for v in found:
            self.forget(v.vmm_id)
            await self._tell(v.vmm_id, "vmm_failure", "the VMM process exited unexpectedly")
        return bool(found)

    async def power_off(self, sled_id: str) -> None:
        self._powered[sled_id] = False
        self._store.put_power(sled_id, False)
        for v in self.vmms_on(sled_id):
            self.forget(v.vmm_id)
            await self._tell(v.vmm_id, "sled_failure", f"sled {sled_id} lost power")

    async def power_on(self, sled_id: str) -> None:
        self._powered[sled_id] = True
        self._store.put_power(sled_id, True)

    async def _tell(self, vmm_id: str, cause: str, detail: str) -> None:
        if self._listener is not None:
            await self._listener(vmm_id, cause, detail)


class SimSledAgent:
    """One simulated sled, as the control plane sees it through the SledAgent interface."""

    def __init__(self, rack: SimRack, sled_id: str) -> None:
        self.rack = rack
        self.sled_id = sled_id

    async def register(self, spec: VmmSpec) -> None:
        await self.rack.trip(self.sled_id, spec.vmm_id, spec.instance_id, "register")
        if self.rack.vmm(spec.vmm_id) is None:
            self.rack.save(_Vmm(spec.vmm_id, spec.instance_id, self.sled_id, "creating"))

    async def ensure_running(self, vmm_id: str) -> None:
        v = await self._trip(vmm_id, "ensure_running")
        if v is None:
            raise SledAgentError("vmm_gone", "the sled has no such VMM")
        if v.state == "creating":
            self._boot(v)

    async def vmm_state(self, vmm_id: str) -> str | None:
        self._powered_or_raise()
        v = self.rack.vmm(vmm_id)
        return None if v is None else v.state

    async def stop(self, vmm_id: str) -> None:
        if not self.rack.is_powered(self.sled_id):
            return
        await self._trip(vmm_id, "stop")
        self.rack.forget(vmm_id)

    async def unregister(self, vmm_id: str) -> None:
        if not self.rack.is_powered(self.sled_id):
            return  # a sled without power runs no VMMs: there is nothing to forget
        await self._trip(vmm_id, "unregister")
        self.rack.forget(vmm_id)

    async def reboot(self, vmm_id: str) -> None:
        self._powered_or_raise()
        v = self.rack.vmm(vmm_id)
        if v is None:
            raise SledAgentError("vmm_gone", "the sled has no such VMM")
        if v.state == "running":
            self._boot(v)

    async def _trip(self, vmm_id: str, at: str) -> _Vmm | None:
        """The VMM, once any fault armed for this call (``at``) on it has fired."""
        v = self.rack.vmm(vmm_id)
        await self.rack.trip(self.sled_id, vmm_id, v.instance_id if v else None, at)
        return v

    def _powered_or_raise(self) -> None:
        if not self.rack.is_powered(self.sled_id):
            raise SledAgentError("unreachable", "the sled is powered off")

    def _boot(self, v: _Vmm) -> None:
        """Start booting ``v``: it is ``starting`` until the rack's start delay has passed."""
        v.state = "starting"
        v.ready_at = time.time() + self.rack.start_delay
        self.rack.save(v)


def describe(fault: Fault) -> JsonObject:
    return asdict(fault)
