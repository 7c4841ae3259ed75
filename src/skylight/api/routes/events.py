"""Events beyond one instance's list: a project's, the fleet's, and the live streams."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from fastapi import APIRouter, Header, Request
from fastapi.responses import StreamingResponse

from skylight.api import deps, models, paging, views
from skylight.api.stream_slots import StreamSlots
from skylight.errors import InvalidRequest
from skylight.identity.access import FLEET, Action, authorize
from skylight.operations import event_history as history
from skylight.wire import JsonObject

router = APIRouter(tags=["events"])


def _results(page: paging.Page[views.Row], *, operator: bool) -> models.InstanceEventResultsPage:
    return paging.results(
        models.InstanceEventResultsPage, page, lambda r: views.event(r, operator=operator)
    )


@router.get("/v1/events", response_model=models.InstanceEventResultsPage)
async def project_event_list(
    request: Request, query: paging.Events, project: str | None = None
) -> models.InstanceEventResultsPage:
    """Skylight: a project's instance events, newest first."""
    sel = deps.required(project, "project")
    flt, ask = query.filter(), query.ask("project-events")
    who = deps.caller(request)
    page = await deps.tx(request, lambda c: history.project_page(c, who, sel, flt, ask))
    return _results(page, operator=deps.is_operator(request))


@router.get("/v1/system/events", response_model=models.InstanceEventResultsPage)
async def system_event_list(
    request: Request, query: paging.Events
) -> models.InstanceEventResultsPage:
    """Skylight: every instance event of the fleet, newest first (fleet viewers)."""
    authorize(deps.caller(request), Action.read, FLEET)
    flt, req = query.filter(), query.ask("fleet-events")()
    return _results(await deps.tx(request, lambda c: history.page(c, flt, req)), operator=True)


def _cursor(last_event_id: str | None) -> int | None:
    if last_event_id is None or last_event_id == "":
        return None
    if not last_event_id.isdigit() or len(last_event_id) > 18:
        raise InvalidRequest("Last-Event-ID must be the id of an event this stream sent")
    return int(last_event_id)


def _streaming(request: Request, body: AsyncIterator[str]) -> StreamingResponse:
    slots: StreamSlots = request.app.state.stream_slots
    return StreamingResponse(
        slots.hold(deps.caller(request).user_id, body),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )


def _render(request: Request) -> Callable[[views.Row], JsonObject]:
    operator = deps.is_operator(request)
    return lambda row: views.event(row, operator=operator).model_dump(mode="json")


# Documented as what it is: a text/event-stream (not the default JSON body).
SSE_RESPONSE: dict[int | str, JsonObject] = {
    200: {
        "description": "Server-Sent Events: one `event: instance_event` per committed event",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}


@router.get(
    "/v1/instances/{instance}/events/stream",
    response_class=StreamingResponse,
    responses=SSE_RESPONSE,
)
async def instance_event_stream(
    request: Request,
    instance: str,
    project: str | None = None,
    last_event_id: str | None = Header(default=None),
) -> StreamingResponse:
    """Skylight: the instance's events as Server-Sent Events, from ``Last-Event-ID`` on."""
    sel = deps.required(instance, "instance")
    proj = deps.selector(project, "project")
    cursor = _cursor(last_event_id)
    who = deps.caller(request)
    body = await history.stream(
        deps.cp(request),
        lambda c: history.instance_filter(c, who, sel, proj),
        cursor,
        _render(request),
    )
    return _streaming(request, body)


@router.get("/v1/events/stream", response_class=StreamingResponse, responses=SSE_RESPONSE)
async def project_event_stream(
    request: Request, project: str | None = None, last_event_id: str | None = Header(default=None)
) -> StreamingResponse:
    """Skylight: a project's events as Server-Sent Events, from ``Last-Event-ID`` on."""
    sel = deps.required(project, "project")
    cursor = _cursor(last_event_id)
    who = deps.caller(request)
    body = await history.stream(
        deps.cp(request), lambda c: history.project_filter(c, who, sel), cursor, _render(request)
    )
    return _streaming(request, body)
