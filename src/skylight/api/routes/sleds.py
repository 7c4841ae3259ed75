"""/v1/system/hardware/sleds"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from skylight.api import deps, models, paging, views
from skylight.errors import InvalidRequest, NotFound
from skylight.ids import parse_uuid
from skylight.instances import failures
from skylight.store import instances as instance_rows
from skylight.store import projects, sleds

router = APIRouter(tags=["system/hardware"])


def _sled_id(value: str) -> str:
    if parse_uuid(value) is None:
        raise InvalidRequest(f"sled_id: not a UUID: {value!r}")
    return value.lower()


def _get(conn: Any, sled_id: str) -> Any:
    row = sleds.get(conn, sled_id)
    if row is None:
        raise NotFound.by_id("sled", sled_id)
    return row


@router.get("/v1/system/hardware/sleds", response_model=models.SledResultsPage)
async def sled_list(
    request: Request,
    limit: paging.Limit = None,
    page_token: str | None = None,
    sort_by: models.IdSortMode | None = None,
) -> models.SledResultsPage:
    page = paging.decode(limit, page_token, sort_by, "sleds", "id_ascending")

    def read(conn: Any) -> tuple[list[Any], dict[str, Any]]:
        rows = sleds.page(conn, limit=page.limit, after_id=page.marker)
        return rows, {v.id: v for v in sleds.views(conn)}

    rows, used = await deps.cp(request).store.tx(read)
    return models.SledResultsPage(
        items=[views.sled(r, used.get(r.id)) for r in rows],
        next_page=paging.next_token(page, rows, "id", "sleds"),
    )


@router.get("/v1/system/hardware/sleds/{sled_id}", response_model=models.Sled)
async def sled_view(request: Request, sled_id: str) -> models.Sled:
    sid = _sled_id(sled_id)

    def read(conn: Any) -> models.Sled:
        row = _get(conn, sid)
        used = {v.id: v for v in sleds.views(conn)}.get(sid)
        return views.sled(row, used)

    return await deps.cp(request).store.tx(read)


@router.get(
    "/v1/system/hardware/sleds/{sled_id}/instances", response_model=models.SledInstanceResultsPage
)
async def sled_instance_list(
    request: Request,
    sled_id: str,
    limit: paging.Limit = None,
    page_token: str | None = None,
    sort_by: models.IdSortMode | None = None,
) -> models.SledInstanceResultsPage:
    sid = _sled_id(sled_id)
    scope = f"sled-instances:{sid}"
    page = paging.decode(limit, page_token, sort_by, scope, "id_ascending")

    def read(conn: Any) -> tuple[list[Any], list[models.SledInstance]]:
        _get(conn, sid)
        rows = instance_rows.on_sled(conn, sid, limit=page.limit, marker=page.marker)
        out = []
        for r in rows:
            proj = projects.by_id(conn, r.project_id)
            out.append(views.sled_instance(r, proj.name if proj else ""))
        return rows, out

    rows, items = await deps.cp(request).store.tx(read)
    return models.SledInstanceResultsPage(
        items=items, next_page=paging.next_token(page, rows, "id", scope)
    )


@router.put(
    "/v1/system/hardware/sleds/{sled_id}/provision-policy",
    response_model=models.SledProvisionPolicyResponse,
)
async def sled_set_provision_policy(
    request: Request, sled_id: str, body: models.SledProvisionPolicyParams
) -> models.SledProvisionPolicyResponse:
    sid = _sled_id(sled_id)

    def write(conn: Any) -> models.SledProvisionPolicyResponse:
        row = _get(conn, sid)
        if row.policy == "expunged":
            raise InvalidRequest("an expunged sled cannot change its provision policy")
        sleds.set_provision_policy(conn, sid, body.state)
        return models.SledProvisionPolicyResponse(
            old_state=row.provision_policy, new_state=body.state
        )

    return await deps.cp(request).store.tx(write)


@router.post("/v1/system/hardware/sleds/{sled_id}/expunge", response_model=models.Sled)
async def sled_expunge(request: Request, sled_id: str) -> models.Sled:
    """Skylight: the sled leaves service for good; the instances on it fail (and are
    restarted elsewhere if their policy allows)."""
    sid = _sled_id(sled_id)

    cp = deps.cp(request)
    await cp.store.tx(lambda c: _get(c, sid))
    await failures.expunge_sled(cp, sid)
    return await cp.store.tx(lambda c: views.sled(_get(c, sid), None))
