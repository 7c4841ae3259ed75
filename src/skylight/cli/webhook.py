"""``skylight webhook``: alert receivers (operators): who is told of which events, and
whether they were."""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape

from skylight.cli.client import call, client
from skylight.cli.common import (
    JSON,
    URL,
    details,
    list_or_print,
    out,
    print_json,
    styled,
    when,
)
from skylight.cli.tables import Column, list_table
from skylight.wire import JsonObject

app = typer.Typer(no_args_is_help=True, help="Webhooks (operators): events sent to receivers.")

NAME = typer.Argument(..., metavar="NAME", help="receiver name or id")
STATE_STYLE = {"delivered": "green", "pending": "yellow", "failed": "red"}


def _receiver_rows(body: JsonObject) -> list[tuple[str, Any]]:
    kind: JsonObject = body.get("kind") or {}
    return [
        ("id", body["id"]),
        ("endpoint", escape(str(kind.get("endpoint", body.get("endpoint", ""))))),
        ("subscriptions", escape(", ".join(body["subscriptions"]) or "(none)")),
        ("secrets", ", ".join(s["id"] for s in kind.get("secrets", body.get("secrets")) or [])),
        ("description", escape(body["description"])),
        ("created", when(body["time_created"])),
    ]


@app.command()
def create(
    name: str = typer.Argument(..., metavar="NAME"),
    endpoint: str = typer.Option(..., "--endpoint", "-e", help="http(s) URL to POST to"),
    secret: list[str] = typer.Option(..., "--secret", "-s", help="signing secret (repeatable)"),
    subscribe: list[str] = typer.Option(
        [], "--subscribe", help="alert class or glob, e.g. instance.start_failed, instance.*"
    ),
    description: str = typer.Option("", "--description", "-d"),
    url: str = URL,
    as_json: bool = JSON,
) -> None:
    """Create webhook receiver NAME."""
    body = {
        "name": name,
        "description": description,
        "endpoint": endpoint,
        "secrets": secret,
        "subscriptions": subscribe,
    }
    with client(url) as http:
        created = call(http, "POST", "/v1/webhook-receivers", json=body)
    if as_json:
        print_json(created)
    else:
        details(_receiver_rows(created), title=f"created receiver {created['name']}")


@app.command("list")
def list_(url: str = URL, as_json: bool = JSON) -> None:
    """Every alert receiver."""
    items = list_or_print(url, "/v1/alert-receivers", as_json=as_json)
    if items is None:
        return
    # Receivers are named by name in every command; their ids are in `webhook show` and
    # --json (at 80 columns an id leaves no room for the endpoint).
    table = list_table("name", Column("subscriptions", wide=True), Column("endpoint", wide=True))
    for r in items:
        table.add_row(
            escape(r["name"]),
            escape("\n".join(r["subscriptions"])),  # one a line: a glob is one word
            escape(r["kind"]["endpoint"]),
        )
    out.print(table)


@app.command()
def show(name: str = NAME, url: str = URL, as_json: bool = JSON) -> None:
    """Show receiver NAME."""
    with client(url) as http:
        body = call(http, "GET", f"/v1/alert-receivers/{name}")
    if as_json:
        print_json(body)
    else:
        details(_receiver_rows(body), title=body["name"])


@app.command()
def delete(name: str = NAME, url: str = URL) -> None:
    """Delete receiver NAME (and its deliveries)."""
    with client(url) as http:
        call(http, "DELETE", f"/v1/alert-receivers/{name}")
    out.print(f"deleted receiver [bold]{escape(name)}[/]")


@app.command()
def subscribe(
    name: str = NAME,
    pattern: str = typer.Argument(..., metavar="PATTERN", help="class or glob"),
    url: str = URL,
) -> None:
    """Send receiver NAME the events PATTERN matches from now on."""
    with client(url) as http:
        call(
            http,
            "POST",
            f"/v1/alert-receivers/{name}/subscriptions",
            json={"subscription": pattern},
        )
    out.print(f"[bold]{escape(name)}[/] now gets {escape(pattern)}")


