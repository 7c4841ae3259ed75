"""Silos, their quotas and local users, and the policies of the fleet, a silo and a project.

What the caller may see and do is decided by ``operations.silos`` (through
``identity.access``); these handlers parse, call one operation and render.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request, Response

from skylight import lookup
from skylight.api import deps, paging
from skylight.api import identity_models as m
from skylight.api.models import Timestamp
from skylight.errors import NotFound
from skylight.identity.access import FLEET, Action, Project, Resource, Silo, authorize
from skylight.lookup import require_uuid
from skylight.operations import audit_log, silos
from skylight.operations.silos import Assignment, NewSilo, Quotas

router = APIRouter()


# -- silos -----------------------------------------------------------------------------------


@router.get("/v1/system/silos", response_model=m.SiloResultsPage, tags=["system/silos"])
async def silo_list(request: Request, query: paging.ByName) -> m.SiloResultsPage:
    who, req = deps.caller(request), query.ask("silos")()
    page = await deps.tx(request, lambda c: silos.page(c, who, req))
    return paging.results(m.SiloResultsPage, page, m.Silo.of)


@router.post("/v1/system/silos", status_code=201, response_model=m.Silo, tags=["system/silos"])
async def silo_create(request: Request, body: m.SiloCreate) -> m.Silo:
    who = deps.caller(request)
    q = body.quotas
    new = NewSilo(
        body.name, body.description, body.discoverable, Quotas(q.cpus, q.memory, q.storage)
    )
    return m.Silo.of(await deps.tx(request, lambda c: silos.create(c, who, new)))


@router.get("/v1/system/silos/{silo}", response_model=m.Silo, tags=["system/silos"])
async def silo_view(request: Request, silo: str) -> m.Silo:
    who, sel = deps.caller(request), deps.required(silo, "silo")
    return m.Silo.of(await deps.tx(request, lambda c: silos.silo(c, who, sel)))


@router.delete(
    "/v1/system/silos/{silo}", status_code=204, response_class=Response, tags=["system/silos"]
)
async def silo_delete(request: Request, silo: str) -> Response:
    who, sel = deps.caller(request), deps.required(silo, "silo")
    await deps.tx(request, lambda c: silos.delete(c, who, sel))
    return Response(status_code=204)


@router.get("/v1/system/silos/{silo}/quotas", response_model=m.SiloQuotas, tags=["system/silos"])
async def silo_quotas_view(request: Request, silo: str) -> m.SiloQuotas:
    who, sel = deps.caller(request), deps.required(silo, "silo")
    return m.SiloQuotas.of(await deps.tx(request, lambda c: silos.quotas(c, who, sel)))


@router.put("/v1/system/silos/{silo}/quotas", response_model=m.SiloQuotas, tags=["system/silos"])
async def silo_quotas_update(request: Request, silo: str, body: m.SiloQuotasUpdate) -> m.SiloQuotas:
    who, sel = deps.caller(request), deps.required(silo, "silo")
    row = await deps.tx(
        request,
        lambda c: silos.set_quotas(
            c, who, sel, cpus=body.cpus, memory=body.memory, storage=body.storage
        ),
    )
    return m.SiloQuotas.of(row)


@router.get("/v1/system/silo-quotas", response_model=m.SiloQuotasResultsPage, tags=["system/silos"])
async def system_quotas_list(request: Request, query: paging.ById) -> m.SiloQuotasResultsPage:
    who, req = deps.caller(request), query.ask("silo-quotas")()
    page = await deps.tx(request, lambda c: silos.all_quotas(c, who, req))
    return paging.results(m.SiloQuotasResultsPage, page, m.SiloQuotas.of)


# -- utilization -------------------------------------------------------------------------------


def _counts(cpus: int, memory: int, storage: int) -> m.VirtualResourceCounts:
    return m.VirtualResourceCounts(cpus=cpus, memory=memory, storage=storage)


def _silo_utilization(u: silos.Utilization) -> m.SiloUtilization:
    s, p = u.row, u.provisioned
    return m.SiloUtilization(
        silo_id=s.id,
        silo_name=s.name,
        allocated=_counts(s.quota_cpus, s.quota_memory, s.quota_storage),
        provisioned=_counts(p.cpus, p.memory, p.storage),
    )


@router.get("/v1/utilization", response_model=m.Utilization, tags=["silos"])
async def utilization_view(request: Request) -> m.Utilization:
    who = deps.caller(request)
    u = await deps.tx(request, lambda c: silos.own_utilization(c, who))
    s, p = u.row, u.provisioned
    return m.Utilization(
        capacity=_counts(s.quota_cpus, s.quota_memory, s.quota_storage),
        provisioned=_counts(p.cpus, p.memory, p.storage),
    )


@router.get(
    "/v1/system/utilization/silos",
    response_model=m.SiloUtilizationResultsPage,
    tags=["system/silos"],
)
async def silo_utilization_list(
    request: Request, query: paging.ByName
) -> m.SiloUtilizationResultsPage:
    who, req = deps.caller(request), query.ask("silo-utilization")()
    page = await deps.tx(request, lambda c: silos.utilization_page(c, who, req))
    return paging.results(m.SiloUtilizationResultsPage, page, _silo_utilization)


@router.get(
    "/v1/system/utilization/silos/{silo}", response_model=m.SiloUtilization, tags=["system/silos"]
)
async def silo_utilization_view(request: Request, silo: str) -> m.SiloUtilization:
    who, sel = deps.caller(request), deps.required(silo, "silo")
    return _silo_utilization(await deps.tx(request, lambda c: silos.utilization(c, who, sel)))


# -- users -----------------------------------------------------------------------------------


@router.post(
    "/v1/system/identity-providers/local/users",
    status_code=201,
    response_model=m.User,
    tags=["system/silos"],
)
async def local_idp_user_create(
    request: Request, body: m.UserCreate, silo: str | None = None
) -> m.User:
    who, sel = deps.caller(request), deps.required(silo, "silo")
    password = m.password_of(body.password)
    row = await deps.tx(
        request, lambda c: silos.create_user(c, who, sel, body.external_id, password)
    )
    return m.User.of(row)


@router.delete(
    "/v1/system/identity-providers/local/users/{user_id}",
    status_code=204,
    response_class=Response,
    tags=["system/silos"],
)
async def local_idp_user_delete(
    request: Request, user_id: str, silo: str | None = None
) -> Response:
    who, sel = deps.caller(request), deps.required(silo, "silo")
    uid = require_uuid(user_id, "user_id")
    await deps.tx(request, lambda c: silos.delete_user(c, who, sel, uid))
    return Response(status_code=204)


@router.post(
    "/v1/system/identity-providers/local/users/{user_id}/set-password",
    status_code=204,
    response_class=Response,
    tags=["system/silos"],
)
async def local_idp_user_set_password(
    request: Request, user_id: str, body: m.UserPassword, silo: str | None = None
) -> Response:
    who, sel = deps.caller(request), deps.required(silo, "silo")
    uid = require_uuid(user_id, "user_id")
    password = m.password_of(body)
    await deps.tx(request, lambda c: silos.set_password(c, who, sel, uid, password))
    return Response(status_code=204)


@router.get("/v1/users", response_model=m.UserResultsPage, tags=["silos"])
async def user_list(
    request: Request, query: paging.ById, group: str | None = None
) -> m.UserResultsPage:
    """The users of the caller's silo (of ``group``: groups are not supported yet, so none
    is found)."""
    if group is not None:
        raise NotFound.by_id("group", require_uuid(group, "group"))
    who, req = deps.caller(request), query.ask("users")()
    page = await deps.tx(request, lambda c: silos.users(c, who, None, req))
    return paging.results(m.UserResultsPage, page, m.User.of)


@router.get("/v1/users/{user_id}", response_model=m.User, tags=["silos"])
async def user_view(request: Request, user_id: str) -> m.User:
    who, uid = deps.caller(request), require_uuid(user_id, "user_id")
    return m.User.of(await deps.tx(request, lambda c: silos.user(c, who, uid, fleet=False)))


@router.get("/v1/system/users", response_model=m.UserResultsPage, tags=["system/silos"])
async def silo_user_list(
    request: Request, query: paging.ById, silo: str | None = None
) -> m.UserResultsPage:
    who, sel = deps.caller(request), deps.required(silo, "silo")
    req = query.ask(f"system-users:{sel}")()
    page = await deps.tx(request, lambda c: silos.users(c, who, sel, req))
    return paging.results(m.UserResultsPage, page, m.User.of)


@router.get("/v1/system/users/{user_id}", response_model=m.User, tags=["system/silos"])
async def silo_user_view(request: Request, user_id: str, silo: str | None = None) -> m.User:
    who, uid = deps.caller(request), require_uuid(user_id, "user_id")
    deps.required(silo, "silo")
    return m.User.of(await deps.tx(request, lambda c: silos.user(c, who, uid, fleet=True)))


# -- policies --------------------------------------------------------------------------------


def _shown(assignments: list[Assignment]) -> dict[str, list[dict[str, str]]]:
    return {"role_assignments": [vars(a) for a in assignments]}


def _asked(body: m.FleetRolePolicy | m.SiloRolePolicy | m.ProjectRolePolicy) -> list[Assignment]:
    return [Assignment(a.identity_id, a.identity_type, a.role_name) for a in body.role_assignments]


async def _view(request: Request, resource: Resource) -> dict[str, list[dict[str, str]]]:
    who = deps.caller(request)
    return _shown(await deps.tx(request, lambda c: silos.policy(c, who, resource)))


async def _update(
    request: Request,
    resource: Resource,
    body: m.FleetRolePolicy | m.SiloRolePolicy | m.ProjectRolePolicy,
) -> dict[str, list[dict[str, str]]]:
    who, asked = deps.caller(request), _asked(body)
    return _shown(await deps.tx(request, lambda c: silos.set_policy(c, who, resource, asked)))


async def _silo(request: Request, silo: str) -> Silo:
    who, sel = deps.caller(request), deps.required(silo, "silo")
    return Silo((await deps.tx(request, lambda c: silos.silo(c, who, sel))).id)


async def _project(request: Request, project: str) -> Project:
    who, sel = deps.caller(request), deps.required(project, "project")
    row = await deps.tx(request, lambda c: lookup.project(c, who, sel))
    return Project(row.id, row.silo_id)


@router.get("/v1/system/policy", response_model=m.FleetRolePolicy, tags=["policy"])
async def system_policy_view(request: Request) -> dict[str, list[dict[str, str]]]:
    return await _view(request, FLEET)


@router.put("/v1/system/policy", response_model=m.FleetRolePolicy, tags=["policy"])
async def system_policy_update(
    request: Request, body: m.FleetRolePolicy
) -> dict[str, list[dict[str, str]]]:
    return await _update(request, FLEET, body)


@router.get("/v1/policy", response_model=m.SiloRolePolicy, tags=["silos"])
async def policy_view(request: Request) -> dict[str, list[dict[str, str]]]:
    return await _view(request, Silo(deps.caller(request).silo_id))


@router.put("/v1/policy", response_model=m.SiloRolePolicy, tags=["silos"])
async def policy_update(
    request: Request, body: m.SiloRolePolicy
) -> dict[str, list[dict[str, str]]]:
    return await _update(request, Silo(deps.caller(request).silo_id), body)


@router.get(
    "/v1/system/silos/{silo}/policy", response_model=m.SiloRolePolicy, tags=["system/silos"]
)
async def silo_policy_view(request: Request, silo: str) -> dict[str, list[dict[str, str]]]:
    return await _view(request, await _silo(request, silo))


@router.put(
    "/v1/system/silos/{silo}/policy", response_model=m.SiloRolePolicy, tags=["system/silos"]
)
async def silo_policy_update(
    request: Request, silo: str, body: m.SiloRolePolicy
) -> dict[str, list[dict[str, str]]]:
    return await _update(request, await _silo(request, silo), body)


@router.get("/v1/projects/{project}/policy", response_model=m.ProjectRolePolicy, tags=["projects"])
async def project_policy_view(request: Request, project: str) -> dict[str, list[dict[str, str]]]:
    return await _view(request, await _project(request, project))


@router.put("/v1/projects/{project}/policy", response_model=m.ProjectRolePolicy, tags=["projects"])
async def project_policy_update(
    request: Request, project: str, body: m.ProjectRolePolicy
) -> dict[str, list[dict[str, str]]]:
    return await _update(request, await _project(request, project), body)


# -- groups (not supported yet: a local-only silo has none) ----------------------------------


@router.get("/v1/groups", response_model=m.GroupResultsPage, tags=["silos"])
async def group_list(request: Request, query: paging.ById) -> m.GroupResultsPage:
    query.ask("groups")()
    authorize(deps.caller(request), Action.read, Silo(deps.caller(request).silo_id))
    return m.GroupResultsPage(items=[])


@router.get("/v1/groups/{group_id}", response_model=m.Group, tags=["silos"])
async def group_view(request: Request, group_id: str) -> m.Group:
    raise NotFound.by_id("group", require_uuid(group_id, "group_id"))


# -- the audit log ---------------------------------------------------------------------------


@router.get(
    "/v1/system/audit-log", response_model=m.AuditLogEntryResultsPage, tags=["system/audit-log"]
)
async def audit_log_list(
    request: Request,
    start_time: Timestamp,
    end_time: Timestamp | None = None,
    limit: paging.Limit = None,
    page_token: str | None = None,
    sort_by: Literal["time_and_id_ascending", "time_and_id_descending"] | None = None,
) -> m.AuditLogEntryResultsPage:
    """Every mutating request and login attempt completed in [start_time, end_time)."""
    who = deps.caller(request)
    ask = paging.Ask(limit, page_token, sort_by, "audit-log", sort_by or "time_and_id_ascending")
    req = ask(start_time.isoformat())
    page = await deps.tx(request, lambda c: audit_log.page(c, who, start_time, end_time, req))
    return paging.results(m.AuditLogEntryResultsPage, page, lambda e: m.AuditLogEntry.of(e.row))
