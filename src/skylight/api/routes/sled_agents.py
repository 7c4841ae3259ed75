"""/v1/system/sled-agents: HTTP sled agents register here and report VMMs they lost.

``POST /v1/system/sled-agents`` upserts the sled by serial (a new serial becomes a sled in
service and provisionable; a known one keeps its id and policy and takes the agent's URL and
capacity) and answers the sled. The URL lives in the store, so every replica can reach it.
``POST /v1/system/sled-agents/{sled_id}/vmm-lost`` is the agent's report of a VMM that died on
its own (``instances.failures.vmm_lost``). Both need the agent's rack credential
(``api/agent_auth.py``), and an agent speaks only for its own sled.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import Field, field_validator

from skylight.api import agent_auth, deps, models, views
from skylight.controlplane import SIM_RACK_ID
from skylight.ids import parse_uuid
from skylight.lookup import require_uuid
from skylight.operations import sleds

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
async def sled_agent_register(
    request: Request,
    body: SledAgentRegistration,
    speaker: str = Depends(agent_auth.sled_serial),
) -> models.Sled:
    agent = sleds.AgentRegistration(
        **(body.model_dump() | {"rack_id": body.rack_id or SIM_RACK_ID})
    )
    return views.sled(await sleds.register_agent(deps.cp(request), agent, speaker))


@router.post("/v1/system/sled-agents/{sled_id}/vmm-lost", status_code=204, response_class=Response)
async def sled_agent_vmm_lost(
    request: Request,
    sled_id: str,
    body: VmmLost,
    speaker: str = Depends(agent_auth.sled_serial),
) -> Response:
    sid = require_uuid(sled_id, "sled_id")
    vid = require_uuid(body.vmm_id, "vmm_id")
    await sleds.vmm_lost(deps.cp(request), sid, vid, body.cause, body.detail, speaker)
    return Response(status_code=204)
