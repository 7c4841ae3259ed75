"""When the control plane fails: how long from SIGTERM, and from the end of a database
outage, until every start in flight has its outcome. PostgreSQL, HTTP sled agents, 1 and 2
replicas.

* SIGTERM: starts are made through replica A, A is stopped at once. With a peer, A hands its
  sagas over as each reaches its next step; alone, A is started again and resumes them. The
  adoption timeout is 60 s, so a figure under it is the hand-over's, not adoption's.
* Outage: starts are made, the database refuses connections (``ALLOW_CONNECTIONS false``
  and its backends terminated) for ``--outage`` seconds, then takes them again; the replicas
  stay up. Measured from the end of the outage.

    python bench/control_plane_failures.py [--instances N] [--boot SECONDS] [--outage SECONDS]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import (
    load_row,
    machine_rows,
    pg_exec,
    pg_version,
    scratch_database,
    setup_tables,
    wait_running,
    write_section,
)
from skylight.testing import ServerProcess, SledAgentProcess

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
SECTION = "## When the control plane fails: SIGTERM and database outages"
ARGS = ["--no-sim", "--adoption-timeout", "60", "--heartbeat-interval", "0.5"]


def _body(name: str) -> dict[str, object]:
    return {"name": name, "description": "", "hostname": name, "ncpus": 1, "memory": 1 << 30}


async def _all_running(url: str, names: list[str], deadline: float) -> list[str]:
    """Why each instance that did not run did not (empty: all ran)."""
    async with httpx.AsyncClient(timeout=10) as client:
        results = await asyncio.gather(
            *(wait_running(client, url, n, "demo", deadline, 0.05) for n in names)
        )
    return [f"{n}: {why}" for n, (ok, why) in zip(names, results, strict=True) if not ok]


def _run(kind: str, replicas: int, n: int, boot: float, outage: float) -> float:
    with tempfile.TemporaryDirectory() as tmp, scratch_database(ADMIN) as db:
        root = Path(tmp)
        servers = [ServerProcess(root / f"r{i}", db=db, args=ARGS) for i in range(replicas)]
        for s in servers:
            s.start()
        urls = ",".join(s.url for s in servers)
        agents = [
            SledAgentProcess(root / f"s{i}", urls, cpus=64, memory_gib=256, start_delay=boot)
            for i in range(2)
        ]
        try:
            for a in agents:
                a.start()
            api = httpx.Client(base_url=servers[0].url, timeout=30)
            while len(api.get("/v1/system/hardware/sleds").json()["items"]) < 2:
                time.sleep(0.1)
            api.post("/v1/projects", json={"name": "demo", "description": ""})
            names = [f"i{i}" for i in range(n)]
            for name in names:
                r = api.post(
                    "/v1/instances",
                    params={"project": "demo"},
                    json=_body(name),
                    headers={"Prefer": "respond-async"},
                )
                assert r.status_code == 201, r.text
            watch = servers[-1]
            if kind == "sigterm":
                t0 = time.monotonic()
                proc = servers[0].proc
                assert proc is not None
                proc.terminate()
                proc.wait(60)
                servers[0].proc = None
                if replicas == 1:
                    servers[0].start()
            else:
                dbname = db.rsplit("/", 1)[1]
                pg_exec(ADMIN, f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS false')
                pg_exec(
                    ADMIN,
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    f"WHERE datname = '{dbname}'",
                )
                time.sleep(outage)
                pg_exec(ADMIN, f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS true')
                t0 = time.monotonic()
            failed = asyncio.run(_all_running(watch.url, names, time.monotonic() + 120))
            if failed:
                name = failed[0].split(":")[0]
                status = api.get(
                    f"/v1/instances/{name}",
                    params={"project": "demo"},
                    headers={"X-Skylight-Operator": "true"},
                ).json()["status_reason"]
                raise AssertionError(f"{kind}, {replicas} replicas: {failed[:3]}; {status}")
            return time.monotonic() - t0
        finally:
            for a in agents:
                a.kill()
            for s in servers:
                s.kill()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--instances", type=int, default=20)
    ap.add_argument("--boot", type=float, default=1.0)
    ap.add_argument("--outage", type=float, default=8.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", choices=("sigterm", "outage"), default=None)
    args = ap.parse_args()
    loads = [f"{__import__('os').getloadavg()[0]:.2f}"]
    rows = []
    for kind, label in (
        ("sigterm", "SIGTERM → every outcome"),
        ("outage", "outage end → every outcome"),
    ):
        if args.only not in (None, kind):
            continue
        for replicas in (1, 2):
            figures = sorted(
                _run(kind, replicas, args.instances, args.boot, args.outage)
                for _ in range(args.runs)
            )
            cell = " / ".join(f"{f:.2f}" for f in figures)
            rows.append(f"| {label} | {replicas} | {cell} |")
            print(rows[-1], flush=True)
    loads.append(f"{__import__('os').getloadavg()[0]:.2f}")
    text = [
        SECTION,
        "",
        f"`python bench/control_plane_failures.py` ({args.instances} starts in flight, "
        f"VMM boot {args.boot} s, outage {args.outage} s; seconds, {args.runs} runs, "
        "sorted). With one replica, SIGTERM is followed by its restart, which resumes its "
        "sagas; with two, the stopping replica hands them to its peer (the adoption timeout "
        "is 60 s, so none of these figures is adoption's).",
        "",
        "| what | replicas | seconds (runs, sorted) |",
        "| --- | --- | --- |",
        *rows,
        "",
        *setup_tables(
            machine_rows(postgres=pg_version(ADMIN), extra=[load_row(loads)]),
            [
                ("instances in flight", str(args.instances)),
                ("VMM boot (simulated sled agents)", f"{args.boot} s"),
                ("outage", f"{args.outage} s"),
                ("heartbeat interval", "0.5 s"),
                ("sled agents", "2 HTTP processes, 64 vCPUs each"),
            ],
        ),
    ]
    write_section(SECTION, "\n".join(text))


if __name__ == "__main__":
    main()
