"""What the client commands share: options, paging, and how objects and events are shown."""

from __future__ import annotations

import itertools
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import typer
from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from skylight.cli.client import DEFAULT_URL, EXIT_FAILED, call, client, err, fail
from skylight.wire import JsonObject

out = Console()

GiB = 1024**3
MiB = 1024**2

URL = typer.Option(
    DEFAULT_URL, "--url", envvar="SKYLIGHT_URL", metavar="URL", help="the Skylight API"
)
JSON = typer.Option(False, "--json", help="print the API's JSON (for scripts)")
PROJECT = typer.Option(..., "--project", "-p", metavar="PROJECT", help="project name or id")


def print_json(body: Any) -> None:
    typer.echo(json.dumps(body, indent=2))


def pages(http: httpx.Client, path: str, params: JsonObject | None = None) -> Iterator[JsonObject]:
    """Every item of a paginated list, following ``next_page``."""
    query = dict(params or {})
    query.setdefault("limit", 100)
    while True:
        body: JsonObject = call(http, "GET", path, params=query)
        yield from body["items"]
        token = body.get("next_page")
        if not token:
            return
        # The same selectors and filters go with the token (as the Oxide SDKs send them:
        # ``project`` selects the collection the token pages through).
        query = {**query, "page_token": token}


def list_or_print(
    url: str,
    path: str,
    params: JsonObject | None = None,
    *,
    as_json: bool,
) -> list[JsonObject] | None:
    """Every item of a list, all its pages read. With ``--json`` the items are printed as one
    page of the API's own shape and ``None`` comes back: the command has no table to draw."""
    with client(url) as http:
        items = list(pages(http, path, params))
    if as_json:
        print_json({"items": items, "next_page": None})
        return None
    return items


def when(value: str | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """An API timestamp in local time, for a human: ``2025-01-02 03:04:05``."""
    if not value:
        return ""
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if t.tzinfo is not None:
        t = t.astimezone()  # local time
    return t.strftime(fmt)


SHORT_TIME = "%m-%d %H:%M:%S"

_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]i?b?)?\s*", re.IGNORECASE)
_UNIT = {"k": 1024, "m": MiB, "g": GiB, "t": 1024 * GiB}


def parse_memory(text: str) -> int:
    """A memory size as the CLI takes it, in bytes (whole MiB): GiB by default (``16``,
    ``1.5``) or with a unit (``16GiB``, ``512MiB``, ``1TiB``; ``G``, ``M``, ``T`` too)."""
    match = _SIZE.fullmatch(text)
    if match is None:
        raise typer.BadParameter(f"{text!r} is not a size (e.g. 16, 16GiB, 512MiB)")
    number, unit = match.groups()
    scale = _UNIT[unit[0].lower()] if unit else GiB
    return round(float(number) * scale / MiB) * MiB


def gib(n: int) -> str:
    """Bytes as GiB, without a needless fraction: ``4``, ``1.5``."""
    return f"{n / GiB:g}"


def actor(value: JsonObject | None) -> str:
    """Who caused an event, in one word: ``user``, or what made the control plane act
    (``auto_restart``, ``sled_failure``): a column of events has no room for more."""
    if not value:
        return ""
    if value.get("type") == "user":
        return "user"
    return str(value.get("cause") or value.get("type", "")).replace(" ", "_")


def reason_text(reason: JsonObject | None) -> str:
    if not reason:
        return ""
    return f"{reason.get('code', '')}: {reason.get('message', '')}"


SEVERITY_STYLE = {"info": "", "warning": "yellow", "error": "red"}
STATE_STYLE = {"running": "green", "failed": "red", "stopped": "", "destroyed": "dim"}


def styled(text: str, style: str) -> str:
    return f"[{style}]{escape(text)}[/]" if style else escape(text)


def details(rows: list[tuple[str, Any]], title: str | None = None) -> None:
    """One object, readably: ``label  value`` lines (values are markup)."""
    if title:
        out.print(f"[bold]{escape(title)}[/]")
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    for label, value in rows:
        grid.add_row(label, "" if value is None else str(value))
    out.print(grid)


def _instant(value: object) -> datetime:
    """An API timestamp as an aware datetime (its text varies in fractional digits, so text
    order is not time order); an unreadable one sorts first."""
    try:
        t = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def latest(event: JsonObject) -> datetime:
    """When an event last happened: a coalesced event (``count`` > 1) is as recent as its
    last occurrence, not its first."""
    return _instant(event.get("time_last") or event.get("time"))


def by_latest(items: Iterable[JsonObject], *, newest_first: bool = True) -> list[JsonObject]:
    """Events in the order of their last occurrence, which is how a person reads them (the
    API's list order is its cursor's, which need not be)."""
    return sorted(items, key=latest, reverse=newest_first)


