"""Logging in and out, Oxide's device flow for the CLI, and ``/v1/ping``.

These are the routes that answer callers who are not logged in (``deps.ANONYMOUS``), except
``/device/confirm``, which is how a logged-in person vouches for a device.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from fastapi import APIRouter, Form, Request, Response
from pydantic import BaseModel

from skylight.api import deps
from skylight.api import identity_models as m
from skylight.api.models import Name
from skylight.operations import sessions

router = APIRouter()


class Ping(BaseModel):
    status: Literal["ok"] = "ok"


@router.get("/v1/ping", response_model=Ping, tags=["system/status"])
async def ping() -> Ping:
    return Ping()


@router.post("/v1/login/{silo_name}/local", status_code=204, tags=["login"])
async def login_local(
    request: Request, silo_name: Name, body: m.UsernamePasswordCredentials
) -> Response:
    """Authenticate with a username and password; answers the ``session`` cookie."""
    token, _ = await deps.login(request, silo_name, body.username, body.password)
    response = Response(status_code=204)
    response.set_cookie(
        deps.SESSION_COOKIE,
        token,
        max_age=math.ceil(deps.cp(request).settings.session_absolute),
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/v1/logout", status_code=204, tags=["console-auth"])
async def logout(request: Request) -> Response:
    """End the session of the ``session`` cookie, if any."""
    cred = deps.credential(request)
    await deps.tx(request, lambda c: sessions.logout(c, cred))
    response = Response(status_code=204)
    response.delete_cookie(deps.SESSION_COOKIE, path="/")
    return response


class DeviceAuthResponse(BaseModel):
    device_code: str
    user_code: str
    verification_uri: str
    expires_in: int


@router.post("/device/auth", response_model=DeviceAuthResponse, tags=["console-auth"])
async def device_auth_request(
    request: Request,
    client_id: Annotated[str, Form(max_length=64)],
    ttl_seconds: Annotated[int | None, Form(ge=1, le=2**32 - 1)] = None,
) -> DeviceAuthResponse:
    """Start a device authorization: the user confirms ``user_code`` in the console."""
    auth = await deps.tx(request, lambda c: sessions.device_auth(c, client_id, ttl_seconds))
    return DeviceAuthResponse(
        device_code=auth.device_code,
        user_code=auth.user_code,
        verification_uri=f"{str(request.base_url).rstrip('/')}/console/#/device",
        expires_in=auth.expires_in,
    )


@router.post("/device/confirm", status_code=204, tags=["console-auth"])
async def device_auth_confirm(request: Request, body: m.DeviceAuthVerify) -> Response:
    """The logged-in user vouches for the device showing ``user_code``."""
    who = deps.caller(request)
    await deps.tx(request, lambda c: sessions.device_confirm(c, who, body.user_code))
    return Response(status_code=204)


class DeviceAccessTokenGrant(BaseModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int | None = None


@router.post("/device/token", response_model=DeviceAccessTokenGrant, tags=["console-auth"])
async def device_access_token(
    request: Request,
    grant_type: Annotated[str, Form(max_length=128)],
    device_code: Annotated[str, Form(max_length=128)],
    client_id: Annotated[str, Form(max_length=64)],
) -> DeviceAccessTokenGrant:
    """Poll until the user confirmed; then the access token, once."""
    limits = deps.lifetimes(request)
    grant = await deps.tx(
        request,
        lambda c: sessions.device_token(c, grant_type, client_id, device_code, limits),
    )
    return DeviceAccessTokenGrant(access_token=grant.token, expires_in=grant.expires_in)
