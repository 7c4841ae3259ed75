"""``skylight instance``: create, list, show, start, stop, reboot, delete, events, watch."""

from __future__ import annotations

import enum
import json
import time
from typing import Any

import httpx
import typer
from rich.markup import escape

from skylight.cli.client import EXIT_FAILED, EXIT_PERMANENT, EXIT_TRANSIENT, call, client, err
from skylight.cli.common import (
    JSON,
    PROJECT,
    STATE_STYLE,
    URL,
    GiB,
    MiB,
    details,
    event_line,
    event_table,
    follow,
    gib,
    list_or_print,
    list_table,
    out,
    print_json,
    reason_rows,
    styled,
    when,
)
from skylight.wire import JsonObject

app = typer.Typer(no_args_is_help=True, help="Instances: create, run, stop, and see why.")

ASYNC = {"prefer": "respond-async"}
PROJECT_OPT = typer.Option(
    None, "--project", "-p", help="project name or id (not needed when INSTANCE is an id)"
)
NAME = typer.Argument(..., help="instance name or id")
WAIT_TIMEOUT = typer.Option(600.0, "--timeout", min=0, help="seconds --wait waits at most")


class AutoRestart(enum.StrEnum):
    never = "never"
    best_effort = "best_effort"


class Severity(enum.StrEnum):
    info = "info"
    warning = "warning"
    error = "error"


def _params(project: str | None) -> JsonObject:
    return {"project": project} if project else {}


# -- showing instances ------------------------------------------------------------------------


def _state(body: JsonObject) -> str:
    state = str(body.get("run_state", ""))
    return styled(state, STATE_STYLE.get(state, "yellow"))


def show_instance(body: JsonObject) -> None:
    policy = body.get("auto_restart_policy") or "default"
    restart = f"{policy} ({'enabled' if body.get('auto_restart_enabled') else 'disabled'})"
    if body.get("auto_restart_cooldown_expiration"):
        restart += f", cooldown until {when(body['auto_restart_cooldown_expiration'])}"
    rows: list[tuple[str, Any]] = [
        ("id", body["id"]),
        ("run_state", _state(body)),
        ("intended_state", escape(str(body.get("intended_state", "")))),
        ("size", f"{body['ncpus']} vCPUs, {gib(body['memory'])} GiB"),
        ("hostname", escape(body.get("hostname", ""))),
        ("description", escape(body.get("description", ""))),
        ("auto restart", escape(restart)),
        ("created", when(body.get("time_created"))),
        ("state since", when(body.get("time_run_state_updated"))),
    ]
    details(rows, title=body["name"])
    reason = body.get("status_reason")
    if reason:
        out.print()
        details(reason_rows(reason), title="why it is not where you want it")


def report_reason(reason: JsonObject, state: str) -> int:
    """Print why the instance is not running; return the exit code it means."""
    transient = bool(reason.get("transient"))
    kind = "may pass by itself" if transient else "needs a change by you"
    err.print(f"[bold red]{escape(state)}[/]: {escape(str(reason.get('code')))} ({kind})")
    err.print(escape(str(reason.get("message", ""))))
    if reason.get("action"):
        err.print(f"[bold]what to do:[/] {escape(str(reason['action']))}")
    return EXIT_TRANSIENT if transient else EXIT_PERMANENT


def _failed(body: JsonObject, prior_event_id: str | None) -> JsonObject | None:
    """The reason a start ended without the instance running, or None while it goes on.

    A reason older than this start (``prior_event_id``) counts only once the instance has come
    to rest (its intended state is no longer ``running``), since a start does not clear it.
    """
    reason = body.get("status_reason")
    if not reason or body.get("run_state") not in ("stopped", "failed", "destroyed"):
        return None
    if body.get("intended_state") != "running" or reason.get("event_id") != prior_event_id:
        return dict(reason)
    return None


