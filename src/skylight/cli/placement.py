"""``skylight placement explain``: where an instance would go now, or why not."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from skylight.cli.client import DEFAULT_URL, EXIT_PERMANENT, EXIT_TRANSIENT, call, client
from skylight.placement.filters import CHECKS
from skylight.wire import JsonObject

app = typer.Typer(no_args_is_help=True, help="Placement: explain where instances go.")
out = Console()

GiB = 1024**3


@app.command()
def explain(
    instance: str = typer.Argument(..., help="instance name or id"),
    project: str | None = typer.Option(None, "--project", "-p"),
    url: str = typer.Option(DEFAULT_URL, envvar="SKYLIGHT_URL"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Dry-run placement for INSTANCE: the sled it would get, or every sled's reason (sled
    ids and per-sled checks when you are a fleet viewer)."""
    params = {"project": project} if project else {}
    with client(url) as http:
        body: JsonObject = call(http, "GET", f"/v1/instances/{instance}/placement", params=params)
    if as_json:
        typer.echo(json.dumps(body, indent=2))
    else:
        _show(body)
    if not body["fits"]:
        raise typer.Exit(EXIT_TRANSIENT if body["reason"]["transient"] else EXIT_PERMANENT)


def _show(body: JsonObject) -> None:
    req = body["request"]
    size = f"{req['ncpus']} vCPUs, {req['memory'] / GiB:g} GiB"
    if req["local_storage"]:
        size += f", {req['local_storage'] / GiB:g} GiB local disks"
    out.print(f"[bold]{body['instance_id']}[/] ({size})")
    if body["fits"]:
        where = f" on sled {body['sled_id']}" if body.get("sled_id") else ""
        out.print(f"[green]fits now[/]{where}")
        for b in body["broken_preferences"]:
            out.print(f"  would break the '{b['kind']}' preference of group {b['group']}")
        return
    reason = body["reason"]
    kind = "may pass by itself" if reason["transient"] else "needs a change by you"
    out.print(f"[red]does not fit[/]: {reason['code']} ({kind})")
    out.print(reason["message"])
    diagnosis = reason.get("diagnosis") or {}
    table = Table("check", "sleds")
    for check, n in (diagnosis.get("counts") or {}).items():
        if n:
            table.add_row(CHECKS.get(check, check), str(n))
    table.add_row("[bold]total[/]", str(diagnosis.get("sleds_total", "")))
    out.print(table)
    if reason.get("action"):
        out.print(f"[bold]what to do:[/] {reason['action']}")
    per_sled = diagnosis.get("sleds")
    if per_sled:
        detail = Table("sled", "failed checks")
        for sled, checks in per_sled.items():
            detail.add_row(sled, ", ".join(checks))
        out.print(detail)
