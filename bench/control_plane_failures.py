"""When the control plane fails: how long from SIGTERM, and from the end of a database
outage, until every start in flight has its outcome (PostgreSQL, HTTP sled agents, 1 and 2
replicas). The method is described in docs/benchmarks.md; ``--write`` replaces its marked
blocks ``failures:*``.

* SIGTERM: starts are made through replica A, A is stopped at once. With a peer, A hands its
  sagas over as each reaches its next step; alone, A is started again and resumes them.
* Outage: the database refuses connections (``ALLOW_CONNECTIONS false``, its backends
  terminated) for ``--outage`` seconds; the replicas stay up. Timed from the outage's end.

    python bench/control_plane_failures.py [--write] [--instances N] [--boot S] [--outage S]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import httpx

from harness import (
    Agents,
    Fleet,
    finish,
    loadavg,
    machine_rows,
    parser,
    pg_exec,
    pg_version,
    setup_tables,
    table,
    wait_running,
)
from skylight.testing import ServerProcess

ARGS = ["--no-sim", "--adoption-timeout", "60", "--heartbeat-interval", "0.5"]
KINDS = {"sigterm": "SIGTERM → every outcome", "outage": "outage end → every outcome"}


async def _all_running(
    url: str, headers: dict[str, str], names: list[str], deadline: float
) -> list[str]:
    """Why each instance that did not run did not (empty: all ran)."""
    async with httpx.AsyncClient(timeout=10, headers=headers) as client:
        results = await asyncio.gather(
            *(wait_running(client, url, n, "demo", deadline, 0.05) for n in names)
        )
    return [f"{n}: {why}" for n, (ok, why) in zip(names, results, strict=True) if not ok]


def _fail(admin: str, name: str, kind: str, replicas: list[ServerProcess], outage: float) -> float:
    """Stop replica 0 (restarting it if it is alone), or take the database away for
    ``outage`` seconds; when the clock starts."""
    if kind == "sigterm":
        t0 = time.monotonic()
        replicas[0].stop()
        if len(replicas) == 1:
            replicas[0].start()
        return t0
    pg_exec(admin, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    pg_exec(
        admin, f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
    )
    time.sleep(outage)
    pg_exec(admin, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    return time.monotonic()


def _run(kind: str, replicas: int, args: argparse.Namespace) -> float:
    agents = Agents(2, cpus=64, memory_gib=256, boot=args.boot)
    with (
        tempfile.TemporaryDirectory() as tmp,
        Fleet(Path(tmp), args.pg_admin, replicas, ARGS, agents) as fleet,
    ):
        api = fleet.replicas[0].client(timeout=30)
        api.post("/v1/projects", json={"name": "demo", "description": ""})
        names = [f"i{i}" for i in range(args.instances)]
        for name in names:
            body = {
                "name": name,
                "description": "",
                "hostname": name,
                "ncpus": 1,
                "memory": 1 << 30,
            }
            r = api.post(
                "/v1/instances",
                params={"project": "demo"},
                json=body,
                headers={"Prefer": "respond-async"},
            )
            assert r.status_code == 201, r.text
        t0 = _fail(args.pg_admin, fleet.dbname, kind, fleet.replicas, args.outage)
        deadline = time.monotonic() + 120
        failed = asyncio.run(_all_running(fleet.urls[-1], fleet.headers, names, deadline))
        if failed:
            raise AssertionError(f"{kind}, {replicas} replicas: {failed[:3]}")
        return time.monotonic() - t0


def main() -> None:
    ap = parser(__doc__, stores=None)
    ap.add_argument("--instances", type=int, default=20)
    ap.add_argument("--boot", type=float, default=1.0)
    ap.add_argument("--outage", type=float, default=8.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", choices=tuple(KINDS), default=None)
    args = ap.parse_args()
    loads, rows = [loadavg()], []
    for kind in [args.only] if args.only else KINDS:
        for replicas in (1, 2):
            figures = sorted(_run(kind, replicas, args) for _ in range(args.runs))
            rows.append([KINDS[kind], replicas, " / ".join(f"{f:.2f}" for f in figures)])
            print(" | ".join(map(str, rows[-1])), flush=True)
    loads.append(loadavg())
    settings = [
        ("instances in flight", str(args.instances)),
        ("VMM boot (simulated sled agents)", f"{args.boot} s"),
        ("outage", f"{args.outage} s"),
        ("heartbeat interval", "0.5 s"),
        ("sled agents", "2 HTTP processes, 64 vCPUs each"),
    ]
    command = " ".join(["python", "bench/control_plane_failures.py", *sys.argv[1:]])
    blocks = {
        "failures:command": [
            f"`{command}` ({args.instances} starts in flight, VMM boot {args.boot} s, outage "
            f"{args.outage} s; seconds, {args.runs} runs, sorted)."
        ],
        "failures:results": table(["what", "replicas", "seconds (runs, sorted)"], "lll", rows),
        "failures:setup": setup_tables(
            machine_rows(postgres=pg_version(args.pg_admin), loads=loads), settings
        ),
    }
    finish(blocks, args.write)


if __name__ == "__main__":
    main()
