"""What ``skylight`` prints, as a person reads it: at 80 columns and piped, every list keeps its
words whole and its columns aligned; ``--help`` is plain text; resize and update keep what they
do not change; operator detail is shown to operators, decided by role; ``instance watch``
shows history first. Against a real server (2 sleds of 8 threads), as a script would run the
CLI: a child process, its output a pipe, COLUMNS=80."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console
from typer.main import get_command
from typer.testing import CliRunner

from skylight import login_flow
from skylight.cli import common
from skylight.cli.main import app
from skylight.testing import ServerProcess
from tests.conftest import USER_PASSWORD, GiB

pytestmark = pytest.mark.timeout(180)

WIDTH = 80


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        Path(tmp_path_factory.mktemp("cli-views")),
        args=["--sim-sleds", "2", "--sim-sled-cpus", "8", "--sim-start-delay", "0.05"],
    )
    proc.start()
    with proc.client() as http:
        r = http.post(
            "/v1/projects",
            json={
                "name": "demo",
                "description": "a project whose description is far too long for its column",
            },
        )
        assert r.status_code == 201, r.text
    yield proc
    proc.stop()


def user_token_of(server: ServerProcess, name: str) -> str:
    """The token of a new silo collaborator of the recovery silo: may do anything in its
    projects, but is no operator (no fleet role)."""
    with server.client() as admin:
        r = admin.post(
            "/v1/system/identity-providers/local/users",
            params={"silo": "recovery"},
            json={"external_id": name, "password": {"mode": "password", "value": USER_PASSWORD}},
        )
        assert r.status_code == 201, r.text
        policy = admin.get("/v1/system/silos/recovery/policy").json()
        policy["role_assignments"].append(
            {
                "identity_id": r.json()["id"],
                "identity_type": "silo_user",
                "role_name": "collaborator",
            }
        )
        assert admin.put("/v1/system/silos/recovery/policy", json=policy).status_code == 200
    with httpx.Client(base_url=server.url, timeout=30) as anonymous:
        token = login_flow.with_password(anonymous, "recovery", name, USER_PASSWORD)
    with httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {token}"}) as me:
        assert me.get("/v1/me").json()["fleet_viewer"] is False
    return token


@pytest.fixture(scope="module")
def user_token(server: ServerProcess) -> str:
    return user_token_of(server, "carol")


def sky(
    server: ServerProcess, *args: str, token: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``skylight ARGS`` as a child process, output piped, at COLUMNS=80."""
    env = os.environ | {
        "COLUMNS": str(WIDTH),
        "SKYLIGHT_TOKEN": token or server.token,
        "XDG_CONFIG_HOME": "/nonexistent",
    }
    env.pop("LINES", None)
    return subprocess.run(
        [sys.executable, "-m", "skylight.cli.main", *args, "--url", server.url],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (result.stdout, result.stderr)
    return result.stdout


def api(server: ServerProcess, method: str, path: str, **kwargs: Any) -> Any:
    with server.client(timeout=60) as http:
        r = http.request(method, path, **kwargs)
    assert r.status_code < 300, r.text
    return r.json() if r.content else None


def words_whole(output: str, *texts: str) -> None:
    """Every word of ``texts`` is a word of the output: none was cut across lines."""
    have = {w.strip(",.:;()") for w in output.split()}
    for text in texts:
        missing = [w for w in text.split() if w.strip(",.:;()") not in have]
        assert not missing, (missing, output)


def narrow(output: str) -> None:
    assert all(len(line) <= WIDTH for line in output.splitlines()), output


def table_rows(output: str, headers: list[str]) -> list[dict[str, str]]:
    """A list table's rows (a row's first line), its cells cut at the header's column starts:
    a cell that is not under its header (a misaligned column) reads wrong."""
    lines = output.splitlines()
    rule = next(i for i, line in enumerate(lines) if line.startswith("─"))
    header = lines[rule - 1]
    starts = [header.index(h) for h in headers]
    assert starts == sorted(starts), header
    rows = []
    for line in lines[rule + 1 :]:
        if not line.strip():
            break
        if line[0] == " ":
            continue  # a wrapped cell's next line
        ends = [*starts[1:], None]
        rows.append({h: line[a:b].strip() for h, a, b in zip(headers, starts, ends, strict=True)})
    return rows


def event_rows(output: str, headers: list[str]) -> list[dict[str, str]]:
    """Event lines (not the reason lines indented under them), cut at the header's starts."""
    lines = output.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("time "))
    starts = [lines[at].index(h) for h in headers]
    rows = []
    for line in lines[at + 1 :]:
        if not line[:1].isdigit():
            continue
        ends = [*starts[1:], None]
        rows.append({h: line[a:b].strip() for h, a, b in zip(headers, starts, ends, strict=True)})
    return rows


