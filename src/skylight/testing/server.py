"""Run ``skylight serve`` as a child process: start it, wait until it answers, kill it."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any

import httpx

from skylight import login_flow
from skylight.rack_secret import default_path
from skylight.testing.process import ChildProcess


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# The recovery admin's password of every test server (SPEC: Bootstrap).
ADMIN_PASSWORD = "test-recovery-password"


class ServerProcess(ChildProcess):
    """One server. ``args`` are extra ``skylight serve`` flags (e.g. ``--sim-start-delay``).

    The same data directory and database survive :meth:`kill` and :meth:`start`, which is
    what crash tests need. Callers talk to it as the recovery admin: :attr:`headers` carry
    an access token got by logging in, as a user would. ``rack_secret_file`` is the rack
    secret it shares with sled agents (and with the other replicas of one store); None: the
    one it generates in its data dir.
    """

    what = "server"

    def __init__(
        self,
        data_dir: Path,
        *,
        db: str | None = None,
        port: int | None = None,
        args: list[str] | None = None,
        log_name: str = "server.log",
        rack_secret_file: Path | None = None,
    ) -> None:
        super().__init__(data_dir, log_name)
        self.db = db
        self._rack_secret_file = rack_secret_file
        self.port = port or free_port()
        self.args = args or []
        self._token: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def rack_secret_file(self) -> Path:
        """The rack secret sled agents of this server are given (it exists once started)."""
        return self._rack_secret_file or default_path(self.data_dir)

    def start(self, timeout: float = 30.0) -> None:
        cmd = [
            sys.executable,
            "-m",
            "skylight.cli.main",
            "serve",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--data-dir",
            str(self.data_dir),
            "--log-level",
            "warning",
            *self.args,
        ]
        if self.db:
            cmd += ["--db", self.db]
        self.env.setdefault("SKYLIGHT_RECOVERY_PASSWORD", ADMIN_PASSWORD)
        if self._rack_secret_file is not None:
            cmd += ["--rack-secret-file", str(self._rack_secret_file)]
        self._spawn(
            cmd,
            lambda: httpx.get(f"{self.url}/v1/ping", timeout=1.0).status_code == 200,
            timeout,
        )

    @property
    def token(self) -> str:
        """The recovery admin's access token (logged in once; it works on every replica)."""
        if self._token is None:
            with httpx.Client(base_url=self.url, timeout=30.0) as http:
                self._token = login_flow.with_password(http, "recovery", "admin", ADMIN_PASSWORD)
        return self._token

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}

    def client(self, **kwargs: Any) -> httpx.Client:
        """An API client signed in as the recovery admin."""
        return httpx.Client(base_url=self.url, headers=self.headers, **kwargs)
