"""Reading the event log beyond one instance's list: a project's events and the fleet's,
page by page, and the live streams of an instance's or a project's events."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import replace

from sqlalchemy.engine import Connection

from skylight import lookup
from skylight.errors import InvalidRequest
from skylight.identity.access import Caller
from skylight.operations.event_stream import sse
from skylight.services import Services
from skylight.store import Row, events
from skylight.store.events import EventFilter
from skylight.store.paging import Page, PageOf, PageRequest
from skylight.wire import JsonObject

__all__ = [
    "EventFilter",
    "instance_filter",
    "instance_page",
    "page",
    "project_filter",
    "project_page",
    "stream",
]


def page(conn: Connection, flt: EventFilter, req: PageRequest) -> Page[Row]:
    """Newest first."""
    return Page(events.page(conn, flt, limit=req.limit, before_seq=req.marker), req)


def project_page(
    conn: Connection, caller: Caller, project_selector: str, flt: EventFilter, page_of: PageOf
) -> Page[Row]:
    """The events of the project ``project_selector`` that ``flt`` lets through."""
    proj = lookup.project(conn, caller, project_selector)
    return page(conn, replace(flt, project_id=proj.id), page_of(proj.id))


def instance_filter(
    conn: Connection, caller: Caller, selector: str, project_selector: str | None
) -> EventFilter:
    """Every event of one instance (a deleted one too, by id: its history stays)."""
    row = lookup.instance(conn, caller, selector, project_selector, deleted=True)
    return EventFilter(instance_id=row.id)


def instance_page(
    conn: Connection,
    caller: Caller,
    selector: str,
    project_selector: str | None,
    flt: EventFilter,
    page_of: PageOf,
) -> Page[Row]:
    """The events of one instance (a deleted one too) that ``flt`` lets through."""
    row = lookup.instance(conn, caller, selector, project_selector, deleted=True)
    return page(conn, replace(flt, instance_id=row.id), page_of(row.id))


def project_filter(conn: Connection, caller: Caller, project_selector: str) -> EventFilter:
    return EventFilter(project_id=lookup.project(conn, caller, project_selector).id)


async def stream(
    cp: Services,
    select: Callable[[Connection], EventFilter],
    cursor: int | None,
    render: Callable[[Row], JsonObject],
) -> AsyncIterator[str]:
    """The events ``select`` picks, as Server-Sent Events, from after ``cursor`` (from now
    without one). Checked before it starts: what it streams exists, and so does ``cursor``."""
    flt = await cp.store.tx(select)
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
    return sse(
        cp.store,
        cp.feed,
        flt,
        cursor=cursor,
        render=render,
        poll_interval=cp.settings.stream_poll_interval,
        heartbeat=cp.settings.stream_heartbeat,
    )
