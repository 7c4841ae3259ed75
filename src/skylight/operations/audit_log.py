"""Reading the audit log (fleet viewers): entries completed in a time range, oldest or
newest first, paged by (time completed, id) so that overlapping reads never miss or repeat
an entry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Connection

from skylight.clock import as_utc
from skylight.errors import InvalidRequest
from skylight.identity.access import FLEET, Action, Caller, authorize
from skylight.store import Row, audit_log
from skylight.store.paging import Page, PageRequest


@dataclass(frozen=True)
class Listed:
    row: Row

    @property
    def cursor(self) -> str:  # the key the next page starts after
        return f"{as_utc(self.row.time_completed).isoformat()}|{self.row.id}"


def page(
    conn: Connection, caller: Caller, start: datetime, end: datetime | None, req: PageRequest
) -> Page[Listed]:
    authorize(caller, Action.read, FLEET)
    if end is not None and end <= start:
        raise InvalidRequest("end_time must be after start_time")
    after = None
    if req.marker is not None:
        when, ident = str(req.marker).split("|")
        after = (datetime.fromisoformat(when), ident)
    found = audit_log.page(
        conn,
        start=start,
        end=end,
        descending=req.sort == "time_and_id_descending",
        after=after,
        limit=req.limit,
    )
    return Page([Listed(r) for r in found], req)