@app.command()
def unsubscribe(
    name: str = NAME, pattern: str = typer.Argument(..., metavar="PATTERN"), url: str = URL
) -> None:
    """Stop sending receiver NAME the events of subscription PATTERN."""
    with client(url) as http:
        call(http, "DELETE", f"/v1/alert-receivers/{name}/subscriptions/{pattern}")
    out.print(f"[bold]{escape(name)}[/] no longer gets {escape(pattern)}")


@app.command()
def deliveries(
    name: str = NAME,
    failed: bool = typer.Option(False, "--failed", help="only those that gave up"),
    pending: bool = typer.Option(False, "--pending", help="only those still being tried"),
    url: str = URL,
    as_json: bool = JSON,
) -> None:
    """What was sent to receiver NAME, and what came of each try."""
    params: JsonObject = {}
    if failed:
        params["failed"] = True
    if pending:
        params["pending"] = True
    items = list_or_print(url, f"/v1/alert-receivers/{name}/deliveries", params, as_json=as_json)
    if items is None:
        return
    # Ids and every attempt are in --json; the table is what a person scans.
    table = list_table(
        "started",
        "class",
        "state",
        Column("tries", justify="right"),
        Column("last result", wide=True),
    )
    for d in items:
        tries = d["attempts"]["webhook"]
        last = tries[-1] if tries else None
        result = ""
        if last is not None:
            result = last["result"]
            if last.get("response"):
                result += f" ({last['response']['status']})"
        table.add_row(
            when(d["time_started"], "%m-%d %H:%M:%S"),
            d["alert_class"],
            styled(d["state"], STATE_STYLE.get(d["state"], "")),
            str(len(tries)),
            result,
        )
    out.print(table)


@app.command()
def probe(
    name: str = NAME,
    resend: bool = typer.Option(False, "--resend", help="then resend what never got through"),
    url: str = URL,
    as_json: bool = JSON,
) -> None:
    """Send receiver NAME a probe now; exits non-zero if it did not get through."""
    with client(url) as http:
        body = call(http, "POST", f"/v1/alert-receivers/{name}/probe", params={"resend": resend})
    if as_json:
        print_json(body)
    else:
        attempt = body["probe"]["attempts"]["webhook"][-1]
        status = f" ({attempt['response']['status']})" if attempt.get("response") else ""
        out.print(
            f"probe {styled(body['probe']['state'], STATE_STYLE[body['probe']['state']])}: "
            f"{attempt['result']}{status}"
        )
        if body.get("resends_started") is not None:
            out.print(f"resending {body['resends_started']} alerts")
    if body["probe"]["state"] != "delivered":
        raise typer.Exit(1)


@app.command()
def resend(
    name: str = NAME,
    alert_id: str = typer.Argument(..., metavar="ALERT_ID", help="the alert's (event's) id"),
    url: str = URL,
) -> None:
    """Send alert ALERT_ID to receiver NAME again."""
    with client(url) as http:
        body = call(http, "POST", f"/v1/alerts/{alert_id}/resend", params={"receiver": name})
    out.print(f"resending as delivery {body['delivery_id']}")


@app.command("secret-add")
def secret_add(
    name: str = NAME,
    secret: str = typer.Argument(..., metavar="SECRET", help="the new signing secret"),
    url: str = URL,
) -> None:
    """Add a signing secret to NAME (deliveries are signed with every secret)."""
    with client(url) as http:
        body = call(
            http, "POST", "/v1/webhook-secrets", params={"receiver": name}, json={"secret": secret}
        )
    out.print(f"added secret {body['id']}")


@app.command("secret-delete")
def secret_delete(
    secret_id: str = typer.Argument(..., metavar="SECRET_ID", help="the secret's id"),
    url: str = URL,
) -> None:
    """Retire a signing secret (not a receiver's last one)."""
    with client(url) as http:
        call(http, "DELETE", f"/v1/webhook-secrets/{secret_id}")
    out.print(f"deleted secret {secret_id}")
