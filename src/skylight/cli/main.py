"""skylight: run the control plane (serve, sled-agent) and drive it (every other command is a
client of the API at --url or SKYLIGHT_URL)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer
import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from skylight.cli import events, instance, login, placement, project, serve_claim, sled, webhook
from skylight.cli.common import log_to_stderr
from skylight.cli.guarded_http import uvicorn_options
from skylight.cli.sled_agent import run as sled_agent_run
from skylight.config import Settings, SimSettings

# Plain help: Rich's panels label every flag <bool>; plain help reads as well piped.
app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__, rich_markup_mode=None)
app.add_typer(placement.app, name="placement")
app.add_typer(project.app, name="project")
app.add_typer(instance.app, name="instance")
app.add_typer(sled.app, name="sled")
app.add_typer(events.app, name="events")
app.add_typer(webhook.app, name="webhook")
app.command("sled-agent")(sled_agent_run)
app.command("login")(login.login)
app.command("logout")(login.logout)


@app.callback()
def main() -> None:
    """Skylight: a rack control plane that never lets an instance fail in the dark."""


@app.command()
def serve(
    bind: str = typer.Option("127.0.0.1:12220", envvar="SKYLIGHT_BIND", help="HOST:PORT"),
    db: str | None = typer.Option(
        None, envvar="SKYLIGHT_DB", help="sqlite:///PATH or postgresql://... (default: SQLite)"
    ),
    data_dir: Path = typer.Option(Path(".skylight"), envvar="SKYLIGHT_DATA_DIR"),
    recovery_silo: str = typer.Option("recovery", help="the silo the first start creates"),
    recovery_user: str = typer.Option("admin", help="its first user, fleet and silo admin"),
    recovery_password_file: Path | None = typer.Option(
        None,
        exists=True,
        dir_okay=False,
        readable=True,
        help="that user's password (or SKYLIGHT_RECOVERY_PASSWORD; with neither, one is "
        "generated into DATA_DIR/recovery-password)",
    ),
    rack_secret_file: Path | None = typer.Option(
        None,
        envvar="SKYLIGHT_RACK_SECRET_FILE",
        help="the secret shared with sled agents and the other replicas "
        "(default: DATA_DIR/rack-secret, generated on the first start)",
    ),
    sim_sleds: int = typer.Option(8, min=0, max=100_000),
    sim_sled_cpus: int = typer.Option(64, min=1),
    sim_sled_memory: int = typer.Option(512, min=1, help="GiB"),
    sim_sled_local_storage: int = typer.Option(2048, min=0, help="GiB"),
    sim_start_delay: float = typer.Option(0.5, min=0, help="seconds from creating to running"),
    no_sim: bool = typer.Option(False, "--no-sim", help="no in-process simulated rack"),
    start_wait: float = typer.Option(30.0, min=0, help="seconds a start waits for its saga"),
    auto_restart_cooldown: float = typer.Option(300.0, min=0),
    auto_restart_interval: float = typer.Option(
        5.0, min=0.01, help="seconds between looks for failed instances to restart"
    ),
    auto_restart_backoff: float = typer.Option(
        10.0, min=0, help="seconds before retrying a failed automatic restart (doubles, to 600)"
    ),
    sled_call_timeout: float = typer.Option(
        10.0, min=0.05, help="seconds a sled agent has to answer before the call fails"
    ),
    sled_failure_timeout: float = typer.Option(
        15.0, min=0.1, help="seconds an HTTP sled agent may be silent before its sled has failed"
    ),
    adoption_timeout: float = typer.Option(
        10.0, min=0.1, help="seconds a replica may be silent before its sagas are adopted"
    ),
    heartbeat_interval: float = typer.Option(1.0, min=0.05, help="seconds between heartbeats"),
    audit_interval: float = typer.Option(
        10.0, min=0.05, help="seconds between looks for instances left in the dark"
    ),
    audit_after: float = typer.Option(
        120.0, min=0.1, help="seconds without progress before the auditor explains an instance"
    ),
    store_wait: float = typer.Option(
        120.0, min=0, help="seconds a starting replica waits for an unreachable store"
    ),
    drain_timeout: float = typer.Option(
        10.0, min=0, help="seconds a stopping replica lets running saga actions finish"
    ),
    stream_heartbeat: float = typer.Option(
        15.0, min=0.05, help="seconds of silence before an event stream sends a heartbeat"
    ),
    event_retention_days: int = typer.Option(30, min=1),
    placement_rack_max_age: float = typer.Option(
        1.0, min=0, help="seconds a replica decides placements on the rack it last read"
    ),
    webhook_attempts: int = typer.Option(6, min=1, help="tries per webhook delivery"),
    webhook_backoff: float = typer.Option(
        10.0, min=0.01, help="seconds before a failed webhook delivery's second try (then 6x)"
    ),
    webhook_timeout: float = typer.Option(
        10.0, min=0.1, help="seconds a webhook receiver has to answer"
    ),
    password_hash_cost: str = typer.Option(
        "3,65536", help="argon2id TIME,MEMORY_KIB for new password hashes (lower only to test)"
    ),
    webhook_allow_cidr: list[str] = typer.Option(
        [],
        "--webhook-allow-cidr",
        help="a network webhooks may reach although it is loopback, private, link-local ... "
        "(repeatable; cloud metadata addresses stay refused)",
    ),
    request_read_timeout: float = typer.Option(
        10.0, min=0.1, help="seconds a request (headers and body) has to arrive whole"
    ),
    max_streams: int = typer.Option(512, min=1, help="event streams open at once, in all"),
    max_streams_per_user: int = typer.Option(
        32, min=1, help="event streams one user may hold open at once"
    ),
    max_connections: int = typer.Option(
        1000, min=1, help="open connections past which new ones are answered 503"
    ),
    log_level: str = typer.Option("info"),
) -> None:
    """Run the API server with its control plane (and, by default, a simulated rack)."""
    from skylight.api.app import create_app
    from skylight.webhooks.destination import parse_cidr

    if ":" not in bind or not bind.rsplit(":", 1)[1].isdigit():
        raise typer.BadParameter("--bind takes HOST:PORT")
    cost = password_hash_cost.split(",")
    if len(cost) != 2 or not all(c.isdigit() and int(c) >= 1 for c in cost) or int(cost[1]) < 8:
        raise typer.BadParameter("--password-hash-cost takes TIME,MEMORY_KIB (at least 1,8)")
    password = os.environ.get("SKYLIGHT_RECOVERY_PASSWORD") or None
    if recovery_password_file is not None:
        password = recovery_password_file.read_text().strip()
    try:
        allowed = tuple(parse_cidr(c) for c in webhook_allow_cidr)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--webhook-allow-cidr") from None
    settings = Settings(
        bind=bind,
        db_url=db,
        data_dir=data_dir,
        recovery_silo=recovery_silo,
        recovery_user=recovery_user,
        recovery_password=password,
        password_hash_cost=(int(cost[0]), int(cost[1])),
        rack_secret_file=rack_secret_file,
        start_wait=start_wait,
        auto_restart_cooldown=auto_restart_cooldown,
        event_retention_days=event_retention_days,
        stream_heartbeat=stream_heartbeat,
        max_streams=max_streams,
        max_streams_per_user=max_streams_per_user,
        adoption_timeout=adoption_timeout,
        heartbeat_interval=heartbeat_interval,
        drain_timeout=drain_timeout,
        store_wait=store_wait,
        audit_interval=audit_interval,
        audit_after=audit_after,
        auto_restart_interval=auto_restart_interval,
        auto_restart_backoff=auto_restart_backoff,
        auto_restart_backoff_max=max(auto_restart_backoff, Settings.auto_restart_backoff_max),
        sled_call_timeout=sled_call_timeout,
        sled_failure_timeout=sled_failure_timeout,
        placement_rack_max_age=placement_rack_max_age,
        webhook_attempts=webhook_attempts,
        webhook_backoff=webhook_backoff,
        webhook_timeout=webhook_timeout,
        webhook_allow_cidrs=allowed,
        sim=SimSettings(
            enabled=not no_sim,
            sleds=sim_sleds,
            sled_cpus=sim_sled_cpus,
            sled_memory_gib=sim_sled_memory,
            sled_local_storage_gib=sim_sled_local_storage,
            start_delay=sim_start_delay,
        ),
    )
    try:  # before anything touches the store: a second serve says why, in one line
        taken = serve_claim.claim(settings)
    except serve_claim.ClaimRefused as exc:
        typer.echo(f"skylight: {exc}", err=True)
        raise typer.Exit(3) from None
    log_to_stderr(log_level)
    typer.echo(f"Skylight on http://{bind} (store: {settings.shown_db_url()})")
    app_ = create_app(settings)
    config = uvicorn.Config(
        _PlainStartupRefusal(app_),
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        timeout_graceful_shutdown=5,
        **uvicorn_options(request_read_timeout, max_connections),
    )
    server = _Server(config, app_)
    try:
        server.run(sockets=[taken.socket])
    finally:
        taken.release()
    if not server.started:
        raise typer.Exit(3)  # as uvicorn's own command: the application did not start


class _Server(uvicorn.Server):
    """uvicorn's server, which also ends event streams as soon as shutdown begins (open
    streams would otherwise hold the graceful shutdown up to its timeout)."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._asgi = app

    def handle_exit(self, sig: int, frame: Any) -> None:
        cp = getattr(self._asgi.state, "cp", None)
        if cp is not None:
            cp.feed.close()
            cp.request_stop()  # hand sagas over while uvicorn closes its connections
        super().handle_exit(sig, frame)


class _PlainStartupRefusal:
    """An operator told why the replica may not start gets that one line, not a traceback
    of the framework's lifespan machinery (any other start-up failure keeps its traceback)."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self._app(scope, receive, send)
            return
        from skylight.controlplane import StartupRefused  # the client commands need none of it

        held: list[Message] = []

        async def hold_failure(message: Message) -> None:
            if message["type"] == "lifespan.startup.failed":
                held.append(message)  # sent below once we know why
            else:
                await send(message)

        try:
            await self._app(scope, receive, hold_failure)
        except StartupRefused as exc:
            await send({"type": "lifespan.startup.failed", "message": f"not starting: {exc}"})
        except BaseException:
            for message in held:
                await send(message)
            raise


if __name__ == "__main__":
    app()
