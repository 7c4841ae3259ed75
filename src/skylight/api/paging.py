"""Page tokens: opaque to clients, a sort mode and the last key seen to us."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Query

from skylight.errors import InvalidRequest
from skylight.ids import parse_uuid

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


@dataclass(frozen=True)
class PageRequest:
    limit: int
    marker: Any  # last key of the previous page, or None for the first page
    sort: str


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
        return PageRequest(lim, None, sort or default_sort)
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
    return PageRequest(lim, data["m"], data["s"])


def next_token(req: PageRequest, items: list[Any], key: str, scope: str) -> str | None:
    if len(items) < req.limit:
        return None
    return encode(req.sort, getattr(items[-1], key), scope)
