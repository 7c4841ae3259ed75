"""Every operation of the served OpenAPI document, asked by eight kinds of caller.

The expected answers come from the SPEC's roles (Identity, access and quotas), written here
as a rule per operation, not from the code: no credential is 401; what the caller may not
read is 404, as if it did not exist; what it may read but not change is 403. An operation
the document serves without a rule here fails the test, so a new route cannot ship without
someone deciding who may call it.

The callers: nobody; the admin of another silo; a user of the recovery silo with no role; a
project viewer; a project collaborator; the recovery silo's admin (not a fleet role); a
fleet viewer and a fleet admin (users of a third silo, with no role in the recovery silo,
since fleet roles do not reach into a silo's projects).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from skylight import login_flow
from skylight.testing import ServerProcess

pytestmark = pytest.mark.timeout(600)

GiB = 1024**3
PASSWORD = "walk-password"
PERSONAS = (
    "anonymous",
    "other_silo_admin",
    "no_role",
    "project_viewer",
    "project_collaborator",
    "silo_admin",
    "fleet_viewer",
    "fleet_admin",
)

# -- what each kind of operation answers each caller ------------------------------------------
# "ok": allowed (any answer but 401, 403 and, where the resource is visible, 404).
OK, UNAUTH, FORBIDDEN, HIDDEN = "ok", "401", "403", "404"


def _row(*answers: str) -> dict[str, str]:
    return dict(zip(PERSONAS, answers, strict=True))


#                anon    other   norole  pview   pcollab sadmin  fview   fadmin
RULES = {
    "anonymous": _row(OK, OK, OK, OK, OK, OK, OK, OK),
    "self": _row(UNAUTH, OK, OK, OK, OK, OK, OK, OK),
    "rack": _row(UNAUTH, UNAUTH, UNAUTH, UNAUTH, UNAUTH, UNAUTH, UNAUTH, UNAUTH),
    "project_read": _row(UNAUTH, HIDDEN, HIDDEN, OK, OK, OK, HIDDEN, HIDDEN),
    "project_modify": _row(UNAUTH, HIDDEN, HIDDEN, FORBIDDEN, OK, OK, HIDDEN, HIDDEN),
    "project_admin": _row(UNAUTH, HIDDEN, HIDDEN, FORBIDDEN, FORBIDDEN, OK, HIDDEN, HIDDEN),
    "project_create": _row(UNAUTH, OK, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK, FORBIDDEN, FORBIDDEN),
    "own_silo_read": _row(UNAUTH, OK, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK, OK, OK),
    "own_silo_admin": _row(UNAUTH, OK, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK, FORBIDDEN, OK),
    "silo_user_view": _row(UNAUTH, HIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK, HIDDEN, HIDDEN),
    "recovery_users": _row(UNAUTH, HIDDEN, HIDDEN, HIDDEN, HIDDEN, OK, FORBIDDEN, OK),
    "target_silo_read": _row(UNAUTH, HIDDEN, HIDDEN, HIDDEN, HIDDEN, HIDDEN, OK, OK),
    "target_silo_modify": _row(UNAUTH, HIDDEN, HIDDEN, HIDDEN, HIDDEN, HIDDEN, FORBIDDEN, OK),
    "fleet_read": _row(UNAUTH, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK, OK),
    "fleet_read_in_silo": _row(UNAUTH, HIDDEN, HIDDEN, HIDDEN, HIDDEN, FORBIDDEN, OK, OK),
    "fleet_user_view": _row(UNAUTH, HIDDEN, HIDDEN, HIDDEN, HIDDEN, HIDDEN, OK, OK),
    "fleet_modify": _row(
        UNAUTH, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK
    ),
    "never_found": _row(UNAUTH, HIDDEN, HIDDEN, HIDDEN, HIDDEN, HIDDEN, HIDDEN, HIDDEN),
}

# The rule of every served operation. Fleet operations split read/modify by method.
P, INST, D = "/v1/projects/{project}", "/v1/instances/{instance}", "/v1/disks"
AG = "/v1/affinity-groups/{affinity_group}"
AAG = "/v1/anti-affinity-groups/{anti_affinity_group}"
OPERATIONS: dict[tuple[str, str], str] = {
    ("get", "/v1/ping"): "anonymous",
    ("post", "/v1/login/{silo_name}/local"): "anonymous",
    ("post", "/v1/logout"): "anonymous",
    ("post", "/device/auth"): "anonymous",
    ("post", "/device/token"): "anonymous",
    ("post", "/device/confirm"): "self",
    ("get", "/v1/me"): "self",
    ("get", "/v1/me/groups"): "self",
    ("get", "/v1/me/access-tokens"): "self",
    ("delete", "/v1/me/access-tokens/{token_id}"): "self",
    ("post", "/v1/system/sled-agents"): "rack",
    ("post", "/v1/system/sled-agents/{sled_id}/vmm-lost"): "rack",
    # projects and what is in them
    ("get", "/v1/projects"): "self",  # the list shows what the caller may see
    ("post", "/v1/projects"): "project_create",
    ("get", P): "project_read",
    ("put", P): "project_modify",
    ("delete", P): "project_modify",
    ("get", f"{P}/policy"): "project_read",
    ("put", f"{P}/policy"): "project_admin",
    ("get", "/v1/instances"): "project_read",
    ("post", "/v1/instances"): "project_modify",
    ("get", INST): "project_read",
    ("put", INST): "project_modify",
    ("delete", INST): "project_modify",
    ("post", f"{INST}/start"): "project_modify",
    ("post", f"{INST}/stop"): "project_modify",
    ("post", f"{INST}/reboot"): "project_modify",
    ("get", f"{INST}/events"): "project_read",
    ("get", f"{INST}/events/stream"): "project_read",
    ("get", f"{INST}/placement"): "project_read",
    ("get", f"{INST}/disks"): "project_read",
    ("post", f"{INST}/disks/attach"): "project_modify",
    ("post", f"{INST}/disks/detach"): "project_modify",
    ("get", f"{INST}/affinity-groups"): "project_read",
    ("get", f"{INST}/anti-affinity-groups"): "project_read",
    ("get", "/v1/events"): "project_read",
    ("get", "/v1/events/stream"): "project_read",
    ("get", D): "project_read",
    ("post", D): "project_modify",
    ("get", f"{D}/{{disk}}"): "project_read",
    ("delete", f"{D}/{{disk}}"): "project_modify",
    **{
        (method, path.replace("GROUP", g)): rule
        for g in (AG, AAG)
        for method, path, rule in (
            ("get", "GROUP", "project_read"),
            ("put", "GROUP", "project_modify"),
            ("delete", "GROUP", "project_modify"),
            ("get", "GROUP/members", "project_read"),
            ("get", "GROUP/members/instance/{instance}", "project_read"),
            ("post", "GROUP/members/instance/{instance}", "project_modify"),
            ("delete", "GROUP/members/instance/{instance}", "project_modify"),
        )
    },
    ("get", "/v1/affinity-groups"): "project_read",
    ("post", "/v1/affinity-groups"): "project_modify",
    ("get", "/v1/anti-affinity-groups"): "project_read",
    ("post", "/v1/anti-affinity-groups"): "project_modify",
    # the caller's own silo
    ("get", "/v1/policy"): "own_silo_read",
    ("put", "/v1/policy"): "own_silo_admin",
    ("get", "/v1/users"): "own_silo_read",
    ("get", "/v1/users/{user_id}"): "silo_user_view",
    ("get", "/v1/groups"): "own_silo_read",
    ("get", "/v1/groups/{group_id}"): "never_found",
    # silos and their users, for the fleet
    ("get", "/v1/system/silos"): "fleet_read",
    ("post", "/v1/system/silos"): "fleet_modify",
    ("get", "/v1/system/silos/{silo}"): "target_silo_read",
    ("delete", "/v1/system/silos/{silo}"): "target_silo_modify",
    ("get", "/v1/system/silos/{silo}/policy"): "target_silo_read",
    ("put", "/v1/system/silos/{silo}/policy"): "target_silo_modify",
    ("get", "/v1/system/silos/{silo}/quotas"): "target_silo_read",
    ("put", "/v1/system/silos/{silo}/quotas"): "target_silo_modify",
    ("get", "/v1/system/silo-quotas"): "fleet_read",
    ("get", "/v1/utilization"): "own_silo_read",
    ("get", "/v1/system/utilization/silos"): "fleet_read",
    ("get", "/v1/system/utilization/silos/{silo}"): "target_silo_read",
    ("get", "/v1/system/audit-log"): "fleet_read",
    ("post", "/v1/system/identity-providers/local/users"): "recovery_users",
    ("delete", "/v1/system/identity-providers/local/users/{user_id}"): "recovery_users",
    ("post", "/v1/system/identity-providers/local/users/{user_id}/set-password"): (
        "recovery_users"
    ),
    ("get", "/v1/system/users"): "fleet_read_in_silo",
    ("get", "/v1/system/users/{user_id}"): "fleet_user_view",
    ("get", "/v1/system/policy"): "fleet_read",
    ("put", "/v1/system/policy"): "fleet_modify",
    # the rack, for operators
    ("get", "/v1/system/events"): "fleet_read",
    ("get", "/v1/system/hardware/sleds"): "fleet_read",
    ("get", "/v1/system/hardware/sleds/{sled_id}"): "fleet_read",
    ("get", "/v1/system/hardware/sleds/{sled_id}/instances"): "fleet_read",
    ("put", "/v1/system/hardware/sleds/{sled_id}/provision-policy"): "fleet_modify",
    ("post", "/v1/system/hardware/sleds/{sled_id}/expunge"): "fleet_modify",
    ("get", "/v1/system/sim/faults"): "fleet_read",
    ("post", "/v1/system/sim/faults"): "fleet_modify",
    ("delete", "/v1/system/sim/faults/{fault_id}"): "fleet_modify",
    ("post", "/v1/system/sim/sleds/{sled_id}/power-off"): "fleet_modify",
    ("post", "/v1/system/sim/sleds/{sled_id}/power-on"): "fleet_modify",
    ("post", "/v1/system/sim/instances/{instance}/crash"): "fleet_modify",
    # webhooks: fleet admins only, reads included
    **{
        (method, path): "fleet_modify"
        for method, path in (
            ("get", "/v1/alert-classes"),
            ("get", "/v1/alert-receivers"),
            ("get", "/v1/alert-receivers/{receiver}"),
            ("delete", "/v1/alert-receivers/{receiver}"),
            ("post", "/v1/alert-receivers/{receiver}/subscriptions"),
            ("delete", "/v1/alert-receivers/{receiver}/subscriptions/{subscription}"),
            ("get", "/v1/alert-receivers/{receiver}/deliveries"),
            ("post", "/v1/alert-receivers/{receiver}/probe"),
            ("post", "/v1/alerts/{alert_id}/resend"),
            ("post", "/v1/webhook-receivers"),
            ("put", "/v1/webhook-receivers/{receiver}"),
            ("get", "/v1/webhook-secrets"),
            ("post", "/v1/webhook-secrets"),
            ("delete", "/v1/webhook-secrets/{secret_id}"),
        )
    },
}


# -- the rig: one server, the eight callers, and fresh resources to act on -------------------


@dataclass
class Rig:
    server: ServerProcess
    admin: httpx.Client  # the recovery admin: fleet admin and admin of the recovery silo
    headers: dict[str, dict[str, str]]  # persona -> its credential
    user_ids: dict[str, str]
    counter: Iterator[int]

    def tag(self) -> str:
        return f"w{next(self.counter)}"

    def ok(self, r: httpx.Response) -> Any:
        assert r.status_code < 300, (r.request.method, r.request.url, r.status_code, r.text)
        return r.json() if r.content else None

    def grant(self, policy_url: str, pairs: list[tuple[str, str]]) -> None:
        policy = self.ok(self.admin.get(policy_url))
        policy["role_assignments"] += [
            {"identity_id": self.user_ids[who], "identity_type": "silo_user", "role_name": role}
            for who, role in pairs
        ]
        self.ok(self.admin.put(policy_url, json=policy))

    def scene(self) -> dict[str, str]:
        """A project of the recovery silo with a stopped instance, a disk and two groups;
        the project viewer and collaborator hold those roles on it."""
        project = self.tag()
        self.ok(self.admin.post("/v1/projects", json={"name": project, "description": ""}))
        self.grant(
            f"/v1/projects/{project}/policy",
            [("project_viewer", "viewer"), ("project_collaborator", "collaborator")],
        )
        q = {"project": project}
        body = {"name": "vm", "description": "", "hostname": "vm", "ncpus": 1}
        inst = self.ok(
            self.admin.post("/v1/instances", params=q, json={**body, "memory": GiB, "start": False})
        )
        self.ok(self.admin.post("/v1/disks", params=q, json=_disk("d")))
        self.ok(self.admin.post("/v1/disks", params=q, json=_disk("d2")))
        self.ok(self.admin.post("/v1/instances/vm/disks/attach", params=q, json={"disk": "d2"}))
        for path in ("/v1/affinity-groups", "/v1/anti-affinity-groups"):
            self.ok(self.admin.post(path, params=q, json=_group("g")))
        for path in ("/v1/affinity-groups", "/v1/anti-affinity-groups"):
            self.ok(self.admin.post(f"{path}/g/members/instance/vm", params=q))
        silo = self.tag()
        self.ok(self.admin.post("/v1/system/silos", json=_silo(silo)))
        user = self.ok(
            self.admin.post(
                "/v1/system/identity-providers/local/users",
                params={"silo": "recovery"},
                json={"external_id": self.tag(), "password": {"mode": "password", "value": "x"}},
            )
        )
        return {
            "project": project,
            "instance": "vm",
            "instance_id": inst["id"],
            "disk": "d",
            "attached_disk": "d2",
            "affinity_group": "g",
            "anti_affinity_group": "g",
            "silo": silo,
            "user_id": user["id"],
        }


def _disk(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "description": "",
        "size": GiB,
        "disk_backend": {
            "type": "distributed",
            "disk_source": {"type": "blank", "block_size": 512},
        },
    }


def _group(name: str) -> dict[str, Any]:
    return {"name": name, "description": "", "policy": "allow", "failure_domain": "sled"}


def _silo(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "description": "",
        "discoverable": True,
        "identity_mode": "local_only",
        "quotas": {"cpus": 64, "memory": 64 * GiB, "storage": 64 * GiB},
    }


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    server = ServerProcess(
        Path(tmp_path_factory.mktemp("walk")),
        args=["--password-hash-cost", "1,1024", "--sim-start-delay", "0", "--sim-sleds", "4"],
    )
    server.start()
    admin = server.client(timeout=30)
    rig = Rig(server, admin, {}, {}, itertools.count())
    for silo in ("other", "ops"):
        rig.ok(admin.post("/v1/system/silos", json=_silo(silo)))
    homes = {"other_silo_admin": "other", "fleet_viewer": "ops", "fleet_admin": "ops"}
    for persona in PERSONAS[1:]:
        user = rig.ok(
            admin.post(
                "/v1/system/identity-providers/local/users",
                params={"silo": homes.get(persona, "recovery")},
                json={
                    "external_id": persona.replace("_", "-"),
                    "password": {"mode": "password", "value": PASSWORD},
                },
            )
        )
        rig.user_ids[persona] = user["id"]
    rig.grant("/v1/system/silos/other/policy", [("other_silo_admin", "admin")])
    rig.grant("/v1/system/silos/recovery/policy", [("silo_admin", "admin")])
    rig.grant("/v1/system/policy", [("fleet_viewer", "viewer"), ("fleet_admin", "admin")])
    rig.headers["anonymous"] = {}
    for persona in PERSONAS[1:]:
        silo = homes.get(persona, "recovery")
        with httpx.Client(base_url=server.url, timeout=30) as anonymous:
            token = login_flow.with_password(anonymous, silo, persona.replace("_", "-"), PASSWORD)
        rig.headers[persona] = {"authorization": f"Bearer {token}"}
    rig.ok(
        admin.post(
            "/v1/webhook-receivers",
            json={
                "name": "rx",
                "description": "",
                "endpoint": "https://example.com/hook",
                "secrets": ["walk-secret"],
                "subscriptions": ["instance.failed"],
            },
        )
    )
    yield rig
    admin.close()
    server.stop()


# -- one request per operation ------------------------------------------------------------------

Values = dict[str, str]


def _policy_of(rig: Rig, url: str, persona: str) -> dict[str, Any]:
    r = rig.server.client(timeout=30).get(url, headers=rig.headers[persona] or None)
    return dict(r.json()) if r.status_code == 200 else {"role_assignments": []}


BODIES: dict[tuple[str, str], Callable[[Rig, Values, str], dict[str, Any]]] = {
    ("post", "/v1/login/{silo_name}/local"): lambda rig, v, who: {
        "json": {"username": "no-role", "password": PASSWORD}
    },
    ("post", "/device/auth"): lambda rig, v, who: {"data": {"client_id": login_flow.CLIENT_ID}},
    ("post", "/device/token"): lambda rig, v, who: {
        "data": {
            "grant_type": login_flow.GRANT,
            "device_code": "nope",
            "client_id": login_flow.CLIENT_ID,
        }
    },
    ("post", "/device/confirm"): lambda rig, v, who: {
        "json": {"user_code": login_flow.start(rig.server.client(timeout=30))["user_code"]}
    },
    ("post", "/v1/system/sled-agents"): lambda rig, v, who: {
        "json": {
            "serial": "walk-agent",
            "url": "http://127.0.0.1:9",
            "cpus": 8,
            "memory": 8 * GiB,
            "local_storage": 0,
            "cpu_family": "amd_milan",
        }
    },
    ("post", "/v1/system/sled-agents/{sled_id}/vmm-lost"): lambda rig, v, who: {
        "json": {"vmm_id": str(uuid.uuid4()), "cause": "vmm_failure"}
    },
    ("post", "/v1/projects"): lambda rig, v, who: {"json": {"name": rig.tag(), "description": ""}},
    ("put", P): lambda rig, v, who: {"json": {"description": "changed"}},
    ("put", f"{P}/policy"): lambda rig, v, who: {
        "json": _policy_of(rig, f"/v1/projects/{v['project']}/policy", "silo_admin")
    },
    ("post", "/v1/instances"): lambda rig, v, who: {
        "json": {
            "name": rig.tag(),
            "description": "",
            "hostname": "h",
            "ncpus": 1,
            "memory": GiB,
            "start": False,
        }
    },
    ("put", INST): lambda rig, v, who: {
        "json": {
            "ncpus": 1,
            "memory": GiB,
            "auto_restart_policy": None,
            "boot_disk": None,
            "cpu_platform": None,
            "enable_jumbo_frames": False,
        }
    },
    ("post", f"{INST}/disks/attach"): lambda rig, v, who: {"json": {"disk": v["disk"]}},
    ("post", f"{INST}/disks/detach"): lambda rig, v, who: {"json": {"disk": v["attached_disk"]}},
    ("post", D): lambda rig, v, who: {"json": _disk(rig.tag())},
    ("post", "/v1/affinity-groups"): lambda rig, v, who: {"json": _group(rig.tag())},
    ("post", "/v1/anti-affinity-groups"): lambda rig, v, who: {"json": _group(rig.tag())},
    ("put", AG): lambda rig, v, who: {"json": {"description": "changed"}},
    ("put", AAG): lambda rig, v, who: {"json": {"description": "changed"}},
    ("put", "/v1/policy"): lambda rig, v, who: {"json": _policy_of(rig, "/v1/policy", who)},
    ("post", "/v1/system/silos"): lambda rig, v, who: {"json": _silo(rig.tag())},
    ("put", "/v1/system/silos/{silo}/policy"): lambda rig, v, who: {
        "json": {"role_assignments": []}
    },
    ("put", "/v1/system/silos/{silo}/quotas"): lambda rig, v, who: {"json": {"cpus": 32}},
    ("post", "/v1/system/identity-providers/local/users"): lambda rig, v, who: {
        "json": {"external_id": rig.tag(), "password": {"mode": "password", "value": "x"}}
    },
    ("post", "/v1/system/identity-providers/local/users/{user_id}/set-password"): (
        lambda rig, v, who: {"json": {"mode": "login_disallowed"}}
    ),
    ("put", "/v1/system/policy"): lambda rig, v, who: {
        "json": _policy_of(rig, "/v1/system/policy", "fleet_admin")
    },
    ("put", "/v1/system/hardware/sleds/{sled_id}/provision-policy"): lambda rig, v, who: {
        "json": {"state": "provisionable"}
    },
    ("post", "/v1/system/sim/faults"): lambda rig, v, who: {
        "json": {"at": "register", "kind": "error", "count": 1}
    },
    ("post", "/v1/alert-receivers/{receiver}/subscriptions"): lambda rig, v, who: {
        "json": {"subscription": "instance.running"}
    },
    ("post", "/v1/webhook-receivers"): lambda rig, v, who: {
        "json": {
            "name": rig.tag(),
            "description": "",
            "endpoint": "https://example.com/hook",
            "secrets": ["s"],
        }
    },
    ("put", "/v1/webhook-receivers/{receiver}"): lambda rig, v, who: {"json": {"description": "x"}},
    ("post", "/v1/webhook-secrets"): lambda rig, v, who: {"json": {"secret": "another"}},
}


def _path(rig: Rig, template: str, v: Values) -> str:
    fills = {
        "silo_name": "recovery",
        "token_id": str(uuid.uuid4()),
        "sled_id": v["sled_id"],
        "fault_id": str(uuid.uuid4()),
        "receiver": "rx",
        "subscription": "instance.failed",
        "alert_id": str(uuid.uuid4()),
        "secret_id": str(uuid.uuid4()),
        "group_id": str(uuid.uuid4()),
        **v,
    }
    if template == "/v1/system/sim/instances/{instance}/crash":
        fills["instance"] = v["instance_id"]  # fault injection names instances by id
    return template.format(**fills)


def _ask(rig: Rig, method: str, template: str, persona: str, v: Values) -> int:
    query = {
        "project": v["project"],
        "silo": "recovery",
        "receiver": "rx",
        "start_time": "2020-01-01T00:00:00Z",
    }
    if template.startswith("/v1/system/sim/instances/"):
        query = {}
    extra = BODIES.get((method, template), lambda rig, v, who: {})(rig, v, persona)
    with httpx.Client(base_url=rig.server.url, timeout=30, headers=rig.headers[persona]) as http:
        if template.endswith("/stream"):
            with http.stream(method.upper(), _path(rig, template, v), params=query) as r:
                return r.status_code
        return http.request(
            method.upper(), _path(rig, template, v), params=query, **extra
        ).status_code


# Where "not found" can only mean "not yours to see": the resource asked about exists.
VISIBILITY_RULES = {
    "project_read",
    "project_modify",
    "project_admin",
    "own_silo_read",
    "own_silo_admin",
    "silo_user_view",
    "recovery_users",
    "target_silo_read",
    "target_silo_modify",
    "fleet_read_in_silo",
    "fleet_user_view",
}


@pytest.mark.slow  # minutes (every operation, every caller): not in `make test-fast`
def test_every_operation_answers_every_caller_as_its_roles_say(rig: Rig) -> None:
    served = rig.admin.get("/openapi.json").json()["paths"]
    ops = [
        (m, p) for p, item in served.items() for m in item if m in ("get", "post", "put", "delete")
    ]
    unruled = sorted(set(ops) - set(OPERATIONS))
    assert not unruled, f"operations with no expected answer (add them to OPERATIONS): {unruled}"
    assert not set(OPERATIONS) - set(ops), "rules for operations no longer served"

    sleds = rig.ok(rig.admin.get("/v1/system/hardware/sleds"))["items"]
    shared = {**rig.scene(), "sled_id": sleds[0]["id"]}
    wrong: list[str] = []
    asked = 0
    for method, template in sorted(ops, key=lambda op: (op[1], op[0])):
        rule = OPERATIONS[(method, template)]
        for persona in PERSONAS:
            want = RULES[rule][persona]
            fresh = want == OK and method != "get" and rule not in ("anonymous", "rack")
            v = {**rig.scene(), "sled_id": sleds[-1]["id"]} if fresh else shared
            status = _ask(rig, method, template, persona, v)
            asked += 1
            if status >= 500 and status not in (503, 507):
                wrong.append(f"{method.upper()} {template} as {persona}: {status}, a server error")
            elif want == OK:
                denied = {401, 403} | ({404} if rule in VISIBILITY_RULES else set())
                if status in denied:
                    wrong.append(f"{method.upper()} {template} as {persona}: {status}, wanted ok")
            elif str(status) != want:
                wrong.append(f"{method.upper()} {template} as {persona}: {status}, wanted {want}")
    assert asked == len(ops) * len(PERSONAS)
    assert not wrong, f"{len(wrong)} of {asked} answers are not what the roles say:\n" + "\n".join(
        wrong
    )


def test_metrics_are_for_fleet_viewers(rig: Rig) -> None:
    for persona, want in (("anonymous", 401), ("silo_admin", 403), ("fleet_viewer", 200)):
        r = httpx.get(f"{rig.server.url}/metrics", headers=rig.headers[persona], timeout=30)
        assert r.status_code == want, (persona, r.status_code)