# -- help ------------------------------------------------------------------------------------


def _command_paths() -> list[list[str]]:
    paths: list[list[str]] = []

    def walk(command: Any, path: list[str]) -> None:
        paths.append(path)
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*path, name])

    walk(get_command(app), [])
    return paths


def test_every_help_reads_as_plain_text() -> None:
    paths = _command_paths()
    assert ["instance", "resize"] in paths and ["instance", "update"] in paths
    for path in paths:
        result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": str(WIDTH)})
        assert result.exit_code == 0, (path, result.output)
        for raw in ("``", "<bool>", "╭"):
            assert raw not in result.output, (path, raw, result.output)
    top = CliRunner().invoke(app, ["--help"]).output
    assert "skylight: run the control plane (serve, sled-agent)" in " ".join(top.split())


# -- sizes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("16", 16 * GiB),
        ("1.5", 3 * GiB // 2),
        ("16GiB", 16 * GiB),
        ("16 gib", 16 * GiB),
        ("16G", 16 * GiB),
        ("512MiB", 512 * 1024**2),
        ("1TiB", 1024 * GiB),
    ],
)
def test_memory_sizes(text: str, size: int) -> None:
    assert common.parse_memory(text) == size


def test_a_memory_that_is_no_size_is_a_usage_error(server: ServerProcess) -> None:
    bad = sky(server, "instance", "resize", "x", "-p", "demo", "--memory", "lots")
    assert bad.returncode == 2 and "is not a size" in bad.stderr


# -- lists at 80 columns ---------------------------------------------------------------------