def internal_text(value: object) -> str:
    """Operator detail (``internal``: sled, VMM, replica ids, agent errors) on one line."""
    if isinstance(value, dict):
        return ", ".join(f"{k}={internal_text(v)}" for k, v in value.items() if v is not None)
    return str(value)


def event_internal(e: JsonObject) -> str:
    """An event's operator detail (its reason's and its own ``internal``), or "" when the
    server sent none (it sends it to operators only)."""
    parts = [
        internal_text(part["internal"])
        for part in (e.get("reason"), e.get("detail"))
        if isinstance(part, dict) and part.get("internal")
    ]
    return "; ".join(parts)


def print_events(
    items: list[JsonObject], title: str, *, names: dict[str, str] | None = None
) -> None:
    """Events, newest (last occurrence) first: one line of short, aligned columns each (with
    an instance column when ``names`` maps instance ids to names), then the reason and, when
    the server sent it (to operators only), the operator detail, indented on lines of their
    own. A reason is sentences: in a column of a table 80 wide it would get a dozen letters a
    line; under the event it gets the whole width."""
    events = by_latest(items)
    headers = ["time", *(["instance"] if names is not None else []), "kind", "severity"]
    headers += ["count", "actor"]
    rows = []
    for e in events:
        iid = str(e.get("instance_id", ""))
        rows.append(
            [
                when(e.get("time_last") or e.get("time"), SHORT_TIME),
                *([names.get(iid, iid)] if names is not None else []),
                str(e.get("kind", "")).removeprefix("instance."),
                str(e.get("severity", "")),
                str(e.get("count", 1)),
                actor(e.get("actor")),
            ]
        )
    widths = [max(cell_len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    count_at, severity_at = headers.index("count"), headers.index("severity")

    def line(cells: list[str], *, head: bool = False) -> str:
        texts = []
        for i, (text, width) in enumerate(zip(cells, widths, strict=True)):
            padded = escape(text.rjust(width) if i == count_at else text.ljust(width))
            if i == severity_at and not head:
                padded = styled(text.ljust(width), SEVERITY_STYLE.get(text, ""))
            texts.append(padded)
        return "  ".join(texts).rstrip()

    out.print(f"[bold]{escape(title)}[/]")
    out.print(f"[bold]{line(headers, head=True)}[/]")
    for e, row in zip(events, rows, strict=True):
        out.print(line(row))
        if e.get("reason"):
            _under(escape(reason_text(e["reason"])))
        internal = event_internal(e)
        if internal:
            _under(f"[dim]operator detail: {escape(internal)}[/]")


def _under(markup: str) -> None:
    """A line (wrapped as long as it needs, between words) indented under the event it
    belongs to."""
    indent = " " * EVENT_INDENT
    for line in Text.from_markup(markup).wrap(out, max(out.width - EVENT_INDENT, 20)):
        line.rstrip()
        out.print(Text(indent) + line, soft_wrap=True)


EVENT_INDENT = 4  # a reason under its event


# ``instance watch``'s columns: (header, width, right-aligned). Every line lines up with the
# header whatever its values, and the five with the actor fit in 80 columns; what does not
# (reason, action, operator detail) goes on indented lines below.
WATCH_COLUMNS = (
    ("time", 14, False),
    ("kind", 22, False),  # the longest kind, without "instance.": auto_restart_scheduled
    ("severity", 8, False),
    ("count", 5, True),
    ("state", 9, False),  # the longest run state: destroyed, rebooting
)


def _cell(text: str, width: int, right: bool) -> str:
    return text.rjust(width) if right else text.ljust(width)


def watch_header() -> str:
    cells = [_cell(name, width, right) for name, width, right in WATCH_COLUMNS]
    return "[bold]" + escape("  ".join(cells) + "  actor") + "[/]"


def print_event_line(e: JsonObject, prefix: str = "") -> None:
    """One event for ``instance watch`` (and ``events --follow``, after ``prefix``): time,
    kind, severity, count (when coalesced), run state and actor in the fixed widths of
    ``WATCH_COLUMNS``; then, indented below, its reason, what to do, and operator detail."""
    sev = str(e.get("severity", ""))
    count = int(e.get("count") or 1)
    texts = [
        when(e.get("time_last") or e.get("time"), SHORT_TIME),
        str(e.get("kind", "")).removeprefix("instance."),
        sev,
        f"x{count}" if count > 1 else "",
        str(e.get("run_state", "")),
    ]
    time_, kind, sev_, count_, state = (
        escape(_cell(text, width, right))
        for text, (_, width, right) in zip(texts, WATCH_COLUMNS, strict=True)
    )
    cells = [
        time_,
        f"[bold]{kind}[/]",
        styled(sev_, SEVERITY_STYLE.get(sev, "")) if sev else sev_,
        count_,
        state,
        escape(actor(e.get("actor"))),
    ]
    out.print(prefix + "  ".join(cells).rstrip())
    reason = e.get("reason")
    if reason:
        _under(escape(reason_text(reason)))
        if reason.get("action"):
            _under(f"[dim]what to do: {escape(str(reason['action']))}[/]")
    internal = event_internal(e)
    if internal:
        _under(f"[dim]operator detail: {escape(internal)}[/]")


# -- Server-Sent Events ----------------------------------------------------------------------


@dataclass
class SseMessage:
    id: str | None
    event: str
    data: str
    retry: int | None


def sse_messages(lines: Iterable[str]) -> Iterator[SseMessage]:
    """Parse an SSE stream into messages; comment lines (``:`` heartbeats) are skipped."""
    event, msg_id, retry = "", None, None
    data: list[str] = []
    for line in lines:
        if line == "":
            if data or msg_id is not None or retry is not None:
                yield SseMessage(msg_id, event or "message", "\n".join(data), retry)
            event, data, msg_id, retry = "", [], None, None
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)
        elif field == "id" and "\x00" not in value:
            msg_id = value
        elif field == "retry" and value.isdigit():
            retry = int(value)


StreamHandler = Callable[[JsonObject], int | None]


def follow(
    url: str,
    path: str,
    params: JsonObject,
    handle: StreamHandler,
    *,
    on_connect: Callable[[httpx.Client], int | None] | None = None,
    what: str = "events",
    read_timeout: float = 60.0,
) -> int:
    """Follow an event stream until ``handle`` (or ``on_connect``) returns an exit code.

    A dropped connection is resumed with ``Last-Event-ID`` (no gap, no repeat); only the first
    connection's failure ends the command. ``handle`` gets each event's JSON. ``on_connect``
    runs once connected, before any event, whenever there is no event id to resume from.
    """
    last_id: str | None = None
    retry = 2.0
    connected = False
    attempt = 0
    with client(url) as http:
        while True:
            headers = {"accept": "text/event-stream", "cache-control": "no-cache"}
            if last_id is not None:
                headers["last-event-id"] = last_id
            try:
                with http.stream(
                    "GET",
                    path,
                    params=params,
                    headers=headers,
                    timeout=httpx.Timeout(10.0, read=read_timeout),
                ) as response:
                    if response.status_code >= 400:
                        response.read()
                        if not (connected and response.status_code >= 500):
                            fail(response)
                        raise _Dropped(f"{response.status_code} from the server")
                    lines = response.iter_lines()
                    # The stream's first line (``retry:``) comes once the server has fixed
                    # where it starts: from here on no event is missed.
                    first = next(lines, None)
                    if first is None:
                        raise _Dropped("the server closed the stream")
                    err.print(
                        f"[dim]{'reconnected to' if connected else 'watching'} {escape(what)}"
                        " (Ctrl-C to stop)[/]"
                    )
                    connected, attempt = True, 0
                    if last_id is None and on_connect is not None:
                        # No cursor to resume from (no event seen yet): events may have
                        # passed while we were away, so look at the present again.
                        code = on_connect(http)
                        if code is not None:
                            return code
                    for msg in sse_messages(itertools.chain([first], lines)):
                        if msg.retry is not None:
                            retry = max(msg.retry / 1000, 0.1)
                        if msg.id is not None:
                            last_id = msg.id
                        if msg.event not in ("instance_event", "message") or not msg.data:
                            continue
                        try:
                            event = json.loads(msg.data)
                        except ValueError:
                            err.print(f"[yellow]skipped a malformed message[/] {msg.id}")
                            continue
                        code = handle(event)
                        if code is not None:
                            return code
                    problem = "the server closed the stream"
            except httpx.HTTPError as exc:
                if not connected:
                    err.print(f"[bold red]cannot reach Skylight at {escape(url)}[/]: {exc}")
                    raise typer.Exit(EXIT_FAILED) from None
                problem = str(exc) or type(exc).__name__
            except _Dropped as exc:
                problem = str(exc)
            attempt += 1
            delay = min(retry * attempt, 30.0)
            err.print(f"[dim]connection lost ({escape(problem)}); reconnecting in {delay:g}s[/]")
            time.sleep(delay)


class _Dropped(Exception):
    pass


def log_to_stderr(level: str) -> None:
    """How the servers (``serve``, ``sled-agent``) log: one line per record, with its time."""
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
