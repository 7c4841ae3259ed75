"""What the client commands share: options, paging, and how objects and events are shown."""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from skylight.cli.client import DEFAULT_URL, EXIT_FAILED, call, client, err, fail
from skylight.wire import JsonObject

out = Console()

GiB = 1024**3
MiB = 1024**2

URL = typer.Option(DEFAULT_URL, "--url", envvar="SKYLIGHT_URL", help="the Skylight API")
JSON = typer.Option(False, "--json", help="print the API's JSON (for scripts)")
PROJECT = typer.Option(..., "--project", "-p", help="project name or id")


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


def gib(n: int) -> str:
    return f"{n / GiB:g}"


def actor(value: JsonObject | None) -> str:
    if not value:
        return ""
    if value.get("type") == "user":
        return "user"
    cause = value.get("cause")
    kind = str(value.get("type", "")).replace("_", " ")
    return f"{kind} ({cause})" if cause else kind


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


def reason_rows(reason: JsonObject) -> list[tuple[str, Any]]:
    transient = reason.get("transient")
    passes = (
        "[yellow]transient[/]: may pass by itself"
        if transient
        else "[red]permanent[/]: needs a change by you"
    )
    rows: list[tuple[str, Any]] = [
        ("code", f"[bold]{escape(str(reason.get('code', '')))}[/]"),
        ("message", escape(str(reason.get("message", "")))),
        ("kind", passes),
    ]
    if reason.get("action"):
        rows.append(("what to do", escape(str(reason["action"]))))
    if reason.get("time"):
        rows.append(("since", when(reason["time"])))
    return rows


def list_table(*headers: str, title: str | None = None) -> Table:
    """The tables of lists: a rule under the header, no vertical lines, values folded."""
    table = Table(
        box=box.SIMPLE_HEAD,
        title=title,
        title_justify="left",
        pad_edge=False,
        show_edge=False,
        collapse_padding=True,
    )
    for h in headers:
        table.add_column(h, overflow="fold")
    return table


def event_table(
    items: list[JsonObject],
    title: str | None = None,
    *,
    names: dict[str, str] | None = None,
) -> Table:
    """Events as a table; with ``names`` (instance id → name) it has an instance column."""
    table = list_table(title=title)
    table.add_column("time", no_wrap=True)
    if names is not None:
        table.add_column("instance")
    table.add_column("kind", no_wrap=True)
    table.add_column("severity", no_wrap=True)
    table.add_column("actor", overflow="fold")
    table.add_column("reason", overflow="fold")
    table.add_column("count", justify="right", no_wrap=True)
    for e in items:
        sev = str(e.get("severity", ""))
        instance = []
        if names is not None:
            iid = str(e.get("instance_id", ""))
            instance = [escape(names.get(iid, iid))]
        table.add_row(
            when(e.get("time_last") or e.get("time"), SHORT_TIME),
            *instance,
            escape(str(e.get("kind", "")).removeprefix("instance.")),
            styled(sev, SEVERITY_STYLE.get(sev, "")),
            escape(actor(e.get("actor"))),
            escape(reason_text(e.get("reason"))),
            str(e.get("count", 1)),
        )
    return table


def event_line(e: JsonObject) -> str:
    """One event as one line (markup), for ``instance watch``."""
    sev = str(e.get("severity", ""))
    parts = [
        when(e.get("time_last") or e.get("time")),
        f"[bold]{escape(str(e.get('kind', '')))}[/]",
        styled(sev, SEVERITY_STYLE.get(sev, "")),
        f"run_state={escape(str(e.get('run_state', '')))}",
        escape(actor(e.get("actor"))),
    ]
    line = "  ".join(p for p in parts if p)
    reason = e.get("reason")
    if reason:
        line += f"  {escape(reason_text(reason))}"
        if reason.get("action"):
            line += f"  [dim]what to do: {escape(str(reason['action']))}[/]"
    if int(e.get("count") or 1) > 1:
        line += f"  (x{e['count']})"
    return line


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
