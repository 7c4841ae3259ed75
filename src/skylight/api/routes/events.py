"""Events beyond one instance's list: a project's, the fleet's, and the live streams."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Header, Request
from fastapi.responses import StreamingResponse

from skylight import lookup
from skylight.api import deps, models, paging, views
from skylight.errors import InvalidRequest
from skylight.operations.event_stream import sse
from skylight.store import events

router = APIRouter(tags=["events"])

Severity = Literal["info", "warning", "error"]


async def _page(
    request: Request,
    flt: events.EventFilter,
    scope: str,
    limit: int | None,
    page_token: str | None,
    *,
    operator: bool,
) -> models.InstanceEventResultsPage:
    page = paging.decode(limit, page_token, None, scope, "seq_descending")
    rows = await deps.cp(request).store.tx(
        lambda c: events.page(c, flt, limit=page.limit, before_seq=page.marker)
    )
    return models.InstanceEventResultsPage(
        items=[views.event(r, operator=operator) for r in rows],
        next_page=paging.next_token(page, rows, "seq", scope),
    )


@router.get("/v1/events", response_model=models.InstanceEventResultsPage)
async def project_event_list(
    request: Request,
    project: str | None = None,
    limit: paging.Limit = None,
    page_token: str | None = None,
    severity: Severity | None = None,
    kind: models.QueryText | None = None,
    operation: models.QueryText | None = None,
    since: models.Timestamp | None = None,
) -> models.InstanceEventResultsPage:
    """Skylight: a project's instance events, newest first."""
    sel = deps.required(project, "project")
    proj = await deps.cp(request).store.tx(lambda c: lookup.project(c, sel))
    flt = events.EventFilter(
        project_id=proj.id, severity=severity, kind=kind, operation_id=operation, since=since
    )
    return await _page(
        request,
        flt,
        f"project-events:{proj.id}",
        limit,
        page_token,
        operator=deps.is_operator(request),
    )


@router.get("/v1/system/events", response_model=models.InstanceEventResultsPage)
async def system_event_list(
    request: Request,
    limit: paging.Limit = None,
    page_token: str | None = None,
    severity: Severity | None = None,
    kind: models.QueryText | None = None,
    operation: models.QueryText | None = None,
    since: models.Timestamp | None = None,
) -> models.InstanceEventResultsPage:
    """Skylight: every instance event of the fleet, newest first (operators)."""
    flt = events.EventFilter(severity=severity, kind=kind, operation_id=operation, since=since)
    return await _page(request, flt, "fleet-events", limit, page_token, operator=True)


def _cursor(last_event_id: str | None) -> int | None:
    if last_event_id is None or last_event_id == "":
        return None
    if not last_event_id.isdigit() or len(last_event_id) > 18:
        raise InvalidRequest("Last-Event-ID must be the id of an event this stream sent")
    return int(last_event_id)


async def _stream(
    request: Request, flt: events.EventFilter, cursor: int | None
) -> StreamingResponse:
    cp = deps.cp(request)
    operator = deps.is_operator(request)
    newest = await cp.store.tx(events.last_seq)
    if cursor is None:
        # From now: fixed before the response starts, so nothing committed after the
        # client sees the stream open is missed.
        cursor = newest
    elif cursor > newest:
        # No stream ever sent this id (another store, or a made-up one): resuming after it
        # would wait, silent, for events that may never come.
        raise InvalidRequest(
            f"Last-Event-ID {cursor} is beyond the newest event ({newest}); "
            "reconnect without it to stream from now"
        )

    def render(row: Any) -> dict[str, Any]:
        return views.event(row, operator=operator).model_dump(mode="json")

    body = sse(
        cp.store,
        cp.feed,
        flt,
        cursor=cursor,
        render=render,
        poll_interval=cp.settings.stream_poll_interval,
        heartbeat=cp.settings.stream_heartbeat,
    )
    return StreamingResponse(
        body,
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )


# Documented as what it is: a text/event-stream (not the default JSON body).
SSE_RESPONSE: dict[int | str, dict[str, Any]] = {
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
    row = await deps.cp(request).store.tx(lambda c: lookup.instance(c, sel, proj, deleted=True))
    return await _stream(request, events.EventFilter(instance_id=row.id), cursor)


@router.get("/v1/events/stream", response_class=StreamingResponse, responses=SSE_RESPONSE)
async def project_event_stream(
    request: Request,
    project: str | None = None,
    last_event_id: str | None = Header(default=None),
) -> StreamingResponse:
    """Skylight: a project's events as Server-Sent Events, from ``Last-Event-ID`` on."""
    sel = deps.required(project, "project")
    cursor = _cursor(last_event_id)
    proj = await deps.cp(request).store.tx(lambda c: lookup.project(c, sel))
    return await _stream(request, events.EventFilter(project_id=proj.id), cursor)
