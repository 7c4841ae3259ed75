"""Each sled's reserved totals (``sled.reserved_*``), kept by triggers, always equal the sums
of its reservations and pinned local disks: whatever writes those rows, on both stores."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from skylight.clock import now
from skylight.placement import Rack
from skylight.store import Store, identity, migrate, sleds, totals
from skylight.store.schema import disk, project, sled, sled_reservation
from tests.conftest import GiB, instance_body


def _kept(store: Store) -> dict[str, Any]:
    with store.engine.connect() as conn:
        return totals.check(conn)


def test_totals_follow_every_write_of_reservations_and_disks(db_url: str) -> None:
    store = Store(db_url)
    migrate.upgrade(store.engine)
    t = now()
    store.tx_sync(
        lambda c: sleds.ensure_simulated(
            c, count=4, cpus=64, memory=512 * GiB, local_storage=2048 * GiB,
            cpu_family="amd_milan", rack_id="00000000-0000-7000-8000-000000000001",
        )
    )  # fmt: skip
    sled_ids = [v.id for v in store.tx_sync(sleds.views)]
    store.tx_sync(
        lambda c: identity.insert_silo(
            c, silo_id="s", name="s", description="", discoverable=True, quotas=(64, 2**40, 2**40)
        )
    )
    store.tx_sync(
        lambda c: c.execute(
            project.insert().values(id="p", silo_id="s", name="p", description="", time_created=t,
                                    time_modified=t)
        )
    )  # fmt: skip
    rng = random.Random(7)
    reservations: list[str] = []
    disks: list[str] = []
    for step in range(300):
        op = rng.choice(["reserve", "reserve", "settle", "release", "move",
                         "disk", "pin", "unpin", "resize", "delete_disk", "drop_disk"])  # fmt: skip

        def write(c: Any, op: str = op, step: int = step) -> None:
            if op == "reserve":
                reservations.append(f"r{step}")
                sleds.reserve(c, reservation_id=f"r{step}", sled_id=rng.choice(sled_ids),
                              instance_id=f"i{step}", cpus=rng.randint(1, 8),
                              memory=rng.randint(1, 16) * GiB,
                              local_storage=rng.choice([0, 0, 10 * GiB]))  # fmt: skip
            elif op == "settle" and reservations:
                sleds.settle_local_storage(c, rng.choice(reservations))
            elif op == "release" and reservations:
                sleds.release(c, reservations.pop(rng.randrange(len(reservations))))
            elif op == "move" and reservations:  # no code does this today; the trigger must
                c.execute(
                    sled_reservation.update()
                    .where(sled_reservation.c.id == rng.choice(reservations))
                    .values(sled_id=rng.choice(sled_ids), hardware_threads=rng.randint(1, 4))
                )
            elif op == "disk":
                disks.append(f"d{step}")
                c.execute(
                    disk.insert().values(
                        id=f"d{step}", project_id="p", name=f"d{step}", description="",
                        size=rng.randint(1, 64) * GiB, block_size=4096, disk_type="local",
                        state="detached", time_created=t, time_modified=t,
                        sled_id=rng.choice([None, rng.choice(sled_ids)]),
                    )
                )  # fmt: skip
            elif disks and op in ("pin", "unpin", "resize", "delete_disk"):
                values = {
                    "pin": {"sled_id": rng.choice(sled_ids)},
                    "unpin": {"sled_id": None},
                    "resize": {"size": rng.randint(1, 64) * GiB},
                    "delete_disk": {"time_deleted": now()},
                }[op]
                c.execute(disk.update().where(disk.c.id == rng.choice(disks)).values(**values))
            elif op == "drop_disk" and disks:
                c.execute(disk.delete().where(disk.c.id == disks.pop(rng.randrange(len(disks)))))

        store.tx_sync(write)
        assert _kept(store) == {}, f"after step {step} ({op})"
    # The rack placement reads as columns is the one built from the views, sled by sled,
    # whatever the sleds' policies and reachability.
    store.tx_sync(
        lambda c: c.execute(
            sled.update()
            .where(sled.c.id == sled_ids[0])
            .values(provision_policy="non_provisionable")
        )
    )
    store.tx_sync(
        lambda c: c.execute(sled.update().where(sled.c.id == sled_ids[1]).values(policy="expunged"))
    )
    store.tx_sync(
        lambda c: c.execute(
            sled.update().where(sled.c.id == sled_ids[2]).values(time_unreachable=now())
        )
    )
    columns, built = store.tx_sync(sleds.rack), Rack.of(store.tx_sync(sleds.views))
    names = ["in_service", "provisionable", "cpus", "memory", "local_storage", "free_cpus",
             "free_memory", "free_local_storage", "free_share", "family_code"]  # fmt: skip
    for name in names:
        assert np.array_equal(getattr(columns, name), getattr(built, name)), name
    assert (columns.ids, columns.smallest) == (built.ids, built.smallest)
    assert list(columns.provisionable) == [False, True, False, True]
    assert list(columns.in_service) == [True, False, True, True]
    # A rolled-back transaction leaves the totals as they were.
    before = store.tx_sync(sleds.views)
    try:
        store.tx_sync(lambda c: (sleds.release(c, reservations[0]), 1 / 0))
    except ZeroDivisionError:
        pass
    assert store.tx_sync(sleds.views) == before and _kept(store) == {}
    store.dispose()


def test_totals_after_instances_with_local_disks_start_stop_and_go(
    client: TestClient, project: str
) -> None:
    """Through the API: starts reserve (and hold local storage), the first start pins the
    disks, stops release, deletes free the disks; the kept totals match at every step and
    return to zero."""
    cp = client.app.state.cp  # type: ignore[attr-defined]
    p = {"project": project}
    for n in range(4):
        body = instance_body(f"vm{n}", 2, 4, start=False)
        body["disks"] = [{"type": "create", "name": f"scratch{n}", "description": "",
                          "size": 8 * GiB, "disk_backend": {"type": "local"}}]  # fmt: skip
        r = client.post("/v1/instances", params=p, json=body)
        assert r.status_code == 201, r.text
    for action in ("start", "stop", "start", "stop"):
        for n in range(4):
            r = client.post(f"/v1/instances/vm{n}/{action}", params=p)
            assert r.status_code == 202, r.text
        assert _kept(cp.store) == {}
    used = [(v.reserved_cpus, v.reserved_local_storage) for v in cp.store.tx_sync(sleds.views)]
    assert sum(c for c, _ in used) == 0 and sum(s for _, s in used) == 4 * 8 * GiB  # pinned
    for n in range(4):
        assert client.delete(f"/v1/instances/vm{n}", params=p).status_code == 204
        assert client.delete(f"/v1/disks/scratch{n}", params=p).status_code == 204
    assert _kept(cp.store) == {}
    assert all(v.reserved_local_storage == 0 for v in cp.store.tx_sync(sleds.views))
