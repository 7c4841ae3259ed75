"""/v1/system/sled-agents: HTTP sled agents register here and report VMMs they lost.

``POST /v1/system/sled-agents`` upserts the sled by serial (a new serial becomes a sled in
service and provisionable; a known one keeps its id and policy and takes the agent's URL and
capacity) and answers the sled. The URL lives in the store, so every replica can reach it.
``POST /v1/system/sled-agents/{sled_id}/vmm-lost`` is the agent's report of a VMM that died on
its own (``instances.failures.vmm_lost``).
"""

from __future__ import annotations

from typing import Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Request, Response
from pydantic import Field, field_validator

from skylight.api import deps, models, views
from skylight.errors import InvalidRequest, NotFound
from skylight.ids import parse_uuid
from skylight.instances import failures
from skylight.store import instances, sleds

router = APIRouter(tags=["system/sled-agents"])


class SledAgentRegistration(models.Strict):
    serial: str = Field(min_length=1, max_length=128)
    url: str = Field(min_length=1, max_length=2048)
    cpus: int = Field(ge=1, le=65535)
    memory: int = Field(ge=1, le=2**63 - 1)
    local_storage: int = Field(ge=0, le=2**63 - 1)
    cpu_family: str = Field(min_length=1, max_length=64)
    rack_id: str | None = None

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("rack_id")
    @classmethod
    def _rack_uuid(cls, value: str | None) -> str | None:
        if value is not None and parse_uuid(value) is None:
            raise ValueError("not a UUID")
        return None if value is None else value.lower()


class VmmLost(models.Strict):
    vmm_id: str
    cause: Literal["vmm_failure", "sled_failure"]
    detail: str = Field(default="", max_length=4096)


@router.post("/v1/system/sled-agents", response_model=models.Sled)
async def sled_agent_register(request: Request, body: SledAgentRegistration) -> models.Sled:
    from skylight.controlplane import SIM_RACK_ID

    cp = deps.cp(request)

    def upsert(conn: Any) -> models.Sled:
        row = sleds.upsert_agent(
            conn,
            serial=body.serial,
            url=body.url,
            cpus=body.cpus,
            memory=body.memory,
            local_storage=body.local_storage,
            cpu_family=body.cpu_family,
            rack_id=body.rack_id or SIM_RACK_ID,
        )
        used = {v.id: v for v in sleds.views(conn, only=row.id)}.get(row.id)
        return views.sled(row, used)

    try:
        sled = await cp.store.tx(upsert)
    except sa.exc.IntegrityError:
        # Another replica inserted the same serial at the same moment: it is known now.
        sled = await cp.store.tx(upsert)
    cp.sleds.learn(sled.id, body.url)
    return sled


@router.post("/v1/system/sled-agents/{sled_id}/vmm-lost", status_code=204, response_class=Response)
async def sled_agent_vmm_lost(request: Request, sled_id: str, body: VmmLost) -> Response:
    if parse_uuid(sled_id) is None:
        raise InvalidRequest(f"sled_id: not a UUID: {sled_id!r}")
    if parse_uuid(body.vmm_id) is None:
        raise InvalidRequest(f"vmm_id: not a UUID: {body.vmm_id!r}")
    sid, vid = sled_id.lower(), body.vmm_id.lower()
    cp = deps.cp(request)

    def check(conn: Any) -> Any:
        if sleds.get(conn, sid) is None:
            raise NotFound.by_id("sled", sid)
        return instances.vmm_row(conn, vid)

    row = await cp.store.tx(check)
    if row is None:
        return Response(status_code=204)  # never known here, or long gone: nothing to do
    if row.sled_id != sid:
        raise InvalidRequest(f"vmm {vid} does not run on sled {sid}")
    detail = body.detail or f"reported by the agent of sled {sid}"
    await failures.vmm_lost(cp, vid, body.cause, detail)
    return Response(status_code=204)
