"""``skylight sled-agent --sim``: one simulated sled as its own process."""

from __future__ import annotations

from pathlib import Path

import typer
import uvicorn

from skylight.cli.common import log_to_stderr


def run(
    sim: bool = typer.Option(
        False, "--sim", help="run a simulated sled (the only kind there is for now)"
    ),
    bind: str = typer.Option(
        "127.0.0.1:12230", envvar="SKYLIGHT_SLED_AGENT_BIND", help="HOST:PORT"
    ),
    control_plane: str = typer.Option(
        "http://127.0.0.1:12220",
        envvar="SKYLIGHT_CONTROL_PLANE",
        help="the control plane's URL (several replicas: comma-separated)",
    ),
    cpus: int = typer.Option(64, min=1, max=65535, help="hardware threads"),
    memory: int = typer.Option(512, min=1, help="GiB"),
    local_storage: int = typer.Option(2048, min=0, help="GiB"),
    cpu_family: str = typer.Option("amd_milan", help="e.g. amd_milan, amd_turin"),
    start_delay: float = typer.Option(0.5, min=0, help="seconds from creating to running"),
    serial: str | None = typer.Option(
        None, help="the sled's serial (default: derived from --bind; keep it to stay the same sled)"
    ),
    data_dir: Path | None = typer.Option(
        None, help="where the sled keeps its VMMs and faults (default: ./.skylight-sled-PORT)"
    ),
    url: str | None = typer.Option(
        None, help="the URL the control plane uses to reach this agent (default: http://BIND)"
    ),
    rack_id: str | None = typer.Option(None, help="the rack's id (default: the simulated rack)"),
    rack_secret_file: Path | None = typer.Option(
        None,
        envvar="SKYLIGHT_RACK_SECRET_FILE",
        help="the rack secret the control plane holds (its --rack-secret-file)",
    ),
    control_plane_data_dir: Path | None = typer.Option(
        None,
        envvar="SKYLIGHT_DATA_DIR",
        help="the data dir of a control plane on this machine: use the rack secret it "
        "generated there, when no --rack-secret-file is given",
    ),
    log_level: str = typer.Option("info"),
) -> None:
    """Run one simulated sled that registers with the control plane and takes its calls."""
    from skylight.rack_secret import RackSecretError, default_path, load
    from skylight.sled_agent import AgentConfig, create_agent_app, default_serial

    if not sim:
        raise typer.BadParameter(
            "only simulated sleds exist for now: pass --sim", param_hint="--sim"
        )
    host, _, port = bind.rpartition(":")
    if not host or not port.isdigit():
        raise typer.BadParameter("--bind takes HOST:PORT", param_hint="--bind")
    planes = [u.strip().rstrip("/") for u in control_plane.split(",") if u.strip()]
    if not planes or not all(u.startswith(("http://", "https://")) for u in planes):
        raise typer.BadParameter(
            "--control-plane takes http(s):// URLs", param_hint="--control-plane"
        )
    if rack_secret_file is None and control_plane_data_dir is None:
        typer.echo(
            "skylight sled-agent: no rack secret: pass --rack-secret-file FILE (the control "
            "plane's), or --control-plane-data-dir DIR of a control plane on this machine",
            err=True,
        )
        raise typer.Exit(2)
    secret_path = rack_secret_file or default_path(control_plane_data_dir or Path())
    try:
        secret = load(secret_path)  # an agent never makes one: it must be the control plane's
    except RackSecretError as exc:
        typer.echo(f"skylight sled-agent: {exc}", err=True)
        raise typer.Exit(2) from None
    advertised = url or f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"
    config = AgentConfig(
        url=advertised.rstrip("/"),
        control_planes=planes,
        serial=serial or default_serial(bind),
        data_dir=data_dir or Path(f".skylight-sled-{port}"),
        rack_secret=secret,
        cpus=cpus,
        memory_gib=memory,
        local_storage_gib=local_storage,
        cpu_family=cpu_family,
        start_delay=start_delay,
        rack_id=rack_id,
    )
    log_to_stderr(log_level)
    typer.echo(
        f"Skylight sled agent {config.serial} on {config.url} "
        f"(control plane: {', '.join(planes)}; state: {config.data_dir})"
    )
    uvicorn.run(
        create_agent_app(config),
        host=host,
        port=int(port),
        log_level=log_level,
        timeout_graceful_shutdown=2,
    )
