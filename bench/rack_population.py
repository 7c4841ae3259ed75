"""The rack of ``bench/placement.py``: S sleds with N placed instances, affinity and
anti-affinity groups, and the pending instances whose placement is timed (requests that fit
and requests that fit no sled's free capacity), built from a seed; and the same population
written to a store with the driver's bulk paths (executemany; COPY on PostgreSQL)."""

from __future__ import annotations

import argparse
import math
import random
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from harness import GiB, bulk_write, stored_time
from skylight.placement import GroupRule, Placement, Rack, Request, SledView, place
from skylight.store.engine import Store

IntArray = np.ndarray  # int64 arrays
BoolArray = np.ndarray  # bool arrays

FAMILIES = ("amd_milan", "amd_turin")
TURIN_SHARE = 0.4  # share of sleds with the second CPU family
EXPUNGED_SHARE = 0.01  # sleds out of service for good (no instances)
MAINTENANCE_SHARE = 0.02  # sleds in service but non-provisionable (instances still run)
FILL = (0.60, 0.85)  # each sled's vCPU and memory fill are drawn from this range
MAX_DENSITY = 0.9  # a sled is scaled up when it would need more than this share of threads
LOCAL_DISK_SHARE = 0.10  # placed instances with one local disk pinned to their sled
PLACED_DISK_GIB = (64, 128, 256)
# The groups: members per group (inclusive ranges) and how many sleds they run on.
AFFINITY_FAIL_MEMBERS = (2, 8)  # all on one sled
AFFINITY_ALLOW_MEMBERS = (2, 16)  # on 1-4 sleds
AFFINITY_ALLOW_SLEDS = (1, 4)
ANTI_MEMBERS = (2, 32)  # `fail`: one per sled; `allow`: sleds drawn with replacement
# Requests of the success workload.
REQ_CPUS = (1, 2, 4, 8, 16)
REQ_CPUS_P = (0.3, 0.3, 0.2, 0.15, 0.05)
REQ_GIB_PER_CPU = (2, 4, 8)
REQ_PLATFORM_SHARE = 0.15  # requests that ask for a CPU platform
REQ_LOCAL_SHARE = 0.10  # requests with an unallocated local disk
REQ_LOCAL_GIB = (32, 64, 128)
REQ_GROUPS_P = (0.4, 0.4, 0.2)  # belongs to 0, 1, 2 groups


# -- the population ----------------------------------------------------------------------------


@dataclass
class Group:
    kind: str  # affinity | anti_affinity
    index: int  # within its kind: its id and name sort in this order
    policy: str  # allow | fail
    members: IntArray  # placed instances (indices)
    pending: int = 0  # pending instances (the ones being placed) that are members

    @property
    def name(self) -> str:
        return f"{'aff' if self.kind == 'affinity' else 'anti'}-{self.index:04d}"

    @property
    def id(self) -> str:
        prefix = "a" if self.kind == "affinity" else "b"
        return f"{prefix}0000000-0000-4000-8000-{self.index:012d}"


@dataclass
class Pending:
    """An instance that is not running and is being placed."""

    index: int
    ncpus: int
    memory: int
    cpu_platform: str | None
    local_storage: int  # one unallocated local disk of this size (0: none)
    groups: tuple[int, ...]  # indices into Population.groups


