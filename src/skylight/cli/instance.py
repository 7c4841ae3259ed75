"""``skylight instance``: create, list, show, start, stop, reboot, resize, update, delete,
events, watch."""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import httpx
import typer
from rich.markup import escape

from skylight.cli.client import EXIT_FAILED, EXIT_PERMANENT, EXIT_TRANSIENT, call, client, err
from skylight.cli.common import (
    JSON,
    PROJECT,
    SHORT_TIME,
    STATE_STYLE,
    URL,
    by_latest,
    details,
    follow,
    gib,
    internal_text,
    list_or_print,
    out,
    parse_memory,
    print_event_line,
    print_events,
    print_json,
    styled,
    watch_header,
    when,
)
from skylight.cli.instance_settings import (
    CpuPlatform,
    InstanceSettings,
    RestartPolicy,
    platform_value,
    policy_value,
)
from skylight.cli.tables import Column, list_table
from skylight.wire import JsonObject

app = typer.Typer(no_args_is_help=True, help="Instances: create, run, stop, and see why.")

ASYNC = {"prefer": "respond-async"}
PROJECT_OPT = typer.Option(
    None,
    "--project",
    "-p",
    metavar="PROJECT",
    help="project name or id (not needed when INSTANCE is an id)",
)
NAME = typer.Argument(..., metavar="INSTANCE", help="instance name or id")
WAIT_TIMEOUT = typer.Option(600.0, "--timeout", min=0, help="seconds --wait waits at most")
MEMORY_HELP = "GiB, or a size with its unit: 16GiB, 512MiB"
MEMORY = typer.Option(..., "--memory", parser=parse_memory, metavar="SIZE", help=MEMORY_HELP)
HISTORY = 10  # events ``watch`` shows from before it started


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
        details(_story_rows(reason), title="why it is not where you want it")
        internal = reason.get("internal")
        if internal:  # the server sends it to operators (fleet viewers) only
            out.print()
            rows = [(escape(str(k)), escape(internal_text(v))) for k, v in internal.items()]
            details(rows, title="operator detail")


