"""Server-Sent Events: every event matching a filter, as it is committed, resumable.

Each message carries ``id: <cursor>`` (the event's position in commit order); a client that
reconnects with ``Last-Event-ID`` continues right after it, with no gap and no repeat. An
event that repeats (see coalescing in ``store.events``) is sent again with its new count.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from skylight.events.feed import Feed
from skylight.store import Store, StoreUnavailable, events
from skylight.wire import JsonObject

PAGE = 200


async def sse(
    store: Store,
    feed: Feed,
    flt: events.EventFilter,
    *,
    cursor: int,
    render: Callable[[Any], JsonObject],
    poll_interval: float = 1.0,
    heartbeat: float = 15.0,
) -> AsyncIterator[str]:
    # The cursor comes first, with no data: a client that drops before any event arrives
    # still resumes from where its stream began.
    yield f"retry: 2000\nid: {cursor}\n\n"
    last_sent = time.monotonic()
    while not feed.closed:
        seen = feed.version
        try:
            rows = await store.tx(_reader(flt, cursor))
        except StoreUnavailable:
            # The store is out of reach: keep the stream (and its cursor) and look again;
            # the client sees keepalives, then every event it missed, in order.
            await feed.wait(poll_interval, since=seen)
            yield ": waiting for the store\n\n"
            continue
        for row in rows:
            cursor = row.seq
            body = json.dumps(render(row), default=str, separators=(",", ":"))
            yield f"id: {row.seq}\nevent: instance_event\ndata: {body}\n\n"
            last_sent = time.monotonic()
        if len(rows) == PAGE:
            continue
        await feed.wait(poll_interval, since=seen)
        if time.monotonic() - last_sent >= heartbeat:
            yield ": keepalive\n\n"
            last_sent = time.monotonic()


def _reader(flt: events.EventFilter, cursor: int) -> Callable[[Any], list[Any]]:
    return lambda conn: events.after(conn, flt, after_seq=cursor, limit=PAGE)
