"""``skylight placement explain``: where an instance would go now, or why not (every sled)."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import typer
from rich.markup import escape

from skylight.cli.client import EXIT_PERMANENT, EXIT_TRANSIENT, call, client
from skylight.cli.common import (
    JSON,
    URL,
    gib,
    out,
    pages,
    print_json,
)
from skylight.cli.sled import SLEDS
from skylight.cli.tables import Column, list_table
from skylight.placement.filters import CHECKS
from skylight.wire import JsonObject

app = typer.Typer(no_args_is_help=True, help="Placement: explain where instances go.")


@dataclass(frozen=True)
class SledRoom:
    """A sled as an operator reads an explanation: its serial (the name on the hardware, where
    the API's id is a UUID) and the room it has free for this instance."""

    id: str
    serial: str
    free_cpus: int
    free_memory: int

    @classmethod
    def of(cls, sled: JsonObject, explanation: JsonObject) -> SledRoom:
        """The sled's free room as the dry run counts it: an instance placed on it now is
        asked where it would go if it started again, so its own reservation counts as free."""
        free_cpus = int(sled["usable_hardware_threads"]) - int(sled["reserved_hardware_threads"])
        free_memory = int(sled["usable_physical_ram"]) - int(sled["reserved_memory"])
        if sled["id"] == explanation.get("current_sled_id"):
            free_cpus += int(explanation["request"]["ncpus"])
            free_memory += int(explanation["request"]["memory"])
        serial = str((sled.get("baseboard") or {}).get("serial") or sled["id"])
        return cls(sled["id"], serial, free_cpus, free_memory)


@dataclass(frozen=True)
class Explained:
    """What ``explain`` shows: the API's explanation, the instance's name, and, for a fleet
    viewer, every sled (by id) with its room; for anyone else no sled at all."""

    body: JsonObject
    name: str
    sleds: dict[str, SledRoom] | None

    def sled_name(self, sled_id: str) -> str:
        room = (self.sleds or {}).get(sled_id)
        return room.serial if room else sled_id


@app.command()
def explain(
    instance: str = typer.Argument(..., metavar="INSTANCE", help="instance name or id"),
    project: str | None = typer.Option(None, "--project", "-p", help="project name or id"),
    url: str = URL,
    as_json: bool = JSON,
) -> None:
    """Dry-run placement for INSTANCE: whether it would fit if it started now and, if not,
    why, with every elimination reason and its count. Operators (fleet viewers) also see the
    sled it would go to, or every sled with its free room and the checks it failed."""
    params = {"project": project} if project else {}
    with client(url) as http:
        body: JsonObject = call(http, "GET", f"/v1/instances/{instance}/placement", params=params)
        if as_json:
            print_json(body)
        else:
            _show(_explained(http, body, instance, params))
    if not body["fits"]:
        raise typer.Exit(EXIT_TRANSIENT if body["reason"]["transient"] else EXIT_PERMANENT)


def _explained(
    http: httpx.Client, body: JsonObject, instance: str, params: JsonObject
) -> Explained:
    """The explanation with what it names by id looked up: the instance's name and, when
    the caller's role makes them an operator (``/v1/me``), the sleds."""
    name = str(call(http, "GET", f"/v1/instances/{instance}", params=params)["name"])
    me: JsonObject = call(http, "GET", "/v1/me")
    if not me.get("fleet_viewer"):
        return Explained(body, name, None)
    diagnosis: JsonObject = (body.get("reason") or {}).get("diagnosis") or {}
    if diagnosis.get("sleds"):
        # Every sled is named (a rack of at most the diagnosis' per-sled limit): list them.
        sleds = list(pages(http, SLEDS))
    else:
        # Only a few are: the target, or the samples of a large rack's groups.
        named = [body["sled_id"]] if body.get("sled_id") else []
        named += [i for g in diagnosis.get("sled_groups") or [] for i in g["sample"]]
        sleds = [call(http, "GET", f"{SLEDS}/{i}") for i in dict.fromkeys(named)]
    return Explained(body, name, {s["id"]: SledRoom.of(s, body) for s in sleds})


def _size(req: JsonObject) -> str:
    size = f"{req['ncpus']} vCPUs, {gib(req['memory'])} GiB"
    if req.get("local_storage"):
        size += f", {gib(req['local_storage'])} GiB local disks"
    return size


def _show(x: Explained) -> None:
    body = x.body
    out.print(f"[bold]{escape(x.name)}[/] ({_size(body['request'])})")
    if body["fits"]:
        where = ""
        if x.sleds is not None and body.get("sled_id"):
            where = f" on sled [bold]{escape(x.sled_name(body['sled_id']))}[/]"
        out.print(f"[green]fits now[/]{where}")
        for b in body["broken_preferences"]:
            out.print(
                f"  would break the {escape(str(b['kind']))} preference of group "
                f"{escape(str(b['group']))}"
            )
        return
    reason = body["reason"]
    kind = "may pass by itself" if reason["transient"] else "needs a change by you"
    out.print(f"[red]does not fit[/]: {escape(str(reason['code']))} ({kind})")
    out.print(escape(str(reason["message"])))
    diagnosis: JsonObject = reason.get("diagnosis") or {}
    if diagnosis:
        _eliminations(diagnosis)
    if reason.get("action"):
        out.print(f"[bold]what to do:[/] {escape(str(reason['action']))}")
    if x.sleds is not None:
        _every_sled(x, diagnosis)


def _eliminations(diagnosis: JsonObject) -> None:
    """Every elimination reason with its count (each sled counted once, under the first
    check it failed), the total, and what the closest sled lacks."""
    counts: dict[str, int] = diagnosis.get("counts") or {}
    table = list_table("sleds eliminated because", Column("sleds", justify="right"))
    for check, n in counts.items():
        words = escape(CHECKS.get(check, check))
        table.add_row(words if n else f"[dim]{words}[/]", str(n) if n else "[dim]0[/]")
    table.add_row("[bold]all sleds[/]", f"[bold]{diagnosis.get('sleds_total', '')}[/]")
    out.print(table)
    lacks = _shortfall(diagnosis.get("shortfall"))
    if lacks:
        out.print(f"[bold]shortfall:[/] the closest sled lacks {lacks}")


def _shortfall(shortfall: JsonObject | None) -> str:
    if not shortfall:
        return ""
    parts = []
    if shortfall.get("vcpus"):
        parts.append(f"{shortfall['vcpus']} vCPUs")
    if shortfall.get("memory"):
        parts.append(f"{gib(shortfall['memory'])} GiB of memory")
    if shortfall.get("local_storage"):
        parts.append(f"{gib(shortfall['local_storage'])} GiB of local storage")
    return " and ".join(parts)


def _every_sled(x: Explained, diagnosis: JsonObject) -> None:
    """Operators: every sled with its free room against the request and the checks it
    failed, by serial; past the diagnosis' per-sled limit, its groups of sleds."""
    req = x.body["request"]
    per_sled: dict[str, list[str]] | None = diagnosis.get("sleds")
    groups: list[JsonObject] | None = diagnosis.get("sled_groups")
    if per_sled:
        table = list_table(
            "sled",
            Column("vCPUs free/asked", justify="right"),
            Column("GiB free/asked", justify="right"),
            Column("failed checks", wide=True),
            title="every sled",
        )
        rows = sorted(per_sled.items(), key=lambda item: x.sled_name(item[0]))
        for sled_id, checks in rows:
            room = (x.sleds or {}).get(sled_id)
            cpus = f"{room.free_cpus}/{req['ncpus']}" if room else "?"
            memory = f"{gib(room.free_memory)}/{gib(req['memory'])}" if room else "?"
            table.add_row(
                escape(x.sled_name(sled_id)),
                cpus,
                memory,
                escape(", ".join(CHECKS.get(c, c) for c in checks)),
            )
        out.print(table)
    elif groups:
        table = list_table(
            Column("failed checks", wide=True),
            Column("sleds", justify="right"),
            Column("for example", wide=True),
            title="sleds by the checks they failed",
        )
        for g in groups:
            table.add_row(
                escape(", ".join(CHECKS.get(c, c) for c in g["checks"])),
                str(g["count"]),
                escape(", ".join(x.sled_name(s) for s in g["sample"])),
            )
        out.print(table)
