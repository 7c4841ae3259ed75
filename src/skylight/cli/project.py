"""``skylight project``: list, create, show and delete projects."""

from __future__ import annotations

import typer
from rich.markup import escape

from skylight.cli.client import call, client
from skylight.cli.common import JSON, URL, details, list_or_print, out, print_json, when
from skylight.cli.tables import Column, list_table
from skylight.wire import JsonObject

app = typer.Typer(no_args_is_help=True, help="Projects: where instances live.")


@app.command("list")
def list_(url: str = URL, as_json: bool = JSON) -> None:
    """Every project."""
    items = list_or_print(url, "/v1/projects", as_json=as_json)
    if items is None:
        return
    table = list_table("name", "id", Column("description", wide=True), "created")
    for p in items:
        table.add_row(escape(p["name"]), p["id"], escape(p["description"]), when(p["time_created"]))
    out.print(table)


@app.command()
def create(
    name: str = typer.Argument(..., metavar="NAME"),
    description: str = typer.Option("", "--description", "-d"),
    url: str = URL,
    as_json: bool = JSON,
) -> None:
    """Create project NAME."""
    with client(url) as http:
        body = call(http, "POST", "/v1/projects", json={"name": name, "description": description})
    if as_json:
        print_json(body)
    else:
        out.print(f"created project [bold]{escape(body['name'])}[/] ({body['id']})")


@app.command()
def show(
    name: str = typer.Argument(..., metavar="PROJECT", help="name or id"),
    url: str = URL,
    as_json: bool = JSON,
) -> None:
    """Show project NAME."""
    with client(url) as http:
        body: JsonObject = call(http, "GET", f"/v1/projects/{name}")
    if as_json:
        print_json(body)
        return
    details(
        [
            ("id", body["id"]),
            ("description", escape(body["description"])),
            ("created", when(body["time_created"])),
            ("modified", when(body["time_modified"])),
        ],
        title=body["name"],
    )


@app.command()
def delete(
    name: str = typer.Argument(..., metavar="PROJECT", help="name or id"), url: str = URL
) -> None:
    """Delete project NAME (it must have no instances)."""
    with client(url) as http:
        call(http, "DELETE", f"/v1/projects/{name}")
    out.print(f"deleted project [bold]{escape(name)}[/]")