def test_lists_at_80_columns_keep_words_whole_and_columns_aligned(server: ServerProcess) -> None:
    ok(sky(server, "instance", "create", "wide", "-p", "demo", "--cpus", "3", "--memory", "2GiB"))
    ok(
        sky(
            server,
            "instance",
            "create",
            "toobig",
            "-p",
            "demo",
            "--cpus",
            "9",
            "--memory",
            "1",
            "--no-start",
        )
    )
    assert sky(server, "instance", "start", "toobig", "-p", "demo").returncode == 4
    sleds = api(server, "GET", "/v1/system/hardware/sleds")["items"]
    idle = next(s for s in sleds if s["reserved_hardware_threads"] == 0)
    api(
        server,
        "PUT",
        f"/v1/system/hardware/sleds/{idle['id']}/provision-policy",
        json={"state": "non_provisionable"},
    )
    try:
        listed = ok(sky(server, "sled", "list"))
        sleds = api(server, "GET", "/v1/system/hardware/sleds")["items"]
    finally:
        api(
            server,
            "PUT",
            f"/v1/system/hardware/sleds/{idle['id']}/provision-policy",
            json={"state": "provisionable"},
        )
    narrow(listed)
    rows = {r["id"]: r for r in table_rows(listed, ["id", "state", "policy", "threads", "GiB"])}
    for s in sleds:
        row = rows[s["id"]]  # the whole id, under its header
        assert row["state"] == s["state"] == "active"
        assert row["threads"] == f"{s['reserved_hardware_threads']}/8"
        assert row["policy"].startswith("in_service")
    words_whole(listed, "active in_service non_provisionable provisionable")

    projects = ok(sky(server, "project", "list"))
    narrow(projects)
    (demo,) = table_rows(projects, ["name", "id", "description", "created"])
    assert demo["name"] == "demo"
    words_whole(projects, "a project whose description is far too long for its column")

    ok(sky(server, "instance", "create", "a-name-of-sixteen", "-p", "demo", "--cpus", "1",
           "--memory", "1", "--no-start"))  # fmt: skip
    with server.client() as http:  # a reason whose code is long: capacity_in_maintenance
        for s in sleds:
            policy = f"/v1/system/hardware/sleds/{s['id']}/provision-policy"
            http.put(policy, json={"state": "non_provisionable"})
        started = sky(server, "instance", "start", "a-name-of-sixteen", "-p", "demo")
        for s in sleds:
            policy = f"/v1/system/hardware/sleds/{s['id']}/provision-policy"
            http.put(policy, json={"state": "provisionable"})
    assert started.returncode == 3, started
    instances = ok(sky(server, "instance", "list", "-p", "demo"))
    narrow(instances)
    by_name = {
        r["name"]: r
        for r in table_rows(
            instances, ["name", "state", "vCPUs", "GiB", "status reason", "created"]
        )
    }
    assert by_name["wide"]["state"] == "running" and by_name["wide"]["vCPUs"] == "3"
    assert by_name["toobig"]["status reason"] == "exceeds_sled_size"
    assert by_name["a-name-of-sixteen"]["status reason"] == "capacity_in_maintenance"
    words_whole(instances, "running stopped")

    for args, headers in (
        (["events", "-p", "demo"], ["time", "instance", "kind", "severity", "count", "actor"]),
        (["events", "--fleet"], ["time", "instance", "kind", "severity", "count", "actor"]),
        (["instance", "events", "toobig", "-p", "demo"], ["time", "kind", "severity", "count"]),
    ):
        shown = ok(sky(server, *args))
        narrow(shown)
        page = json.loads(ok(sky(server, *args, "--json")))["items"]
        events = event_rows(shown, headers)
        assert [e["kind"] for e in events] == [
            e["kind"].removeprefix("instance.") for e in common.by_latest(page)
        ]
        assert [e["severity"] for e in events] == [e["severity"] for e in common.by_latest(page)]
        if "instance" in headers:
            names = {
                i["id"]: i["name"]
                for i in api(server, "GET", "/v1/instances", params={"project": "demo"})["items"]
            }
            prefix = "demo/" if "--fleet" in args else ""
            assert [e["instance"] for e in events] == [
                prefix + names[e["instance_id"]] for e in common.by_latest(page)
            ]
        failed = next(e for e in page if e["kind"] == "instance.start_failed")
        words_whole(shown, failed["reason"]["message"])  # under its event, whole width

    hook = "https://hooks.example.com/services/T000/B000/a-path-longer-than-its-column"
    ok(sky(server, "webhook", "create", "pager-for-the-night-shift", "--endpoint", hook,
           "--secret", "s3cret-value", "--subscribe", "instance.auto_restart_gave_up",
           "--subscribe", "instance.operation_adopted"))  # fmt: skip
    receivers = ok(sky(server, "webhook", "list"))
    narrow(receivers)
    (pager,) = table_rows(receivers, ["name", "subscriptions", "endpoint"])
    assert pager["name"] == "pager-for-the-night-shift"
    assert pager["subscriptions"] == "instance.auto_restart_gave_up"
    words_whole(receivers, "instance.auto_restart_gave_up instance.operation_adopted")
    at = receivers.splitlines()[0].index("endpoint")
    endpoint = "".join(line[at:].strip() for line in receivers.splitlines()[2:])
    assert endpoint == hook  # folded in its own column, all of it

    busy = next(s for s in sleds if s["reserved_hardware_threads"])
    on_it = ok(sky(server, "sled", "show", busy["id"]))
    narrow(on_it)
    (first,) = table_rows(on_it, ["instance", "project", "state", "vCPUs", "GiB"])
    assert first == {
        "instance": "wide",
        "project": "demo",
        "state": "running",
        "vCPUs": "3",
        "GiB": "2",
    }