@dataclass
class Population:
    n_sleds: int
    n_instances: int
    sled_cpus: int
    sled_memory: int
    sled_local: int
    sled_ids: list[str]
    family: list[str]
    expunged: BoolArray
    maintenance: BoolArray
    inst_sled: IntArray
    inst_cpus: IntArray
    inst_mem: IntArray  # bytes
    disk_inst: IntArray  # placed instances with a local disk
    disk_size: IntArray  # bytes
    groups: list[Group]
    success: list[Pending]
    failure: list[Pending]
    # The success requests the rack can place now, and why the others cannot (reason codes).
    placeable: list[Pending] = field(default_factory=list)
    declined: Counter[str] = field(default_factory=Counter)

    def reserved(self) -> tuple[IntArray, IntArray, IntArray]:
        cpus = np.zeros(self.n_sleds, dtype=np.int64)
        mem = np.zeros(self.n_sleds, dtype=np.int64)
        local = np.zeros(self.n_sleds, dtype=np.int64)
        np.add.at(cpus, self.inst_sled, self.inst_cpus)
        np.add.at(mem, self.inst_sled, self.inst_mem)
        np.add.at(local, self.inst_sled[self.disk_inst], self.disk_size)
        return cpus, mem, local

    def fill(self) -> tuple[float, float]:
        cpus, mem, _ = self.reserved()
        live = ~self.expunged
        return (
            float(cpus[live].sum() / (live.sum() * self.sled_cpus)),
            float(mem[live].sum() / (live.sum() * self.sled_memory)),
        )

    def views(self) -> list[SledView]:
        cpus, mem, local = self.reserved()
        return [
            SledView(
                id=self.sled_ids[i],
                policy="expunged" if self.expunged[i] else "in_service",
                provision_policy=(
                    "non_provisionable"
                    if self.expunged[i] or self.maintenance[i]
                    else "provisionable"
                ),
                state="active",
                cpus=self.sled_cpus,
                memory=self.sled_memory,
                cpu_family=self.family[i],
                local_storage=self.sled_local,
                reserved_cpus=int(cpus[i]),
                reserved_memory=int(mem[i]),
                reserved_local_storage=int(local[i]),
            )
            for i in range(self.n_sleds)
        ]

    def request(self, p: Pending) -> Request:
        """The request ``placement_inputs.request_for`` builds for ``p`` from the store."""
        aff: list[GroupRule] = []
        anti: list[GroupRule] = []
        for gi in sorted(p.groups, key=lambda i: (self.groups[i].kind, self.groups[i].index)):
            g = self.groups[gi]
            on = np.unique(self.inst_sled[g.members])
            rule = GroupRule(
                g.name,
                g.policy,
                frozenset(self.sled_ids[int(s)] for s in on),
                len(g.members) + g.pending,
            )
            (aff if g.kind == "affinity" else anti).append(rule)
        return Request(
            ncpus=p.ncpus,
            memory=p.memory,
            cpu_platform=p.cpu_platform,
            local_storage=p.local_storage,
            affinity=tuple(aff),
            anti_affinity=tuple(anti),
        )


def uuid_strings(rng: np.random.Generator, n: int) -> list[str]:
    raw = rng.bytes(16 * n).hex()
    out = []
    for i in range(n):
        h = raw[32 * i : 32 * i + 32]
        out.append(f"{h[0:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}")
    return out


def _composition(rng: np.random.Generator, total: int, parts: int) -> IntArray:
    """``parts`` positive integers summing to ``total`` (a uniform random composition)."""
    if parts == 1:
        return np.array([total], dtype=np.int64)
    cuts = np.sort(rng.choice(total - 1, parts - 1, replace=False) + 1)
    return np.diff(np.concatenate(([0], cuts, [total]))).astype(np.int64)


