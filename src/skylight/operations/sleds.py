"""Sleds as operators see and steer them: the list, one sled with what is reserved on it,
the instances on it, its provision policy, expunging it; and the two calls of HTTP sled
agents, registering and reporting a VMM that died.

The sled-agent clients themselves live in ``skylight.sled``, and what becomes of the
instances of a sled that leaves (or of a VMM that dies) in ``instances.failures``; this is
what the API asks of the rack's sleds, one operation per request.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from skylight.errors import Forbidden, InvalidRequest, NotFound
from skylight.instances import failures
from skylight.placement import SledView
from skylight.services import Services
from skylight.store import Row, instances, projects
from skylight.store import sleds as rows
from skylight.store.paging import Page, PageRequest


@dataclass(frozen=True)
class Sled:
    """A sled row with what is reserved on it (None: shown as nothing reserved)."""

    row: Row
    used: SledView | None

    @property
    def id(self) -> str:  # the key its list is paged by
        return str(self.row.id)


@dataclass(frozen=True)
class SledInstance:
    """An instance with a VMM on a sled, and the name of its project."""

    row: Row
    project_name: str

    @property
    def id(self) -> str:
        return str(self.row.id)


ProvisionPolicy = Literal["provisionable", "non_provisionable"]


@dataclass(frozen=True)
class PolicyChange:
    old: ProvisionPolicy
    new: ProvisionPolicy


@dataclass(frozen=True)
class AgentRegistration:
    """What an HTTP sled agent tells the control plane about itself when it starts (the
    keyword arguments of ``store.sleds.upsert_agent``, field for field)."""

    serial: str
    url: str
    cpus: int
    memory: int
    local_storage: int
    cpu_family: str
    rack_id: str  # the agent's, or the simulated rack's when it names none


def get(conn: Connection, sled_id: str) -> Row:
    """The sled ``sled_id`` (a checked id), or NotFound."""
    row = rows.get(conn, sled_id)
    if row is None:
        raise NotFound.by_id("sled", sled_id)
    return row


def _with_usage(conn: Connection, row: Row) -> Sled:
    found = rows.views(conn, only=row.id)
    return Sled(row, found[0] if found else None)


def page(conn: Connection, req: PageRequest) -> Page[Sled]:
    found = rows.page(conn, limit=req.limit, after_id=req.marker)
    used = {v.id: v for v in rows.views(conn)}
    return Page([Sled(r, used.get(r.id)) for r in found], req)


def view(conn: Connection, sled_id: str) -> Sled:
    return _with_usage(conn, get(conn, sled_id))


def instances_on(conn: Connection, sled_id: str, req: PageRequest) -> Page[SledInstance]:
    get(conn, sled_id)
    found = instances.on_sled(conn, sled_id, limit=req.limit, marker=req.marker)
    out = []
    for r in found:
        proj = projects.by_id(conn, r.project_id)
        out.append(SledInstance(r, proj.name if proj else ""))
    return Page(out, req)


def set_provision_policy(conn: Connection, sled_id: str, policy: ProvisionPolicy) -> PolicyChange:
    row = get(conn, sled_id)
    if row.policy == "expunged":
        raise InvalidRequest("an expunged sled cannot change its provision policy")
    rows.set_provision_policy(conn, sled_id, policy)
    return PolicyChange(old=row.provision_policy, new=policy)


async def expunge(cp: Services, sled_id: str) -> Sled:
    """The sled leaves service for good; the instances on it fail (and are restarted
    elsewhere if their policy allows). Answers the sled as it is now, nothing reserved."""
    await cp.store.tx(lambda c: get(c, sled_id))
    await failures.expunge_sled(cp, sled_id)
    return await cp.store.tx(lambda c: Sled(get(c, sled_id), None))


async def register_agent(cp: Services, agent: AgentRegistration, speaker: str) -> Sled:
    """Upsert the agent's sled by serial and learn its URL (every replica reads it from the
    store too). A new serial becomes a sled in service; a known one keeps its id and policy.
    ``speaker`` is the serial the agent's credential names: an agent registers only itself,
    so no one can point another sled at an address of their own."""
    if agent.serial != speaker:
        raise Forbidden(
            f"this sled agent's credential is for serial {speaker!r}, "
            f"not {agent.serial!r}: an agent registers only its own sled"
        )

    def upsert(conn: Connection) -> Sled:
        row = rows.upsert_agent(conn, **asdict(agent))
        return _with_usage(conn, row)

    try:
        sled = await cp.store.tx(upsert)
    except sa.exc.IntegrityError:
        # Another replica inserted the same serial at the same moment: it is known now.
        sled = await cp.store.tx(upsert)
    cp.sleds.learn(sled.id, agent.url)
    return sled


async def vmm_lost(
    cp: Services, sled_id: str, vmm_id: str, cause: str, detail: str, speaker: str
) -> None:
    """An agent's report of a VMM of its sled that died on its own. A VMM never known here,
    or long gone, needs nothing. ``speaker`` is the serial the agent's credential names: it
    reports only for its own sled, and only VMMs the store places on that sled."""

    def check(conn: Connection) -> Row | None:
        if get(conn, sled_id).serial != speaker:
            raise Forbidden(
                f"this sled agent's credential is for serial {speaker!r}, which is not "
                f"sled {sled_id}: an agent reports only for its own sled"
            )
        return instances.vmm_row(conn, vmm_id)

    row = await cp.store.tx(check)
    if row is None:
        return
    if row.sled_id != sled_id:
        raise InvalidRequest(f"vmm {vmm_id} does not run on sled {sled_id}")
    await failures.vmm_lost(cp, vmm_id, cause, detail or f"reported by the agent of sled {sled_id}")
