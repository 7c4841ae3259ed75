"""What ``skylight serve`` takes before it touches anything: its port, and, on SQLite, its
data directory.

A second ``skylight serve`` (a second ``make run``) must fail at once, with one line that
says what is taken and which flag chooses another, before it migrates, bootstraps or
recovers anything in a store that a live replica is serving. Both claims are held by the
kernel for the life of the process, so a crash (even SIGKILL) releases them and a restart
is never refused by what a dead process left behind:

* the port: the listening socket is bound here and handed to uvicorn, so nothing can take
  the port between the check and the serving;
* the SQLite store: ``flock`` on ``DATA_DIR/serve.lock``. Replica heartbeats cannot do
  this job: the replica id comes from the data dir and the bind, so a second process with
  both the same would pass as the first one restarting.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from skylight.config import Settings

LOCK_NAME = "serve.lock"


class ClaimRefused(Exception):
    """What is taken, by whom if known, and the flag that chooses another: one line."""


@dataclass
class Claim:
    """The bound socket for uvicorn and, on SQLite, the open lock file. Both must stay
    referenced until the server ends: closing either gives the claim up."""

    socket: socket.socket
    lock_fd: int | None

    def release(self) -> None:
        self.socket.close()
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None


def claim(settings: Settings) -> Claim:
    """Bind the port, then lock the data dir of an SQLite store; refuse in one line."""
    sock = _bind(settings)
    try:
        lock_fd = _lock(settings.data_dir) if _is_sqlite(settings) else None
    except BaseException:
        sock.close()
        raise
    return Claim(sock, lock_fd)


def _is_sqlite(settings: Settings) -> bool:
    return make_url(settings.resolved_db_url()).get_backend_name() == "sqlite"


def _bind(settings: Settings) -> socket.socket:
    """The listening address, bound as uvicorn would bind it. It listens once the control
    plane has started (uvicorn's doing), so until then a client is refused at once rather
    than left waiting. A port another server listens on cannot be bound, SO_REUSEADDR or
    not; two servers starting at the same instant can both bind it, and the store's lock
    (or the later listen) stops the second."""
    host = settings.host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # As uvicorn and asyncio do: a restart may bind while old connections sit in TIME_WAIT.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, settings.port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ClaimRefused(
                f"{settings.bind} is already in use (another skylight serve?); "
                "choose another with --bind HOST:PORT"
            ) from None
        raise ClaimRefused(
            f"cannot listen on {settings.bind}: {exc.strerror or exc}; "
            "choose another with --bind HOST:PORT"
        ) from None
    sock.set_inheritable(False)
    return sock


def _lock(data_dir: Path) -> int:
    """Hold ``DATA_DIR/serve.lock`` exclusively, with this process's id in it (for the
    refusal of the next one)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise ClaimRefused(f"cannot lock {path}: {exc.strerror or exc}") from None
        holder = _holder(path)
        raise ClaimRefused(
            f"the SQLite store in {data_dir} is already served by a live skylight serve"
            f"{holder}; stop it, or choose another store with --data-dir DIR"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _holder(path: Path) -> str:
    try:
        pid = path.read_text().strip()
    except OSError:
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""
