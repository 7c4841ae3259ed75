"""A silo's quota, checked when an instance is about to take sled resources.

What counts is what the silo's instances hold on sleds (their reservations: starting and
running instances, as Oxide's utilization counts running ones). The silo row is locked for
the check, so two starts in one silo cannot both squeeze under the quota.
"""

from __future__ import annotations

from sqlalchemy.engine import Connection

from skylight.events import reasons
from skylight.events.reasons import Reason
from skylight.store import identity

GiB = 1024**3


def refusal(
    conn: Connection, instance_id: str, *, ncpus: int, memory: int, lock: bool = True
) -> Reason | None:
    """The ``quota_exceeded`` reason if the instance's start would take its silo past a
    quota, else None (``lock=False``: a dry run, deciding nothing)."""
    silo = identity.silo_of_instance(conn, instance_id, lock=lock)
    if silo is None:
        return None
    cpus_used, memory_used = identity.provisioned(conn, silo.id).get(silo.id, (0, 0))
    over = []
    if cpus_used + ncpus > silo.quota_cpus:
        over.append(f"{silo.quota_cpus} vCPUs ({cpus_used} in use, {ncpus} asked)")
    if memory_used + memory > silo.quota_memory:
        over.append(
            f"{silo.quota_memory / GiB:g} GiB of memory "
            f"({memory_used / GiB:g} GiB in use, {memory / GiB:g} GiB asked)"
        )
    if not over:
        return None
    return reasons.make(
        "quota_exceeded",
        f"Starting it would take silo {silo.name} past its quota of " + " and ".join(over) + ".",
        diagnosis={
            "quota": {"cpus": silo.quota_cpus, "memory": silo.quota_memory},
            "provisioned": {"cpus": cpus_used, "memory": memory_used},
            "requested": {"cpus": ncpus, "memory": memory},
        },
    )
