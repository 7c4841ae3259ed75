"""Placement dry run: where would this instance go now, or why can it not go anywhere."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy.engine import Connection

from skylight.instances import quota
from skylight.placement import Placement, place
from skylight.services import Services
from skylight.store import Row, placement_inputs, sleds
from skylight.wire import JsonObject


def _explain(conn: Connection, cp: Services, row: Row) -> JsonObject:
    req = placement_inputs.request_for(
        conn, row.id, ncpus=row.ncpus, memory=row.memory, cpu_platform=row.cpu_platform
    )
    views = sleds.views(conn)
    if row.active_vmm_id is not None:
        # A placed instance is asked where it would go if it started now: its own
        # reservation does not count against it.
        own = sleds.reservation(conn, row.active_vmm_id)
        if own is not None:
            views = [
                v
                if v.id != own.sled_id
                else replace(
                    v,
                    reserved_cpus=v.reserved_cpus - own.hardware_threads,
                    reserved_memory=v.reserved_memory - own.memory,
                )
                for v in views
            ]
    over_quota = None
    if row.active_vmm_id is None:  # a start would first have to fit the silo's quota
        over_quota = quota.refusal(conn, row.id, ncpus=row.ncpus, memory=row.memory, lock=False)
    result = place(req, views, cp.rng)
    out: JsonObject = {
        "instance_id": row.id,
        "current_sled_id": row.sled_id,
        "request": {
            "ncpus": req.ncpus,
            "memory": req.memory,
            "cpu_platform": req.cpu_platform,
            "local_storage": req.local_storage,
            "pinned_by_local_disks": req.pinned_sled is not None,
            "affinity_groups": [{"name": g.name, "policy": g.policy} for g in req.affinity],
            "anti_affinity_groups": [
                {"name": g.name, "policy": g.policy} for g in req.anti_affinity
            ],
        },
    }
    if over_quota is not None:
        out.update(fits=False, sled_id=None, broken_preferences=[], reason=over_quota)
    elif isinstance(result, Placement):
        out.update(
            fits=True,
            sled_id=result.sled_id,
            broken_preferences=list(result.broken_preferences),
            reason=None,
        )
    else:
        out.update(fits=False, sled_id=None, broken_preferences=[], reason=result.reason)
    return out


async def explain(cp: Services, row: Row) -> JsonObject:
    return await cp.store.tx(lambda conn: _explain(conn, cp, row))
