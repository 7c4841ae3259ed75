"""``skylight events``: a project's or the fleet's instance events, newest first."""

from __future__ import annotations

import json

import httpx
import typer
from rich.markup import escape

from skylight.cli.client import call, client
from skylight.cli.common import (
    URL,
    follow,
    out,
    pages,
    print_event_line,
    print_events,
    print_json,
)
from skylight.cli.instance import Severity
from skylight.wire import JsonObject

app = typer.Typer(
    subcommand_metavar="", help="Events of a project (--project) or of the whole fleet (--fleet)."
)


@app.callback(invoke_without_command=True)
def events(
    project: str | None = typer.Option(None, "--project", "-p", help="project name or id"),
    fleet: bool = typer.Option(False, "--fleet", help="every project's (operators)"),
    limit: int = typer.Option(20, min=1, max=10_000),
    severity: Severity | None = typer.Option(None),
    kind: str | None = typer.Option(None, help="e.g. instance.start_failed"),
    follow_: bool = typer.Option(
        False, "--follow", "-f", help="then follow new events live (with --project)"
    ),
    url: str = URL,
    as_json: bool = typer.Option(False, "--json", help="print the API's JSON (for scripts)"),
) -> None:
    """Events of a project or of the fleet, newest first."""
    if (project is None) == (not fleet):
        raise typer.BadParameter("give either --project or --fleet")
    if follow_ and fleet:
        raise typer.BadParameter("--follow needs --project")
    params: JsonObject = {"limit": limit}
    if severity is not None:
        params["severity"] = severity.value
    if kind:
        params["kind"] = kind
    names: dict[str, str] = {}

    def show(http: httpx.Client) -> None:
        if fleet:
            body: JsonObject = call(http, "GET", "/v1/system/events", params=params)
        else:
            body = call(http, "GET", "/v1/events", params=params | {"project": project})
        if not as_json:
            names.update(_names(http, body["items"], fleet=fleet, project=project))
        if as_json:
            print_json(body)
            return
        title = f"events of project {project}" if project else "events of the fleet"
        print_events(body["items"], f"{title}, newest first", names=names)
        if body.get("next_page"):
            out.print(f"[dim]more with --limit {limit * 2}[/]")

    if not follow_:
        with client(url) as http:
            show(http)
        return

    listed_once = False

    def listed(http: httpx.Client) -> None:
        # Once the stream is connected, so that no event falls between the list and the stream.
        nonlocal listed_once
        if not listed_once:
            show(http)
            listed_once = True

    def handle(event: JsonObject) -> int | None:
        if as_json:
            typer.echo(json.dumps(event, separators=(",", ":")))
        else:
            iid = str(event.get("instance_id", ""))
            print_event_line(event, prefix=f"[bold]{escape(names.get(iid, iid))}[/]  ")
        return None

    try:
        follow(
            url,
            "/v1/events/stream",
            {"project": project},
            handle,
            on_connect=listed,
            what=f"the events of project {project}",
        )
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


def _names(
    http: httpx.Client, items: list[JsonObject], *, fleet: bool, project: str | None
) -> dict[str, str]:
    """Instance id → name (``project/name`` for the fleet) for the events shown."""
    if not fleet:
        return {i["id"]: i["name"] for i in pages(http, "/v1/instances", {"project": project})}
    wanted = {e["project_id"] for e in items}
    if not wanted:
        return {}
    projects = {p["id"]: p["name"] for p in pages(http, "/v1/projects") if p["id"] in wanted}
    names: dict[str, str] = {}
    for pid, pname in projects.items():
        for i in pages(http, "/v1/instances", {"project": pid}):
            names[i["id"]] = f"{pname}/{i['name']}"
    return names
