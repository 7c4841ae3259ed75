"""What every benchmark shares: replacing its own section of docs/benchmarks.md, and the
machine and settings tables that say where and how its figures were measured."""

from __future__ import annotations

import asyncio
import os
import platform
import re
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"

Row = tuple[str, str]


def write_section(section: str, text: str, doc_path: Path = DOC) -> None:
    """Replace the section headed ``section`` (up to the next ``## ``) with ``text``, or
    append it; the other sections stay exactly as they are."""
    if doc_path.exists():
        doc = doc_path.read_text()
        pattern = re.compile(rf"^{re.escape(section)}[ \t]*\n.*?(?=^## |\Z)", re.M | re.S)
        if pattern.search(doc):
            doc = pattern.sub(lambda _m: text.rstrip("\n") + "\n\n", doc, count=1)
        else:
            doc = doc.rstrip("\n") + "\n\n" + text
    else:
        doc = "# Benchmarks\n\nFigures measured on one machine, with how to reproduce them.\n\n"
        doc += text
    doc_path.parent.mkdir(parents=True, exist_ok=True)
    doc_path.write_text(doc.rstrip("\n") + "\n")


def kv_table(rows: Iterable[Row]) -> list[str]:
    """A two-column markdown table without a header, one line a (key, value) row: the shape
    of every "Machine:" and "Settings:" table in docs/benchmarks.md."""
    return ["| | |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in rows)]


def setup_tables(machine: Iterable[Row], settings: Iterable[Row]) -> list[str]:
    """The "Machine:" and "Settings:" tables that end every section, so that a figure can be
    read against where and how it was measured."""
    return ["Machine:", "", *kv_table(machine), "", "Settings:", "", *kv_table(settings), ""]


def git(*argv: str) -> str:
    """What ``git argv`` prints in the checkout, stripped; "" if git cannot say."""
    try:
        out = subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True, timeout=5)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def git_rev() -> str:
    """The commit measured, marked if tracked files differ from it (the figures may then
    belong to no commit)."""
    rev = git("rev-parse", "--short", "HEAD")
    if not rev:
        return "?"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return f"{rev}{' (with uncommitted changes)' if dirty else ''}"


def pg_version(admin: str) -> str:
    """The server's version, or why it could not be asked (a report still gets written)."""
    import psycopg

    try:
        with psycopg.connect(admin, connect_timeout=5) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            return str(row[0]) if row else "?"
    except Exception as exc:  # the machine's business
        return f"unavailable ({type(exc).__name__})"


def _cpu_and_memory() -> tuple[str, str]:
    """The CPU model and the total memory, from /proc (where there is one)."""
    cpu, mem = platform.processor() or "?", "?"
    try:
        m = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        if m:
            cpu = m.group(1).strip()
        m = re.search(r"^MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
        if m:
            mem = f"{int(m.group(1)) / 1024**2:.1f} GiB"
    except OSError:
        pass
    return cpu, mem


def machine_rows(
    libraries: Sequence[Row] = (),
    *,
    sqlite: bool = True,
    drivers: Sequence[Row] = (),
    postgres: str | None = None,
    skylight: str | None = None,
    extra: Sequence[Row] = (),
) -> list[Row]:
    """The "Machine:" rows, in the order every section has them: the host and Python,
    ``libraries``, SQLite (unless ``sqlite`` is false), then if ``postgres`` (what the server
    on this machine is) is given ``drivers`` and PostgreSQL, Skylight (``git_rev()`` unless
    ``skylight`` says otherwise), then ``extra``."""
    cpu, mem = _cpu_and_memory()
    rows = [
        ("CPUs (`nproc`)", str(os.cpu_count())),
        ("CPU", cpu),
        ("memory", mem),
        ("OS", f"{platform.system()} {platform.release()}"),
        ("Python", platform.python_version()),
        *libraries,
    ]
    if sqlite:
        rows.append(("SQLite", sqlite3.sqlite_version))
    if postgres is not None:
        rows += [*drivers, ("PostgreSQL", f"{postgres} (same machine, 127.0.0.1)")]
    rows.append(("Skylight", git_rev() if skylight is None else skylight))
    return [*rows, *extra]


def load_row(loads: Sequence[str], shared: str = "its CPUs") -> Row:
    """The 1-minute load average at the start and the end of a run: other work on the
    machine (sharing ``shared`` with the bench) moves the figures."""
    return (
        "load average (1 min), start / end",
        " / ".join(loads) + f" (other work on the machine shares {shared} with the bench)",
    )


async def wait_running(
    client: httpx.AsyncClient,
    url: str,
    name: str,
    project: str,
    deadline: float,
    interval: float,
) -> tuple[bool, str]:
    """Poll ``{url}/v1/instances/{name}`` until it is running; (ok, why not). Bounded by
    ``deadline`` (``time.monotonic``); a status reason or a resting state ends it early."""
    last = "?"
    while time.monotonic() < deadline:
        r = await client.get(f"{url}/v1/instances/{name}", params={"project": project})
        if r.status_code == 200:
            body = r.json()
            last = body["run_state"]
            if last == "running":
                return True, ""
            if body.get("status_reason") or last in ("failed", "stopped", "destroyed"):
                return False, f"{last}: {body.get('status_reason')}"
        else:
            last = f"HTTP {r.status_code}"
        await asyncio.sleep(interval)
    return False, f"not running before the deadline (last seen: {last})"


def pg_exec(admin: str, sql: str) -> None:
    """Run one statement on the PostgreSQL server ``admin`` points at, outside a transaction
    (CREATE / DROP DATABASE)."""
    import psycopg

    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


@contextmanager
def scratch_database(admin: str, prefix: str = "skylight_bench") -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one run (its URL), dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    pg_exec(admin, f'CREATE DATABASE "{name}"')
    try:
        yield f"{admin.rsplit('/', 1)[0]}/{name}"
    finally:
        pg_exec(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
