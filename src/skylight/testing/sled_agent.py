"""Run ``skylight sled-agent --sim`` as a child process: start it, wait until it answers (and,
by default, until it has registered with the control plane), kill it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from skylight.testing.server import free_port


class SledAgentProcess:
    """One simulated sled. The data directory, port and serial survive :meth:`kill` and
    :meth:`start`, so a restarted agent is the same sled."""

    def __init__(
        self,
        data_dir: Path,
        control_plane: str,
        *,
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
        self.data_dir = data_dir
        self.control_plane = control_plane
        self.port = port or free_port()
        self.cpus = cpus
        self.memory_gib = memory_gib
        self.local_storage_gib = local_storage_gib
        self.cpu_family = cpu_family
        self.start_delay = start_delay
        self.serial = serial or f"test-sled-{self.port}"
        self.args = args or []
        self.log_path = data_dir / log_name
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0, wait_registered: bool = True) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
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
            "--log-level",
            "warning",
            *self.args,
        ]
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy()
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sled agent exited with {self.proc.returncode}: {self.log()}")
            try:
                health = self.health()
                if not wait_registered or health.get("registered"):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"sled agent did not answer within {timeout}s: {self.log()}")

    def health(self) -> dict[str, Any]:
        r = httpx.get(f"{self.url}/health", timeout=1.0)
        r.raise_for_status()
        return dict(r.json())

    @property
    def sled_id(self) -> str | None:
        value = self.health().get("sled_id")
        return None if value is None else str(value)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no cleanup, as in a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def log(self) -> str:
        try:
            return self.log_path.read_text()[-4000:]
        except OSError:
            return ""

    def __enter__(self) -> SledAgentProcess:
        self.start()
        return self

    def __exit__(
        self,
        _t: type[BaseException] | None,
        _e: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.stop()