def _story_rows(reason: JsonObject) -> list[tuple[str, Any]]:
    """The status's story as the API tells it (since, what happened, what Skylight is doing,
    what to do): nothing re-derived here, so the CLI and the console say the same."""
    auto = reason.get("auto_restart") or {}
    retrying = auto.get("state") in ("scheduled", "restarting")
    if not reason.get("transient"):
        kind = "[red]permanent[/]: needs a change by you"
    elif retrying:
        kind = "[yellow]transient[/]: Skylight retries"
    else:
        kind = "[yellow]transient[/]: a later start may work"
    rows: list[tuple[str, Any]] = [
        ("code", f"[bold]{escape(str(reason.get('code', '')))}[/]"),
        ("kind", kind),
        ("since", when(reason.get("since") or reason.get("time"))),
        ("what happened", escape(str(reason.get("happened") or reason.get("message", "")))),
    ]
    if reason.get("doing"):
        rows.append(("skylight is doing", escape(str(reason["doing"]))))
    if auto:
        attempts = auto.get("attempts", 0)
        text = f"{auto.get('state')}, {attempts} attempt{'s' if attempts != 1 else ''} so far"
        if auto.get("next_attempt"):
            text += f", next at {when(auto['next_attempt'])}"
        rows.append(("auto-restart", escape(text)))
    if reason.get("action"):
        rows.append(("what to do", escape(str(reason["action"]))))
    return rows


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
    name: str = typer.Argument(..., metavar="NAME"),
    project: str = PROJECT,
    cpus: int = typer.Option(..., "--cpus", min=1, help="vCPUs"),
    memory: int = MEMORY,
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
        "memory": memory,
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
    # At 80 columns: the intended state only where it differs (in words that wrap), and the
    # short creation time (the full one is in `instance show`).
    table = list_table(
        "name",
        Column("state", wide=True),
        Column("vCPUs", justify="right"),
        Column("GiB", justify="right"),
        "status reason",
        "created",
    )
    for i in items:
        reason = i.get("status_reason") or {}
        state = _state(i)
        intended = str(i.get("intended_state", ""))
        if intended and intended != i.get("run_state"):
            state += f" (wants {escape(intended)})"
        table.add_row(
            escape(i["name"]),
            state,
            str(i["ncpus"]),
            gib(i["memory"]),
            escape(str(reason.get("code", ""))),
            when(i.get("time_created"), SHORT_TIME),
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
def resize(
    instance: str = NAME,
    project: str | None = PROJECT_OPT,
    ncpus: int | None = typer.Option(None, "--cpus", "--ncpus", min=1, help="vCPUs"),
    memory: int | None = typer.Option(
        None, "--memory", parser=parse_memory, metavar="SIZE", help=MEMORY_HELP
    ),
    start_after: bool = typer.Option(
        False, "--start", help="then start it at once and show how that start ended"
    ),
    timeout: float = WAIT_TIMEOUT,
    url: str = URL,
    as_json: bool = JSON,
) -> None:
    """Change INSTANCE's vCPUs or memory (it must be stopped). With --start a start follows
    at once, and exits 3 or 4 as a failed start does."""
    if ncpus is None and memory is None:
        raise typer.BadParameter("give --ncpus, --memory or both")

    def change(now: InstanceSettings) -> InstanceSettings:
        return replace(
            now,
            ncpus=now.ncpus if ncpus is None else ncpus,
            memory=now.memory if memory is None else memory,
        )

    _update(instance, project, change, url, as_json, start_timeout=timeout if start_after else None)


@app.command()
def update(
    instance: str = NAME,
    project: str | None = PROJECT_OPT,
    auto_restart_policy: RestartPolicy | None = typer.Option(
        None, "--auto-restart-policy", help="default: the control plane decides"
    ),
    cpu_platform: CpuPlatform | None = typer.Option(
        None, "--cpu-platform", help="any: whatever CPU the sled has"
    ),
    jumbo_frames: bool | None = typer.Option(
        None, "--jumbo-frames/--no-jumbo-frames", help="enable or disable jumbo frames"
    ),
    boot_disk: str | None = typer.Option(None, "--boot-disk", help="disk name or id"),
    url: str = URL,
    as_json: bool = JSON,
) -> None:
    """Change INSTANCE's settings; those not given stay as they are (to change its size, see
    resize)."""
    if auto_restart_policy is cpu_platform is jumbo_frames is boot_disk is None:
        raise typer.BadParameter("nothing to change: give at least one option")

    def change(now: InstanceSettings) -> InstanceSettings:
        return replace(
            now,
            auto_restart_policy=now.auto_restart_policy
            if auto_restart_policy is None
            else policy_value(auto_restart_policy),
            cpu_platform=now.cpu_platform if cpu_platform is None else platform_value(cpu_platform),
            enable_jumbo_frames=now.enable_jumbo_frames if jumbo_frames is None else jumbo_frames,
            boot_disk=now.boot_disk if boot_disk is None else boot_disk,
        )

    _update(instance, project, change, url, as_json, start_timeout=None)


def _update(
    instance: str,
    project: str | None,
    change: Callable[[InstanceSettings], InstanceSettings],
    url: str,
    as_json: bool,
    *,
    start_timeout: float | None,
) -> None:
    """Read the instance, send all its settings with ``change`` applied, show the result;
    with a ``start_timeout``, then start it and follow that start as ``start --wait`` does
    (with --json only the instance as the start left it is printed: one document)."""
    path = f"/v1/instances/{instance}"
    params = _params(project)
    with client(url) as http:
        now: JsonObject = call(http, "GET", path, params=params)
        wanted = change(InstanceSettings.of(now))
        updated: JsonObject = call(http, "PUT", path, params=params, json=wanted.body())
        if start_timeout is None:
            _print(updated, as_json)
            return
        if not as_json:
            show_instance(updated)
            out.print()
        prior = (updated.get("status_reason") or {}).get("event_id")
        call(http, "POST", f"{path}/start", params=params, headers=ASYNC)
        wait_running(http, instance, project, prior, start_timeout, as_json=as_json)


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
    print_events(body["items"], title=f"events of {instance}, newest first")
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
    """Show INSTANCE's last events, then follow new ones live (Ctrl-C to stop)."""
    params = _params(project)
    shown: set[tuple[str, int]] = set()  # (id, count): what the history already printed

    def emit(event: JsonObject) -> None:
        if as_json:
            typer.echo(json.dumps(event, separators=(",", ":")))
        else:
            print_event_line(event)

    def handle(event: JsonObject) -> int | None:
        if (str(event.get("id")), int(event.get("count") or 1)) not in shown:
            emit(event)
        return settled(event.get("run_state"), event.get("reason")) if until_settled else None

    def on_connect(http: httpx.Client) -> int | None:
        # Connected: from here on no event is missed. First what happened before (an event
        # committed since the stream began comes in the stream too: it is printed once).
        if not shown:
            history = _history(http, instance, params)
            if not as_json:
                out.print(watch_header())
            for event in history:
                emit(event)
                shown.add((str(event.get("id")), int(event.get("count") or 1)))
        # Has it settled before we were watching?
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
            on_connect=on_connect,
            what=f"the events of {instance}",
        )
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
    raise typer.Exit(code)


def _history(http: httpx.Client, instance: str, params: JsonObject) -> list[JsonObject]:
    """The instance's last ``HISTORY`` events, oldest first (by their last occurrence)."""
    page: JsonObject = call(
        http, "GET", f"/v1/instances/{instance}/events", params=params | {"limit": HISTORY}
    )
    return by_latest(page["items"], newest_first=False)