def build_population(
    n_sleds: int, n_instances: int, args: argparse.Namespace, seed: int
) -> Population:
    rng = np.random.default_rng(seed)
    expunged = rng.random(n_sleds) < EXPUNGED_SHARE
    maintenance = ~expunged & (rng.random(n_sleds) < MAINTENANCE_SHARE)
    live = np.flatnonzero(~expunged)
    # Instances per live sled: even, +-10%, summing to exactly n_instances.
    w = rng.uniform(0.9, 1.1, len(live))
    per = np.floor(w / w.sum() * n_instances).astype(np.int64)
    short = n_instances - int(per.sum())
    if short:
        per[rng.choice(len(live), short, replace=False)] += 1
    # A sled holds at most MAX_DENSITY of its threads in instances of >= 1 vCPU; where the
    # base sled cannot, every sled of the cell is scaled up by a whole factor.
    scale = max(1, math.ceil(int(per.max()) / (MAX_DENSITY * args.sled_cpus)))
    cpus = args.sled_cpus * scale
    mem_gib = args.sled_memory * scale
    inst_cpus_parts: list[IntArray] = []
    inst_mem_parts: list[IntArray] = []
    for k in per:
        k = int(k)
        if k == 0:
            continue
        threads = max(k, int(rng.uniform(*FILL) * cpus))
        gib = int(rng.uniform(*FILL) * mem_gib)
        parts = _composition(rng, threads, k)
        inst_cpus_parts.append(parts)
        inst_mem_parts.append(np.maximum(1, parts * gib // threads) * GiB)
    inst_sled = np.repeat(live, per).astype(np.int64)
    inst_cpus = np.concatenate(inst_cpus_parts)
    inst_mem = np.concatenate(inst_mem_parts).astype(np.int64)
    # Local disks pinned to the sleds of some placed instances.
    disk_inst = np.flatnonzero(rng.random(n_instances) < LOCAL_DISK_SHARE)
    disk_size = rng.choice(PLACED_DISK_GIB, len(disk_inst)).astype(np.int64) * GiB

    # Groups: members drawn from placed instances, each instance in at most one group.
    start = np.concatenate(([0], np.cumsum(per)))  # instances of live sled j: start[j]..
    used = np.zeros(len(live), dtype=np.int64)

    def take(j: int, n: int) -> list[int]:
        n = min(n, int(per[j] - used[j]))
        first = int(start[j] + used[j])
        used[j] += n
        return list(range(first, first + n))

    def roomy(n: int) -> int:
        for _ in range(64):
            j = int(rng.integers(len(live)))
            if per[j] - used[j] >= n:
                return j
        return int(np.argmax(per - used))

    groups: list[Group] = []
    n_aff = args.groups // 2
    for i in range(args.groups):
        kind = "affinity" if i < n_aff else "anti_affinity"
        index = i if kind == "affinity" else i - n_aff
        policy = "fail" if i % 2 == 0 else "allow"
        members: list[int] = []
        if kind == "affinity" and policy == "fail":
            size = int(rng.integers(AFFINITY_FAIL_MEMBERS[0], AFFINITY_FAIL_MEMBERS[1] + 1))
            members = take(roomy(size), size)
        elif kind == "affinity":
            size = int(rng.integers(AFFINITY_ALLOW_MEMBERS[0], AFFINITY_ALLOW_MEMBERS[1] + 1))
            n_on = int(rng.integers(AFFINITY_ALLOW_SLEDS[0], AFFINITY_ALLOW_SLEDS[1] + 1))
            each = math.ceil(size / n_on)
            for _ in range(n_on):
                members += take(roomy(each), min(each, size - len(members)))
        else:
            size = int(rng.integers(ANTI_MEMBERS[0], ANTI_MEMBERS[1] + 1))
            on = rng.choice(len(live), size, replace=policy == "allow")
            for j in on:
                members += take(int(j), 1)
        groups.append(Group(kind, index, policy, np.array(members, dtype=np.int64)))

    def group_picks() -> tuple[int, ...]:
        n = int(rng.choice(3, p=REQ_GROUPS_P))
        return tuple(int(g) for g in rng.choice(len(groups), n, replace=False)) if n else ()

    success: list[Pending] = []
    for i in range(args.requests):
        ncpus = int(rng.choice(REQ_CPUS, p=REQ_CPUS_P))
        platform_ = str(rng.choice(FAMILIES)) if rng.random() < REQ_PLATFORM_SHARE else None
        local = int(rng.choice(REQ_LOCAL_GIB)) * GiB if rng.random() < REQ_LOCAL_SHARE else 0
        memory = ncpus * int(rng.choice(REQ_GIB_PER_CPU)) * GiB
        success.append(Pending(i, ncpus, memory, platform_, local, group_picks()))
    pop = Population(
        n_sleds=n_sleds,
        n_instances=n_instances,
        sled_cpus=cpus,
        sled_memory=mem_gib * GiB,
        sled_local=args.sled_local * GiB * scale,
        sled_ids=sorted(uuid_strings(rng, n_sleds)),
        family=[FAMILIES[1] if t else FAMILIES[0] for t in rng.random(n_sleds) < TURIN_SHARE],
        expunged=expunged,
        maintenance=maintenance,
        inst_sled=inst_sled,
        inst_cpus=inst_cpus,
        inst_mem=inst_mem,
        disk_inst=disk_inst,
        disk_size=disk_size,
        groups=groups,
        success=success,
        failure=[],
    )
    # Failures: each fits an empty sled but no sled's free capacity now, by vCPUs or memory.
    r_cpus, r_mem, _ = pop.reserved()
    open_ = ~expunged & ~maintenance
    max_free_cpus = int((cpus - r_cpus)[open_].max())
    max_free_mem_gib = int((pop.sled_memory - r_mem)[open_].max() // GiB)
    if max_free_cpus >= cpus or max_free_mem_gib >= mem_gib:
        raise SystemExit("an empty provisionable sled: no request can fail for capacity alone")
    for i in range(args.failure_requests):
        if i % 2 == 0:  # too many vCPUs for any sled's free threads
            ncpus = int(rng.integers(max_free_cpus + 1, cpus + 1))
            memory = int(rng.integers(1, 3)) * ncpus * GiB
            memory = min(memory, max_free_mem_gib * GiB)
        else:  # too much memory for any sled's free memory
            ncpus = int(rng.choice(REQ_CPUS[:3]))
            memory = int(rng.integers(max_free_mem_gib + 1, mem_gib + 1)) * GiB
        pop.failure.append(Pending(args.requests + i, ncpus, memory, None, 0, group_picks()))
    for p in pop.success + pop.failure:
        for gi in p.groups:
            groups[gi].pending += 1
    # The snapshot never changes, so whether a request can be placed is fixed: sort them once.
    rack = Rack.of(pop.views())
    classify = random.Random(seed)
    for p in pop.success:
        result = place(pop.request(p), rack, classify)
        if isinstance(result, Placement):
            pop.placeable.append(p)
        else:
            pop.declined[result.reason["code"]] += 1
    for p in pop.failure:
        if isinstance(place(pop.request(p), rack, classify), Placement):
            raise RuntimeError(f"a failure request can be placed: {p}")
    if not pop.placeable:
        raise SystemExit("no success request can be placed")
    return pop


def described(args: argparse.Namespace) -> list[tuple[str, str]]:
    """The population as the report's settings table describes it (from the constants above)."""

    def each(xs: Sequence[object]) -> str:
        return "/".join(map(str, xs))

    return [
        (
            "base sled",
            f"{args.sled_cpus} threads / {args.sled_memory} GiB / {args.sled_local} GiB local "
            f"storage; CPU family {FAMILIES[0]} ({1 - TURIN_SHARE:.0%}) or {FAMILIES[1]} "
            f"({TURIN_SHARE:.0%}); {EXPUNGED_SHARE:.0%} expunged, {MAINTENANCE_SHARE:.0%} "
            "non-provisionable",
        ),
        (
            "placed instances",
            f"spread evenly (+-10%) over the sleds not expunged; each sled's vCPUs and memory "
            f"{FILL[0]:.0%}-{FILL[1]:.0%} reserved (a uniform random split among its "
            f"instances, memory in proportion to vCPUs, >= 1 vCPU and 1 GiB each); "
            f"{LOCAL_DISK_SHARE:.0%} have a local disk of {each(PLACED_DISK_GIB)}"
            " GiB pinned to their sled",
        ),
        (
            "groups",
            f"{args.groups}: half affinity, half anti-affinity, alternating fail/allow; "
            f"affinity fail {AFFINITY_FAIL_MEMBERS[0]}-{AFFINITY_FAIL_MEMBERS[1]} members on "
            f"one sled, affinity allow {AFFINITY_ALLOW_MEMBERS[0]}-{AFFINITY_ALLOW_MEMBERS[1]}"
            f" on {AFFINITY_ALLOW_SLEDS[0]}-{AFFINITY_ALLOW_SLEDS[1]} sleds, anti-affinity "
            f"{ANTI_MEMBERS[0]}-{ANTI_MEMBERS[1]} members (fail: one per sled; allow: sleds "
            "drawn with replacement); a placed instance is in at most one group",
        ),
        (
            "success requests",
            f"{args.requests} distinct, cycled: vCPUs {each(REQ_CPUS)} (p {each(REQ_CPUS_P)}), "
            f"{each(REQ_GIB_PER_CPU)} GiB per vCPU, {REQ_PLATFORM_SHARE:.0%} ask for a CPU "
            f"platform, {REQ_LOCAL_SHARE:.0%} have an unallocated local disk of "
            f"{each(REQ_LOCAL_GIB)} GiB; in 0/1/2 groups with p {each(REQ_GROUPS_P)}",
        ),
        (
            "failure requests",
            f"{args.failure_requests} distinct, cycled: half ask for more vCPUs than any "
            "provisionable sled has free (but no more than a sled has), half for more memory;"
            " in 0-2 groups like the success requests",
        ),
    ]


# -- in a store ------------------------------------------------------------------------------


@dataclass
class Ids:
    project: str
    instances: list[str]  # placed, then pending
    reservations: list[str]
    disks: list[str]  # placed instances' local disks, then pending's


SILO_ID = "00000000-0000-4000-8000-00000000510e"  # the one silo, of the one project


def _table_rows(
    pop: Population, ids: Ids, ts: object, false: object, true: object
) -> Iterator[tuple[str, list[str], Iterable[tuple[object, ...]], int]]:
    """(table, columns, rows, count) in an order the foreign keys accept."""
    silo_cols = [
        "id", "name", "description", "discoverable", "identity_mode", "quota_cpus",
        "quota_memory", "quota_storage", "time_created", "time_modified", "time_deleted",
    ]  # fmt: skip
    unlimited = 2**62  # the silo binds nothing (as the recovery silo)
    silo_row = (SILO_ID, "bench", "placement benchmark", true, "local_only", *[unlimited] * 3)
    yield "silo", silo_cols, [(*silo_row, ts, ts, None)], 1
    yield (
        "project",
        ["id", "silo_id", "name", "description", "time_created", "time_modified", "time_deleted"],
        [(ids.project, SILO_ID, "bench", "placement benchmark", ts, ts, None)],
        1,
    )
    sled_cols = [
        "id", "rack_id", "serial", "part", "revision", "slot", "usable_hardware_threads",
        "usable_physical_ram", "local_storage", "cpu_family", "policy", "provision_policy",
        "state", "agent_url", "time_created", "time_modified",
    ]  # fmt: skip
    rack_id = "00000000-0000-4000-8000-00000000bead"

    def sled_rows() -> Iterator[tuple[object, ...]]:
        for i in range(pop.n_sleds):
            policy = "expunged" if pop.expunged[i] else "in_service"
            closed = pop.expunged[i] or pop.maintenance[i]
            provision = "non_provisionable" if closed else "provisionable"
            yield (
                pop.sled_ids[i], rack_id, f"bench-{i:05d}", "bench-gimlet", 0, i,
                pop.sled_cpus, pop.sled_memory, pop.sled_local, pop.family[i], policy,
                provision, "active", None, ts, ts,
            )  # fmt: skip

    yield "sled", sled_cols, sled_rows(), pop.n_sleds
    inst_cols = [
        "id", "project_id", "name", "description", "hostname", "ncpus", "memory",
        "auto_restart_policy", "cpu_platform", "boot_disk_id", "enable_jumbo_frames",
        "user_data", "state", "active_vmm_id", "intended_state", "status_event_id",
        "generation", "time_created", "time_modified", "time_deleted",
        "time_run_state_updated", "auto_restart_attempts",
    ]  # fmt: skip
    n = pop.n_instances
    pending = pop.success + pop.failure
    cpus = pop.inst_cpus.tolist()
    mem = pop.inst_mem.tolist()

    def instance_rows() -> Iterator[tuple[object, ...]]:
        for i in range(n):
            yield (
                ids.instances[i], ids.project, f"i{i:07d}", "", f"i{i:07d}", cpus[i], mem[i],
                None, None, None, false, "", "vmm", ids.reservations[i], "running", None,
                3, ts, ts, None, ts, 0,
            )  # fmt: skip
        for p in pending:
            yield (
                ids.instances[n + p.index], ids.project, f"p{p.index:07d}", "",
                f"p{p.index:07d}", p.ncpus, p.memory, None, p.cpu_platform, None, false, "",
                "no_vmm", None, "stopped", None, 1, ts, ts, None, ts, 0,
            )  # fmt: skip

    yield "instance", inst_cols, instance_rows(), n + len(pending)
    sled_of = pop.inst_sled.tolist()
    yield (
        "sled_reservation",
        ["id", "sled_id", "instance_id", "hardware_threads", "memory", "local_storage",
         "time_created"],
        (
            (ids.reservations[i], pop.sled_ids[sled_of[i]], ids.instances[i], cpus[i], mem[i],
             0, ts)
            for i in range(n)
        ),
        n,
    )  # fmt: skip
    group_cols = [
        "id", "project_id", "name", "description", "policy", "failure_domain",
        "time_created", "time_modified", "time_deleted",
    ]  # fmt: skip
    for kind in ("affinity", "anti_affinity"):
        mine = [g for g in pop.groups if g.kind == kind]
        yield (
            f"{kind}_group",
            group_cols,
            [(g.id, ids.project, g.name, "", g.policy, "sled", ts, ts, None) for g in mine],
            len(mine),
        )
        members: list[tuple[object, ...]] = [
            (g.id, ids.instances[int(m)]) for g in mine for m in g.members
        ]
        members += [
            (pop.groups[gi].id, ids.instances[n + p.index])
            for p in pending
            for gi in p.groups
            if pop.groups[gi].kind == kind
        ]
        yield f"{kind}_group_member", ["group_id", "instance_id"], members, len(members)
    disk_cols = [
        "id", "project_id", "name", "description", "size", "block_size", "disk_type",
        "state", "instance_id", "sled_id", "time_created", "time_modified", "time_deleted",
    ]  # fmt: skip
    disk_inst = pop.disk_inst.tolist()
    disk_size = pop.disk_size.tolist()
    with_local = [p for p in pending if p.local_storage]

    def disk_rows() -> Iterator[tuple[object, ...]]:
        for j, i in enumerate(disk_inst):
            yield (
                ids.disks[j], ids.project, f"d{j:07d}", "", disk_size[j], 4096, "local",
                "attached", ids.instances[i], pop.sled_ids[sled_of[i]], ts, ts, None,
            )  # fmt: skip
        for j, p in enumerate(with_local):
            yield (
                ids.disks[len(disk_inst) + j], ids.project, f"pd{p.index:07d}", "",
                p.local_storage, 4096, "local", "attached", ids.instances[n + p.index], None,
                ts, ts, None,
            )  # fmt: skip

    yield "disk", disk_cols, disk_rows(), len(disk_inst) + len(with_local)


def populate(store: Store, pop: Population, ids: Ids) -> dict[str, int]:
    """Write the population with the driver's bulk paths (executemany; COPY on PostgreSQL)."""
    counts: dict[str, int] = {}
    sqlite = store.is_sqlite
    ts = stored_time(datetime.now(UTC).replace(microsecond=0), sqlite)
    raw = store.engine.raw_connection()
    try:
        dbapi: Any = raw.driver_connection
        if sqlite:
            dbapi.execute("BEGIN")
        for table, cols, rows, count in _table_rows(
            pop, ids, ts, 0 if sqlite else False, 1 if sqlite else True
        ):
            bulk_write(dbapi, sqlite, table, ", ".join(cols), rows)
            counts[table] = count
        dbapi.commit()
    finally:
        raw.close()
    return counts
