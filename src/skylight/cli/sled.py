"""``skylight sled``: the rack's sleds, their capacity, and whether they take new instances."""

from __future__ import annotations

import enum

import typer
from rich.markup import escape

from skylight.cli.client import call, client
from skylight.cli.common import (
    JSON,
    URL,
    details,
    gib,
    list_or_print,
    out,
    pages,
    print_json,
    styled,
    when,
)
from skylight.cli.tables import Column, list_table
from skylight.wire import JsonObject

app = typer.Typer(no_args_is_help=True, help="Sleds (operators): capacity and provisioning.")

SLEDS = "/v1/system/hardware/sleds"
SLED_ID = typer.Argument(..., metavar="SLED_ID", help="sled id (a UUID)")


class ProvisionPolicy(enum.StrEnum):
    provisionable = "provisionable"
    non_provisionable = "non_provisionable"


def _policy(s: JsonObject) -> tuple[str, str]:
    policy = s.get("policy") or {}
    return str(policy.get("kind", "")), str(policy.get("provision_policy", ""))


def _threads(s: JsonObject) -> str:
    return f"{s['reserved_hardware_threads']}/{s['usable_hardware_threads']}"


def _memory(s: JsonObject) -> str:
    return f"{gib(s['reserved_memory'])}/{gib(s['usable_physical_ram'])}"


@app.command("list")
def list_(url: str = URL, as_json: bool = JSON) -> None:
    """Every sled, with what is reserved on it."""
    items = list_or_print(url, SLEDS, as_json=as_json)
    if items is None:
        return
    # At 80 columns the whole id (what set-policy takes) leaves room for no more: the slot
    # and serial are in `sled show`.
    table = list_table("id", "state", Column("policy", wide=True), "threads", "GiB")
    for s in items:
        kind, provision = _policy(s)
        policy = [styled(kind, "" if kind == "in_service" else "red")]
        if provision:
            policy.append(styled(provision, "" if provision == "provisionable" else "yellow"))
        table.add_row(s["id"], escape(str(s["state"])), ", ".join(policy), _threads(s), _memory(s))
    out.print(table)


@app.command()
def show(sled_id: str = SLED_ID, url: str = URL, as_json: bool = JSON) -> None:
    """Show one sled and the instances on it."""
    with client(url) as http:
        s: JsonObject = call(http, "GET", f"{SLEDS}/{sled_id}")
        if as_json:
            print_json(s)
            return
        on_it = list(pages(http, f"{SLEDS}/{sled_id}/instances"))
    kind, provision = _policy(s)
    board = s.get("baseboard") or {}
    details(
        [
            ("slot", s.get("slot")),
            ("state", escape(str(s["state"]))),
            ("policy", escape(kind)),
            ("provision policy", escape(provision or "-")),
            ("threads used/total", _threads(s)),
            ("memory used/total", f"{_memory(s)} GiB"),
            (
                "local storage used/total",
                f"{gib(s['reserved_local_storage'])}/{gib(s['local_storage'])} GiB",
            ),
            ("cpu family", escape(str(s.get("cpu_family", "")))),
            (
                "baseboard",
                escape(
                    f"{board.get('part')} rev {board.get('revision')} serial {board.get('serial')}"
                ),
            ),
            ("rack", s.get("rack_id")),
            ("created", when(s.get("time_created"))),
        ],
        title=f"sled {s['id']}",
    )
    if on_it:
        table = list_table(
            "instance",
            "project",
            "state",
            Column("vCPUs", justify="right"),
            Column("GiB", justify="right"),
            title="instances on it",
        )
        for i in on_it:
            table.add_row(
                escape(i["name"]),
                escape(i["project_name"]),
                escape(str(i["state"])),
                str(i["ncpus"]),
                gib(i["memory"]),
            )
        out.print(table)
    else:
        out.print("[dim]no instances on it[/]")


@app.command("set-policy")
def set_policy(
    sled_id: str = SLED_ID,
    state: ProvisionPolicy = typer.Argument(
        ..., metavar="POLICY", help="provisionable or non_provisionable"
    ),
    url: str = URL,
    as_json: bool = JSON,
) -> None:
    """Let a sled take new instances (provisionable) or not (non_provisionable)."""
    with client(url) as http:
        body = call(http, "PUT", f"{SLEDS}/{sled_id}/provision-policy", json={"state": state.value})
    if as_json:
        print_json(body)
    else:
        out.print(f"sled {sled_id}: {body['old_state']} → [bold]{body['new_state']}[/]")
