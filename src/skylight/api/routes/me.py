"""/v1/me: who the caller is, its groups and its access tokens."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from skylight.api import deps, paging
from skylight.api import identity_models as m
from skylight.clock import as_utc
from skylight.identity.access import Role
from skylight.lookup import require_uuid
from skylight.operations import sessions

router = APIRouter()


@router.get("/v1/me", response_model=m.CurrentUser, tags=["current-user"])
async def current_user_view(request: Request) -> m.CurrentUser:
    who = deps.caller(request)
    user = await deps.tx(request, lambda c: sessions.me(c, who))
    return m.CurrentUser(
        id=who.user_id,
        display_name=who.display_name,
        silo_id=who.silo_id,
        silo_name=who.silo_name,
        fleet_viewer=who.fleet_role is not None,
        silo_admin=who.silo_role == Role.admin,
        time_created=as_utc(user.time_created),
        time_modified=as_utc(user.time_modified),
    )


@router.get("/v1/me/groups", response_model=m.GroupResultsPage, tags=["current-user"])
async def current_user_groups(request: Request, query: paging.ById) -> m.GroupResultsPage:
    """Groups are not supported yet: a local user belongs to none."""
    query.ask("groups")()
    return m.GroupResultsPage(items=[])


@router.get("/v1/me/access-tokens", response_model=m.DeviceAccessTokenResultsPage, tags=["tokens"])
async def current_user_access_token_list(
    request: Request, query: paging.ById
) -> m.DeviceAccessTokenResultsPage:
    who = deps.caller(request)
    req = query.ask("access-tokens")()
    page = await deps.tx(request, lambda c: sessions.tokens(c, who, req))
    return paging.results(m.DeviceAccessTokenResultsPage, page, m.DeviceAccessToken.of)


@router.delete(
    "/v1/me/access-tokens/{token_id}", status_code=204, response_class=Response, tags=["tokens"]
)
async def current_user_access_token_delete(request: Request, token_id: str) -> Response:
    """Revoke the token: the next request that carries it, on any replica, is refused."""
    who = deps.caller(request)
    tid = require_uuid(token_id, "token_id")
    await deps.tx(request, lambda c: sessions.revoke_token(c, who, tid))
    return Response(status_code=204)
