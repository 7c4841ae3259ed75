"""Page tokens: opaque to clients, a sort mode and the last key seen to us."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel

from skylight.api.models import IdSortMode, NameOrIdSortMode, QueryText, ResultsPage, Timestamp
from skylight.errors import InvalidRequest
from skylight.ids import parse_uuid
from skylight.operations.event_history import EventFilter
from skylight.store.paging import Page, PageRequest

__all__ = [
    "Ask",
    "ById",
    "ByName",
    "Events",
    "FixedOrder",
    "Limit",
    "Page",
    "PageRequest",
    "decode",
    "encode",
    "next_token",
    "results",
]

DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000

# The ``limit`` of every list, documented with its range (decode() is what enforces it, so a
# limit out of range is answered in its own words).
Limit = Annotated[
    int | None,
    Query(
        description="Maximum number of items returned by a single call",
        json_schema_extra={"minimum": 1, "maximum": MAX_LIMIT},
    ),
]


_NAME_OR_ID_SORTS = ("name_ascending", "name_descending", "id_ascending")


def _sorts(default_sort: str) -> tuple[str, ...]:
    """The sort modes a list whose default is ``default_sort`` can hand out tokens for: lists
    by name can also sort by id; the others (by id, by sequence) have their one sort."""
    return _NAME_OR_ID_SORTS if default_sort.startswith("name_") else (default_sort,)


def _marker_ok(sort: str, marker: Any) -> bool:
    """A forged token must not reach the store with a key of the wrong type."""
    if sort == "seq_descending":
        return type(marker) is int and 0 <= marker < 2**63
    if sort == "id_ascending":
        return isinstance(marker, str) and parse_uuid(marker) is not None
    if sort.startswith("time_and_id_"):  # "<ISO time>|<id>" (the audit log)
        if not isinstance(marker, str) or marker.count("|") != 1:
            return False
        when, ident = marker.split("|")
        try:
            datetime.fromisoformat(when)
        except ValueError:
            return False
        return parse_uuid(ident) is not None
    return isinstance(marker, str) and 1 <= len(marker) <= 63 and "\x00" not in marker


def encode(sort: str, marker: Any, scope: str) -> str:
    raw = json.dumps({"v": 1, "s": sort, "m": marker, "c": scope}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode(
    limit: int | None, token: str | None, sort: str | None, scope: str, default_sort: str
) -> PageRequest:
    if limit is not None and not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(f"limit must be between 1 and {MAX_LIMIT}")
    lim = limit or DEFAULT_LIMIT
    if token is None:
        return PageRequest(lim, None, sort or default_sort, scope)
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(data, dict) or data.get("v") != 1 or data.get("c") != scope:
            raise ValueError
        if data.get("s") not in _sorts(default_sort) or not _marker_ok(data["s"], data.get("m")):
            raise ValueError
    except (ValueError, TypeError, UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidRequest("page_token is not a token this list handed out") from None
    if sort is not None and sort != data["s"]:
        raise InvalidRequest("sort_by cannot change between pages")
    return PageRequest(lim, data["m"], data["s"], scope)


def next_token(req: PageRequest, items: list[Any], key: str, scope: str) -> str | None:
    if len(items) < req.limit:
        return None
    return encode(req.sort, getattr(items[-1], key), scope)


@dataclass(frozen=True)
class Ask:
    """A list's query parameters, decoded once the list is known: ``ask()`` is the page of
    the list ``scope``, ``ask(parent_id)`` that of the list ``scope:parent_id`` (the parent
    is resolved by the operation that reads the page, in its transaction)."""

    limit: int | None
    token: str | None
    sort: str | None
    scope: str
    default_sort: str = "name_ascending"

    def __call__(self, parent_id: str | None = None) -> PageRequest:
        scope = self.scope if parent_id is None else f"{self.scope}:{parent_id}"
        return decode(self.limit, self.token, self.sort, scope, self.default_sort)


# The key a page ends on, by sort mode: the next page starts after it.
_KEY = {
    "name_ascending": "name",
    "name_descending": "name",
    "id_ascending": "id",
    "seq_descending": "seq",
    "time_and_id_ascending": "cursor",
    "time_and_id_descending": "cursor",
}

Item = TypeVar("Item")
Answer = TypeVar("Answer", bound=ResultsPage[BaseModel])


def results(kind: type[Answer], page: Page[Item], view: Callable[[Item], BaseModel]) -> Answer:
    """A page as the list's answer ``kind``: its items as views, and the token of the next page
    (None after the last). Building ``kind`` checks that the views are its items."""
    req = page.request
    nxt = next_token(req, page.items, _KEY[req.sort], req.scope)
    return kind(items=[view(i) for i in page.items], next_page=nxt)


# -- the query of a list, as one dependency per kind of order ---------------------------------


@dataclass(frozen=True)
class _Query:
    """What every list takes: how many items, and the token the last page ended with."""

    limit: Limit = None
    page_token: str | None = None


@dataclass(frozen=True)
class _NameOrIdQuery(_Query):
    sort_by: NameOrIdSortMode | None = None

    def ask(self, scope: str) -> Ask:
        return Ask(self.limit, self.page_token, self.sort_by, scope)


@dataclass(frozen=True)
class _IdQuery(_Query):
    sort_by: IdSortMode | None = None

    def ask(self, scope: str) -> Ask:
        return Ask(self.limit, self.page_token, self.sort_by, scope, "id_ascending")


@dataclass(frozen=True)
class _FixedOrderQuery(_Query):
    def ask(self, scope: str, order: str) -> Ask:
        return Ask(self.limit, self.page_token, None, scope, order)


@dataclass(frozen=True)
class _EventsQuery(_Query):
    """A list of events: newest first, with the filters every event list takes."""

    severity: Literal["info", "warning", "error"] | None = None
    kind: QueryText | None = None
    operation: QueryText | None = None
    since: Timestamp | None = None

    def ask(self, scope: str) -> Ask:
        return Ask(self.limit, self.page_token, None, scope, "seq_descending")

    def filter(self) -> EventFilter:
        return EventFilter(
            severity=self.severity, kind=self.kind, operation_id=self.operation, since=self.since
        )


# A list's ``limit``, ``page_token`` and (where it has one) ``sort_by``, by its order.
ByName = Annotated[_NameOrIdQuery, Depends()]
ById = Annotated[_IdQuery, Depends()]
FixedOrder = Annotated[_FixedOrderQuery, Depends()]  # a list with one order, no sort_by
Events = Annotated[_EventsQuery, Depends()]