def wait_running(
    http: httpx.Client,
    instance: str,
    project: str | None,
    prior_event_id: str | None,
    timeout: float,
    *,
    as_json: bool = False,
) -> None:
    """Poll the instance until it runs (exit 0) or a reason says why not (exit 3 or 4)."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    code: int | None = None
    with err.status(f"starting {escape(instance)}…"):
        while True:
            body: JsonObject = call(
                http, "GET", f"/v1/instances/{instance}", params=_params(project)
            )
            if body["run_state"] == "running":
                break
            reason = _failed(body, prior_event_id)
            if reason is not None:
                code = report_reason(reason, body["run_state"])
                break
            if body["run_state"] == "destroyed":
                err.print(f"[bold red]{escape(instance)} was deleted while starting[/]")
                code = EXIT_FAILED
                break
            if time.monotonic() >= deadline:
                where = f" -p {project}" if project else ""
                err.print(
                    f"[yellow]still {escape(body['run_state'])} after {timeout:g}s[/]; the "
                    f"outcome will be in `skylight instance events {escape(instance + where)}`"
                )
                code = EXIT_FAILED
                break
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)
    if as_json:
        print_json(body)
    elif code is None:
        out.print(f"[green]running[/] {escape(body['name'])}")
    if code is not None:
        raise typer.Exit(code)


def _exit_if_unexplained(body: JsonObject) -> None:
    """After a start that did not wait: a start that failed still exits 3 or 4."""
    reason = body.get("status_reason")
    if reason and body.get("run_state") in ("stopped", "failed"):
        raise typer.Exit(report_reason(reason, body["run_state"]))


# -- commands ---------------------------------------------------------------------------------


@app.command()
def create(
    name: str = typer.Argument(...),
    project: str = PROJECT,
    cpus: int = typer.Option(..., "--cpus", min=1, help="vCPUs"),
    memory: float = typer.Option(..., "--memory", min=0, help="GiB"),
    hostname: str | None = typer.Option(None, help="default: NAME"),
    description: str = typer.Option("", "--description", "-d"),
    no_start: bool = typer.Option(False, "--no-start", help="create it stopped"),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="wait until it runs or fails"),
    auto_restart: AutoRestart | None = typer.Option(None, "--auto-restart"),
    timeout: float = WAIT_TIMEOUT,
    url: str = URL,
    as_json: bool = JSON,
) -> None:
    """Create instance NAME in PROJECT and (unless --no-start) start it."""
    body: JsonObject = {
        "name": name,
        "description": description,
        "hostname": hostname or name,
        "ncpus": cpus,
        "memory": round(memory * GiB / MiB) * MiB,
        "start": not no_start,
    }
    if auto_restart is not None:
        body["auto_restart_policy"] = auto_restart.value
    waiting = wait and not no_start
    with client(url) as http:
        created: JsonObject = call(
            http,
            "POST",
            "/v1/instances",
            params={"project": project},
            json=body,
            headers=ASYNC if waiting else {},
        )
        if waiting:
            if not as_json:
                out.print(f"created instance [bold]{escape(created['name'])}[/] ({created['id']})")
            wait_running(http, name, project, None, timeout, as_json=as_json)
            return
    if as_json:
        print_json(created)
    else:
        show_instance(created)
    if not no_start:
        _exit_if_unexplained(created)


@app.command("list")
def list_(project: str = PROJECT, url: str = URL, as_json: bool = JSON) -> None:
    """Every instance of PROJECT."""
    items = list_or_print(url, "/v1/instances", {"project": project}, as_json=as_json)
    if items is None:
        return
    table = list_table("name", "run_state", "intended", "vCPUs", "GiB", "status reason", "created")
    for i in items:
        reason = i.get("status_reason") or {}
        table.add_row(
            escape(i["name"]),
            _state(i),
            escape(str(i.get("intended_state", ""))),
            str(i["ncpus"]),
            gib(i["memory"]),
            escape(str(reason.get("code", ""))),
            when(i.get("time_created")),
        )
    out.print(table)


@app.command()
def show(
    instance: str = NAME, project: str | None = PROJECT_OPT, url: str = URL, as_json: bool = JSON
) -> None:
    """Show INSTANCE: its state and, when it is not where you want it, why."""
    with client(url) as http:
        body = call(http, "GET", f"/v1/instances/{instance}", params=_params(project))
    _print(body, as_json)


@app.command()
def start(
    instance: str = NAME,
    project: str | None = PROJECT_OPT,
    wait: bool = typer.Option(
        False, "--wait", help="answer at once, then follow the start until it runs or fails"
    ),
    timeout: float = WAIT_TIMEOUT,
    url: str = URL,
    as_json: bool = JSON,
) -> None:
    """Start INSTANCE. Exits 3 if it failed for a reason that may pass, 4 if not."""
    path = f"/v1/instances/{instance}"
    params = _params(project)
    with client(url) as http:
        if wait:
            before: JsonObject = call(http, "GET", path, params=params)
            prior = (before.get("status_reason") or {}).get("event_id")
            call(http, "POST", f"{path}/start", params=params, headers=ASYNC)
            wait_running(http, instance, project, prior, timeout, as_json=as_json)
            return
        body: JsonObject = call(http, "POST", f"{path}/start", params=params)
    _print(body, as_json)
    _exit_if_unexplained(body)


def _print(body: JsonObject, as_json: bool) -> None:
    if as_json:
        print_json(body)
    else:
        show_instance(body)


def _action(verb: str, instance: str, project: str | None, url: str, as_json: bool) -> None:
    with client(url) as http:
        body = call(http, "POST", f"/v1/instances/{instance}/{verb}", params=_params(project))
    _print(body, as_json)


@app.command()
def stop(
    instance: str = NAME, project: str | None = PROJECT_OPT, url: str = URL, as_json: bool = JSON
) -> None:
    """Stop INSTANCE."""
    _action("stop", instance, project, url, as_json)


@app.command()
def reboot(
    instance: str = NAME, project: str | None = PROJECT_OPT, url: str = URL, as_json: bool = JSON
) -> None:
    """Reboot INSTANCE (it must be running)."""
    _action("reboot", instance, project, url, as_json)


@app.command()
def delete(instance: str = NAME, project: str | None = PROJECT_OPT, url: str = URL) -> None:
    """Delete INSTANCE (it must be stopped)."""
    with client(url) as http:
        call(http, "DELETE", f"/v1/instances/{instance}", params=_params(project))
    out.print(f"deleted instance [bold]{escape(instance)}[/]")


@app.command()
def events(
    instance: str = NAME,
    project: str | None = PROJECT_OPT,
    limit: int = typer.Option(20, min=1, max=10_000),
    severity: Severity | None = typer.Option(None),
    kind: str | None = typer.Option(None, help="e.g. instance.start_failed"),
    url: str = URL,
    as_json: bool = JSON,
) -> None:
    """INSTANCE's events, newest first."""
    params = _params(project) | {"limit": limit}
    if severity is not None:
        params["severity"] = severity.value
    if kind:
        params["kind"] = kind
    with client(url) as http:
        body: JsonObject = call(http, "GET", f"/v1/instances/{instance}/events", params=params)
    if as_json:
        print_json(body)
        return
    out.print(event_table(body["items"], title=f"events of {instance}, newest first"))
    if body.get("next_page"):
        out.print(f"[dim]more with --limit {limit * 2}[/]")


