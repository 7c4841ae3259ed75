"""Run ``skylight sled-agent --sim`` as a child process: start it, wait until it answers (and,
by default, until it has registered with the control plane), kill it. It is given the rack
secret of its control plane, as a real deployment would be; whoever talks to the agent
directly (faults, its VMMs) sends the control plane's credential (:attr:`auth`)."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

from skylight.rack_secret import bearer, load
from skylight.testing.process import ChildProcess
from skylight.testing.server import free_port
from skylight.wire import JsonObject


class SledAgentProcess(ChildProcess):
    """One simulated sled. The data directory, port and serial survive :meth:`kill` and
    :meth:`start`, so a restarted agent is the same sled."""

    what = "sled agent"

    def __init__(
        self,
        data_dir: Path,
        control_plane: str,
        *,
        rack_secret_file: Path,
        port: int | None = None,
        cpus: int = 16,
        memory_gib: int = 64,
        local_storage_gib: int = 512,
        cpu_family: str = "amd_milan",
        start_delay: float = 0.1,
        serial: str | None = None,
        args: list[str] | None = None,
        log_name: str = "sled-agent.log",
    ) -> None:
        super().__init__(data_dir, log_name)
        self.control_plane = control_plane
        self.rack_secret_file = rack_secret_file
        self.port = port or free_port()
        self.cpus = cpus
        self.memory_gib = memory_gib
        self.local_storage_gib = local_storage_gib
        self.cpu_family = cpu_family
        self.start_delay = start_delay
        self.serial = serial or f"test-sled-{self.port}"
        self.args = args or []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0, wait_registered: bool = True) -> None:
        cmd = [
            sys.executable,
            "-m",
            "skylight.cli.main",
            "sled-agent",
            "--sim",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--control-plane",
            self.control_plane,
            "--cpus",
            str(self.cpus),
            "--memory",
            str(self.memory_gib),
            "--local-storage",
            str(self.local_storage_gib),
            "--cpu-family",
            self.cpu_family,
            "--start-delay",
            str(self.start_delay),
            "--serial",
            self.serial,
            "--data-dir",
            str(self.data_dir),
            "--rack-secret-file",
            str(self.rack_secret_file),
            "--log-level",
            "warning",
            *self.args,
        ]

        def ready() -> bool:
            health = self.health()  # answers at all
            return not wait_registered or bool(health.get("registered"))

        self._spawn(cmd, ready, timeout)

    @property
    def auth(self) -> dict[str, str]:
        """The header that lets a request through to the agent: the control plane's
        credential, derived from the rack secret."""
        return bearer(load(self.rack_secret_file).control_plane_credential())

    def health(self) -> JsonObject:
        r = httpx.get(f"{self.url}/health", timeout=1.0, headers=self.auth)
        r.raise_for_status()
        return dict(r.json())

    @property
    def sled_id(self) -> str | None:
        value = self.health().get("sled_id")
        return None if value is None else str(value)
