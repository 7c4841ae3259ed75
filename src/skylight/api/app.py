"""The ASGI application: routes, error mapping, and the control plane's lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from starlette.responses import Response

from skylight.api import deps, errors
from skylight.api.audit import AuditLog
from skylight.api.routes import (
    disks,
    events,
    groups,
    instances,
    login,
    me,
    projects,
    silos,
    sim,
    sled_agents,
    sleds,
    webhooks,
)
from skylight.api.stream_slots import StreamSlots
from skylight.config import Settings
from skylight.console import mount as mount_console
from skylight.controlplane import ControlPlane
from skylight.identity.access import FLEET, Action, authorize
from skylight.identity.throttle import LoginThrottle
from skylight.ids import new_id


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        cp = ControlPlane(settings)
        await cp.start()
        app.state.cp = cp
        try:
            yield
        finally:
            await cp.stop()

    app = FastAPI(
        title="Skylight",
        version="0.1.0",
        description="A rack control plane that never lets an instance fail in the dark.",
        lifespan=lifespan,
        # Every route authenticates its caller first (deps.ANONYMOUS lists the exceptions).
        dependencies=[Depends(deps.authenticate)],
    )
    app.state.login_throttle = LoginThrottle()
    app.state.stream_slots = StreamSlots(settings.max_streams, settings.max_streams_per_user)

    @app.middleware("http")
    async def _request_id(request: Request, call_next):  # type: ignore[no-untyped-def]
        request.state.request_id = new_id()
        response: Response = await call_next(request)
        response.headers["x-request-id"] = request.state.request_id
        return response

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        authorize(deps.caller(request), Action.read, FLEET)
        body = request.app.state.cp.metrics.render()
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    errors.install(app)
    for module in (
        login,
        me,
        silos,
        projects,
        instances,
        events,
        groups,
        disks,
        sleds,
        sim,
        sled_agents,
        webhooks,
    ):
        app.include_router(module.router)
    mount_console(app)
    app.add_middleware(errors.BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(AuditLog)
    return app