def settled(run_state: str | None, reason: JsonObject | None) -> int | None:
    """``--until-settled``: 0 once running, 3 or 4 once stopped or failed with a reason."""
    if run_state == "running":
        return 0
    if reason and run_state in ("stopped", "failed"):
        return EXIT_TRANSIENT if reason.get("transient") else EXIT_PERMANENT
    return None


@app.command()
def watch(
    instance: str = NAME,
    project: str | None = PROJECT_OPT,
    until_settled: bool = typer.Option(
        False,
        "--until-settled",
        help="exit once it runs (0), or is stopped or failed with a reason (3 or 4); "
        "at once if it already is",
    ),
    url: str = URL,
    as_json: bool = JSON,
) -> None:
    """Follow INSTANCE's events live, as they happen (Ctrl-C to stop)."""
    params = _params(project)

    def handle(event: JsonObject) -> int | None:
        if as_json:
            typer.echo(json.dumps(event, separators=(",", ":")))
        else:
            out.print(event_line(event))
        return settled(event.get("run_state"), event.get("reason")) if until_settled else None

    def check_now(http: httpx.Client) -> int | None:
        # Connected: from here on no event is missed. Has it settled before we were watching?
        if not until_settled:
            return None
        body: JsonObject = call(http, "GET", f"/v1/instances/{instance}", params=params)
        code = settled(body["run_state"], body.get("status_reason"))
        if code is not None:
            if as_json:
                typer.echo(json.dumps(body, separators=(",", ":")))
            else:
                out.print(f"{escape(body['name'])} is already {_state(body)}")
                if body.get("status_reason"):
                    report_reason(body["status_reason"], body["run_state"])
        return code

    try:
        code = follow(
            url,
            f"/v1/instances/{instance}/events/stream",
            params,
            handle,
            on_connect=check_now,
            what=f"the events of {instance}",
        )
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
    raise typer.Exit(code)
