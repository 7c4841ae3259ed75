"""/v1/affinity-groups, /v1/anti-affinity-groups, and an instance's groups.

The two families behave alike, so each route is written once and registered for both: a
``_Family`` says how the API names and shows one of them (its path, its path parameter, which
also begins its operations' names, and its models). The routes, operation ids and schemas are
the Oxide API's, as if each had been written out by hand.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from skylight import groups, lookup
from skylight.api import deps, models, paging, views
from skylight.wire import JsonObject

router = APIRouter(tags=["affinity"])


@dataclass(frozen=True)
class _Family:
    kind: str  # as the domain names it: "affinity" | "anti_affinity"
    create: type[models.AffinityGroupCreate]
    update: type[models.AffinityGroupUpdate]
    group: type[models.AffinityGroup]
    group_page: type[models.ResultsPage[models.AffinityGroup]]
    member: type[models.AffinityGroupMember]
    member_page: type[models.ResultsPage[models.AffinityGroupMember]]
    group_view: Callable[[Any], models.AffinityGroup]
    member_view: Callable[[Any], models.AffinityGroupMember]

    @property
    def param(self) -> str:
        """The path parameter naming a group, and the start of operation names."""
        return f"{self.kind}_group"

    @property
    def segment(self) -> str:
        """The collection's last path segment (also of an instance's list of its groups)."""
        return f"{self.kind.replace('_', '-')}-groups"


# One row per field of ``_Family``, one column per family.
_FAMILIES = tuple(
    _Family(*fields)
    for fields in zip(
        ("affinity", "anti_affinity"),
        (models.AffinityGroupCreate, models.AntiAffinityGroupCreate),
        (models.AffinityGroupUpdate, models.AntiAffinityGroupUpdate),
        (models.AffinityGroup, models.AntiAffinityGroup),
        (models.AffinityGroupResultsPage, models.AntiAffinityGroupResultsPage),
        (models.AffinityGroupMember, models.AntiAffinityGroupMember),
        (models.AffinityGroupMemberResultsPage, models.AntiAffinityGroupMemberResultsPage),
        (views.affinity_group, views.anti_affinity_group),
        (views.affinity_group_member, views.anti_affinity_group_member),
        strict=True,
    )
)


# -- the handlers, each for either family ----------------------------------------------------


async def _instance_group_list(
    fam: _Family, request: Request, instance: str, query: paging.ByName, project: str | None = None
) -> BaseModel:
    sel = deps.required(instance, "instance")
    proj = deps.selector(project, "project")
    ask = query.ask(f"instance-{fam.kind}-groups")
    who = deps.caller(request)
    page = await deps.tx(
        request, lambda c: groups.page_of_instance(c, who, fam.kind, sel, proj, ask)
    )
    return paging.results(fam.group_page, page, fam.group_view)


async def _group_list(
    fam: _Family, request: Request, query: paging.ByName, project: str | None = None
) -> BaseModel:
    sel = deps.required(project, "project")
    ask = query.ask(f"{fam.kind}-groups")
    who = deps.caller(request)
    page = await deps.tx(request, lambda c: groups.page(c, who, fam.kind, sel, ask))
    return paging.results(fam.group_page, page, fam.group_view)


async def _group_create(
    fam: _Family, request: Request, body: models.AffinityGroupCreate, project: str | None = None
) -> models.AffinityGroup:
    sel = deps.required(project, "project")
    who = deps.caller(request)
    row = await deps.tx(
        request,
        lambda c: groups.create(
            c,
            who,
            fam.kind,
            sel,
            name=body.name,
            description=body.description,
            policy=body.policy,
            failure_domain=body.failure_domain,
        ),
    )
    return fam.group_view(row)


async def _group_view(
    fam: _Family, request: Request, group: str, project: str | None = None
) -> models.AffinityGroup:
    sel = deps.required(group, fam.param)
    proj = deps.selector(project, "project")
    who = deps.caller(request)
    return fam.group_view(
        await deps.tx(request, lambda c: lookup.group(c, who, fam.kind, sel, proj))
    )


async def _group_update(
    fam: _Family,
    request: Request,
    group: str,
    body: models.AffinityGroupUpdate,
    project: str | None = None,
) -> models.AffinityGroup:
    sel = deps.required(group, fam.param)
    proj = deps.selector(project, "project")
    who = deps.caller(request)
    row = await deps.tx(
        request,
        lambda c: groups.update(
            c, who, fam.kind, sel, proj, name=body.name, description=body.description
        ),
    )
    return fam.group_view(row)


async def _group_delete(
    fam: _Family, request: Request, group: str, project: str | None = None
) -> Response:
    sel = deps.required(group, fam.param)
    proj = deps.selector(project, "project")
    who = deps.caller(request)
    await deps.tx(request, lambda c: groups.delete(c, who, fam.kind, sel, proj))
    return Response(status_code=204)


async def _member_list(
    fam: _Family, request: Request, group: str, query: paging.ByName, project: str | None = None
) -> BaseModel:
    sel = deps.required(group, fam.param)
    proj = deps.selector(project, "project")
    ask = query.ask(f"{fam.kind}-members")
    who = deps.caller(request)
    page = await deps.tx(request, lambda c: groups.members_page(c, who, fam.kind, sel, proj, ask))
    return paging.results(fam.member_page, page, fam.member_view)


def _member(
    fam: _Family, request: Request, group: str, instance: str, project: str | None
) -> groups.Member:
    return groups.Member(
        kind=fam.kind,
        group=deps.required(group, fam.param),
        instance=deps.required(instance, "instance"),
        project=deps.selector(project, "project"),
        caller=deps.caller(request),
    )


async def _member_view(
    fam: _Family, request: Request, group: str, instance: str, project: str | None = None
) -> models.AffinityGroupMember:
    m = _member(fam, request, group, instance, project)
    return fam.member_view(await deps.tx(request, lambda c: groups.member_view(c, m)))


async def _member_add(
    fam: _Family, request: Request, group: str, instance: str, project: str | None = None
) -> models.AffinityGroupMember:
    m = _member(fam, request, group, instance, project)
    return fam.member_view(
        await deps.tx(request, lambda c: groups.member_add(c, m, m.caller.actor))
    )


async def _member_delete(
    fam: _Family, request: Request, group: str, instance: str, project: str | None = None
) -> Response:
    m = _member(fam, request, group, instance, project)
    await deps.tx(request, lambda c: groups.member_remove(c, m, m.caller.actor))
    return Response(status_code=204)


# -- registering them for both families ------------------------------------------------------


def _endpoint(
    fam: _Family,
    handler: Callable[..., Awaitable[Any]],
    returns: Any,
    body: type[BaseModel] | None = None,
) -> Callable[..., Awaitable[Any]]:
    """``handler`` for ``fam`` as FastAPI reads an endpoint: without ``fam``, its ``group``
    parameter named as the family's path names it, its body of the family's own model."""
    signature = inspect.signature(handler, eval_str=True)
    params = []
    for p in list(signature.parameters.values())[1:]:
        if p.name == "group":
            p = p.replace(name=fam.param)
        elif p.name == "body" and body is not None:
            p = p.replace(annotation=body)
        params.append(p)

    async def endpoint(**kwargs: Any) -> Any:
        if fam.param in kwargs:
            kwargs["group"] = kwargs.pop(fam.param)
        return await handler(fam, **kwargs)

    endpoint.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=params, return_annotation=returns
    )
    return endpoint


def _add(
    fam: _Family,
    method: str,
    path: str,
    name: str,
    handler: Callable[..., Awaitable[Any]],
    *,
    returns: Any,
    status_code: int | None = None,
    body: type[BaseModel] | None = None,
) -> None:
    # A 204 has no body: no response model, a plain Response (as the hand-written
    # ``response_class=Response`` routes had).
    extra: JsonObject = {"response_class": Response} if returns is Response else {}
    router.add_api_route(
        path,
        _endpoint(fam, handler, returns, body),
        methods=[method],
        name=name,
        response_model=None if returns is Response else returns,
        status_code=status_code,
        **extra,
    )


def _register() -> None:
    # In the order the document lists them: an instance's groups first, then each family.
    for fam in _FAMILIES:
        _add(
            fam,
            "GET",
            f"/v1/instances/{{instance}}/{fam.segment}",
            f"instance_{fam.param}_list",
            _instance_group_list,
            returns=fam.group_page,
        )
    for fam in _FAMILIES:
        path = f"/v1/{fam.segment}"
        one = f"{path}/{{{fam.param}}}"
        member = f"{one}/members/instance/{{instance}}"
        name = fam.param
        _add(fam, "GET", path, f"{name}_list", _group_list, returns=fam.group_page)
        _add(
            fam,
            "POST",
            path,
            f"{name}_create",
            _group_create,
            returns=fam.group,
            status_code=201,
            body=fam.create,
        )
        _add(fam, "GET", one, f"{name}_view", _group_view, returns=fam.group)
        _add(fam, "PUT", one, f"{name}_update", _group_update, returns=fam.group, body=fam.update)
        _add(fam, "DELETE", one, f"{name}_delete", _group_delete, returns=Response, status_code=204)
        _add(
            fam,
            "GET",
            f"{one}/members",
            f"{name}_member_list",
            _member_list,
            returns=fam.member_page,
        )
        _add(fam, "GET", member, f"{name}_member_instance_view", _member_view, returns=fam.member)
        _add(
            fam,
            "POST",
            member,
            f"{name}_member_instance_add",
            _member_add,
            returns=fam.member,
            status_code=201,
        )
        _add(
            fam,
            "DELETE",
            member,
            f"{name}_member_instance_delete",
            _member_delete,
            returns=Response,
            status_code=204,
        )


_register()
