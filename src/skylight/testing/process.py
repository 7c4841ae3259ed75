"""A child process of ours (server, sled agent): spawn, wait until ready, SIGKILL or stop."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx


class ChildProcess:
    """Base of ServerProcess and SledAgentProcess; the data directory survives restarts."""

    what = "process"

    def __init__(self, data_dir: Path, log_name: str) -> None:
        self.data_dir = data_dir
        self.log_path = data_dir / log_name
        self.proc: subprocess.Popen[bytes] | None = None
        # Extra environment for the next start (e.g. a crash point), cleared by the caller.
        self.env: dict[str, str] = {}

    def start(self, timeout: float = 30.0) -> None:
        raise NotImplementedError

    def _spawn(self, cmd: list[str], ready: Callable[[], bool], timeout: float) -> None:
        """Start ``cmd`` (output to the log) and wait until ``ready()`` answers True; HTTP
        errors from ``ready`` mean "not yet"."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env}
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.what} exited with {self.proc.returncode}: {self.log()}")
            try:
                if ready():
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.what} did not answer within {timeout}s: {self.log()}")

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

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        _t: type[BaseException] | None,
        _e: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.stop()