def test_coalesced_events_are_shown_by_their_last_occurrence(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The API lists events in its cursor order; a repeat folded into an older event is as
    recent as its last occurrence, and the CLI shows it there."""
    items = [  # first occurrence order, newest first
        {
            "id": "b",
            "kind": "instance.auto_restart_failed",
            "severity": "error",
            "count": 1,
            "time": "2026-01-01T07:11:00Z",
            "time_last": "2026-01-01T07:11:00Z",
            "actor": {"type": "control_plane", "cause": "auto_restart"},
            "run_state": "failed",
        },
        {
            "id": "a",
            "kind": "instance.placed",
            "severity": "info",
            "count": 4,
            "time": "2026-01-01T07:10:00Z",
            "time_last": "2026-01-01T07:12:30.5Z",
            "actor": {"type": "control_plane", "cause": "auto_restart"},
            "run_state": "starting",
        },
    ]
    console = Console(file=StringIO(), width=WIDTH)
    monkeypatch.setattr(common, "out", console)
    common.print_events(items, "events")
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    kinds = [r["kind"] for r in event_rows(shown, ["time", "kind", "severity", "count"])]
    assert kinds == ["placed", "auto_restart_failed"]
    assert [e["id"] for e in common.by_latest(items, newest_first=False)] == ["b", "a"]


# -- resize and update -----------------------------------------------------------------------


def test_resize_refused_while_running_then_done_stopped_keeping_the_rest(
    server: ServerProcess,
) -> None:
    ok(
        sky(
            server,
            "instance",
            "create",
            "rs",
            "-p",
            "demo",
            "--cpus",
            "1",
            "--memory",
            "1",
            "--auto-restart",
            "never",
        )
    )
    refused = sky(server, "instance", "resize", "rs", "-p", "demo", "--ncpus", "2")
    assert refused.returncode == 1, refused  # an API error without a reason: exit 1
    assert "must be stopped" in " ".join(refused.stderr.split())
    assert api(server, "GET", "/v1/instances/rs", params={"project": "demo"})["ncpus"] == 1

    ok(sky(server, "instance", "stop", "rs", "-p", "demo"))
    shown = ok(
        sky(server, "instance", "resize", "rs", "-p", "demo", "--ncpus", "2", "--memory", "1536MiB")
    )
    assert "2 vCPUs, 1.5 GiB" in shown
    body = json.loads(
        ok(sky(server, "instance", "resize", "rs", "-p", "demo", "--memory", "3GiB", "--json"))
    )
    assert (body["ncpus"], body["memory"]) == (2, 3 * GiB)  # vCPUs kept
    assert body["auto_restart_policy"] == "never"  # the settings not given are kept

    body = json.loads(
        ok(
            sky(
                server,
                "instance",
                "update",
                "rs",
                "-p",
                "demo",
                "--jumbo-frames",
                "--auto-restart-policy",
                "best_effort",
                "--json",
            )
        )
    )
    assert body["enable_jumbo_frames"] is True and body["auto_restart_policy"] == "best_effort"
    assert (body["ncpus"], body["memory"]) == (2, 3 * GiB)
    shown = ok(
        sky(
            server,
            "instance",
            "update",
            "rs",
            "-p",
            "demo",
            "--no-jumbo-frames",
            "--auto-restart-policy",
            "default",
            "--cpu-platform",
            "amd_milan",
        )
    )
    assert "default (enabled)" in shown  # the control plane's policy (null)
    body = api(server, "GET", "/v1/instances/rs", params={"project": "demo"})
    assert body["enable_jumbo_frames"] is False and body["auto_restart_policy"] is None
    assert body["cpu_platform"] == "amd_milan"
    ok(sky(server, "instance", "update", "rs", "-p", "demo", "--cpu-platform", "any"))
    assert (
        api(server, "GET", "/v1/instances/rs", params={"project": "demo"})["cpu_platform"] is None
    )
    no_disk = sky(server, "instance", "update", "rs", "-p", "demo", "--boot-disk", "nodisk")
    assert no_disk.returncode == 1 and 'disk with name "nodisk"' in no_disk.stderr  # sent as given
    assert sky(server, "instance", "update", "rs", "-p", "demo").returncode == 2  # nothing to do
    assert sky(server, "instance", "resize", "rs", "-p", "demo").returncode == 2


def test_resize_with_start_shows_how_the_start_ended(server: ServerProcess) -> None:
    ok(
        sky(
            server,
            "instance",
            "create",
            "grow",
            "-p",
            "demo",
            "--cpus",
            "1",
            "--memory",
            "1",
            "--no-start",
        )
    )
    failed = sky(server, "instance", "resize", "grow", "-p", "demo", "--ncpus", "9", "--start")
    assert failed.returncode == 4, failed  # permanent: no sled has 9 vCPUs
    assert "9 vCPUs, 1 GiB" in failed.stdout  # the change was made
    said = " ".join(failed.stderr.split())
    assert "exceeds_sled_size" in said and "what to do: Request at most 8 vCPUs" in said
    # The fix, carried out where it is given: resize as the reason says, and start at once.
    fixed = sky(server, "instance", "resize", "grow", "-p", "demo", "--ncpus", "8", "--start")
    assert fixed.returncode == 0, fixed
    assert "8 vCPUs, 1 GiB" in fixed.stdout and "running grow" in fixed.stdout
    as_json = json.loads(
        ok(sky(server, "instance", "resize", "grow", "-p", "demo", "--ncpus", "8", "--json"))
    )  # (running: an unchanged size is no change, so nothing is refused)
    assert as_json["run_state"] == "running" and as_json["ncpus"] == 8
    ok(sky(server, "instance", "stop", "grow", "-p", "demo"))


# -- operator detail, by role ----------------------------------------------------------------


def test_show_and_events_give_operator_detail_to_operators_only(
    server: ServerProcess, user_token: str
) -> None:
    ok(
        sky(
            server,
            "instance",
            "create",
            "crashy",
            "-p",
            "demo",
            "--cpus",
            "1",
            "--memory",
            "1",
            "--auto-restart",
            "never",
        )
    )
    api(server, "POST", "/v1/system/sim/instances/crashy/crash", params={"project": "demo"})
    body = api(server, "GET", "/v1/instances/crashy", params={"project": "demo"})
    assert body["run_state"] == "failed"
    sled_id = body["status_reason"]["internal"]["sled_id"]

    shown = ok(sky(server, "instance", "show", "crashy", "-p", "demo"))
    assert "operator detail" in shown and sled_id in shown and "vmm_failure" in shown
    events = ok(sky(server, "instance", "events", "crashy", "-p", "demo"))
    assert "operator detail: " in events and f"sled_id={sled_id}" in events

    as_user = ok(sky(server, "instance", "show", "crashy", "-p", "demo", token=user_token))
    assert "vmm_failure" in as_user and "stopped unexpectedly" in as_user
    assert "operator detail" not in as_user and sled_id not in as_user
    user_events = ok(sky(server, "instance", "events", "crashy", "-p", "demo", token=user_token))
    assert "vmm_failure" in user_events
    assert "operator detail" not in user_events and sled_id not in user_events


def test_show_has_no_cooldown_line(server: ServerProcess) -> None:
    """The cooldown is not when the next automatic restart is: it is not shown as if it were."""
    from tests.oxide_schema import wait_for

    ok(sky(server, "instance", "create", "cool", "-p", "demo", "--cpus", "1", "--memory", "1"))
    api(server, "POST", "/v1/system/sim/instances/cool/crash", params={"project": "demo"})

    def restarted() -> Any:
        body = api(server, "GET", "/v1/instances/cool", params={"project": "demo"})
        return body if body["auto_restart_cooldown_expiration"] else None

    wait_for(restarted, "an automatic restart (and so a cooldown)")
    shown = ok(sky(server, "instance", "show", "cool", "-p", "demo"))
    assert "cooldown" not in shown
    assert "default (enabled)" in shown

    # A second crash waits for the cooldown: show tells the story, with the real next attempt.
    api(server, "POST", "/v1/system/sim/instances/cool/crash", params={"project": "demo"})

    def waiting() -> Any:
        body = api(server, "GET", "/v1/instances/cool", params={"project": "demo"})
        reason = body["status_reason"]
        scheduled = reason and (reason.get("auto_restart") or {}).get("state") == "scheduled"
        return body if scheduled else None

    reason = wait_for(waiting, "a scheduled automatic restart")["status_reason"]
    shown = ok(sky(server, "instance", "show", "cool", "-p", "demo"))
    narrow(shown)
    flat = " ".join(shown.split())
    assert f"what happened {reason['happened']}" in flat
    assert f"skylight is doing {reason['doing']}" in flat
    assert f"what to do {reason['action']}" in flat
    assert "Skylight retries" in flat
    assert "next at" in flat and "cooldown" not in flat


# -- watch -----------------------------------------------------------------------------------


def test_watch_shows_recent_history_first_in_aligned_columns(server: ServerProcess) -> None:
    ok(sky(server, "instance", "create", "hist", "-p", "demo", "--cpus", "1", "--memory", "1"))
    ok(sky(server, "instance", "stop", "hist", "-p", "demo"))
    ok(sky(server, "instance", "start", "hist", "-p", "demo", "--wait"))
    watched = sky(server, "instance", "watch", "hist", "-p", "demo", "--until-settled")
    out = ok(watched)
    narrow(out)
    page = json.loads(
        ok(sky(server, "instance", "events", "hist", "-p", "demo", "--json", "--limit", "10"))
    )["items"]
    rows = event_rows(out, ["time", "kind", "severity", "count", "state", "actor"])
    want = common.by_latest(page, newest_first=False)  # oldest first
    assert [r["kind"] for r in rows] == [e["kind"].removeprefix("instance.") for e in want]
    assert [r["state"] for r in rows] == [e["run_state"] for e in want]
    assert rows[0]["kind"] == "created" and rows[-1]["kind"] == "running"
    assert "hist is already running" in out
