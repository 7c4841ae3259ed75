"""``skylight`` as a client of the API, driving a real server (2 sleds of 8 threads)."""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from skylight.cli.common import SseMessage, sse_messages
from skylight.cli.main import app
from skylight.testing import ServerProcess, free_port
from skylight.testing.server import ADMIN_PASSWORD

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("cli-client")
    proc = ServerProcess(
        Path(data),
        args=[
            *("--sim-sleds", "2", "--sim-sled-cpus", "8", "--sim-start-delay", "0.05"),
            *("--webhook-allow-cidr", "127.0.0.0/8"),  # the test receivers listen there
        ],
    )
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def sky(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """``sky("instance", "list", ...)``: run the CLI against the server, logged in as its
    admin with ``skylight login`` (its token kept under a config dir of its own); a demo
    project."""
    config = tmp_path_factory.mktemp("cli-config")
    password = config / "password"
    password.write_text(ADMIN_PASSWORD)
    env = {"XDG_CONFIG_HOME": str(config), "SKYLIGHT_TOKEN": ""}

    def run(*args: str) -> Result:
        return CliRunner().invoke(app, [*args, "--url", server.url], env=env)

    login = run("login", "--username", "admin", "--password-file", str(password))
    assert login.exit_code == 0, login.output
    assert "Logged in" in login.output and ADMIN_PASSWORD not in login.output
    assert (config / "skylight" / "credentials.toml").stat().st_mode & 0o777 == 0o600
    assert run("project", "create", "demo", "--description", "CLI tests").exit_code == 0
    yield run


def flat(text: str) -> str:
    """The output with its line wrapping undone (Rich wraps at the terminal's width)."""
    return " ".join(text.split())


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output
    return result


# -- projects --------------------------------------------------------------------------------


def test_project_create_list_show_delete(sky: Any) -> None:
    out = ok(sky("project", "create", "scratch", "--description", "throwaway")).output
    assert "created project scratch" in out
    assert "scratch" in ok(sky("project", "list")).output
    listed = json.loads(ok(sky("project", "list", "--json")).stdout)
    assert {"demo", "scratch"} <= {p["name"] for p in listed["items"]}
    shown = ok(sky("project", "show", "scratch")).output
    assert "throwaway" in shown and "id" in shown
    assert json.loads(ok(sky("project", "show", "scratch", "--json")).stdout)["name"] == "scratch"
    assert "deleted project scratch" in ok(sky("project", "delete", "scratch")).output
    gone = sky("project", "show", "scratch")
    assert gone.exit_code == 1
    assert "not found" in gone.output


# -- instances -------------------------------------------------------------------------------


def test_instance_create_waits_until_running(sky: Any) -> None:
    result = ok(sky("instance", "create", "web", "-p", "demo", "--cpus", "2", "--memory", "4"))
    assert "running web" in result.output
    assert "web" in ok(sky("instance", "list", "-p", "demo")).output
    shown = ok(sky("instance", "show", "web", "-p", "demo")).output
    assert "run_state" in shown and "running" in shown and "2 vCPUs, 4 GiB" in shown
    body = json.loads(ok(sky("instance", "show", "web", "-p", "demo", "--json")).stdout)
    assert body["run_state"] == "running"
    assert body["intended_state"] == "running"
    assert body["status_reason"] is None
    assert body["memory"] == 4 * 1024**3


def test_instance_stop_start_reboot_delete(sky: Any) -> None:
    ok(sky("instance", "create", "app", "-p", "demo", "--cpus", "1", "--memory", "1"))
    stopped = json.loads(ok(sky("instance", "stop", "app", "-p", "demo", "--json")).stdout)
    assert stopped["run_state"] == "stopped"
    assert "running app" in ok(sky("instance", "start", "app", "-p", "demo", "--wait")).output
    rebooted = ok(sky("instance", "reboot", "app", "-p", "demo")).output
    assert "app" in rebooted and "run_state" in rebooted
    # A running instance cannot be deleted: an API error, exit 1.
    refused = sky("instance", "delete", "app", "-p", "demo")
    assert refused.exit_code == 1
    assert "cannot delete instance" in flat(refused.output)
    ok(sky("instance", "stop", "app", "-p", "demo"))
    assert "deleted instance app" in ok(sky("instance", "delete", "app", "-p", "demo")).output
    assert sky("instance", "show", "app", "-p", "demo").exit_code == 1


def test_start_that_cannot_fit_exits_4_with_the_reason(sky: Any) -> None:
    ok(
        sky(
            "instance", "create", "huge", "-p", "demo", "--cpus", "9", "--memory", "4", "--no-start"
        )
    )
    result = sky("instance", "start", "huge", "-p", "demo", "--wait")
    assert result.exit_code == 4, result.output  # permanent: the user must change something
    out = flat(result.output)
    assert "exceeds_sled_size" in out
    assert "larger than any sled can hold" in out  # the message
    assert "what to do: Request at most 8 vCPUs" in out  # the action
    # Without --wait: the API's own answer (507 with the reason) exits the same way.
    direct = sky("instance", "start", "huge", "-p", "demo")
    assert direct.exit_code == 4, direct.output
    assert "Request at most 8 vCPUs" in flat(direct.output)
    # The reason stays on the instance for whoever looks later.
    shown = flat(ok(sky("instance", "show", "huge", "-p", "demo")).output)
    assert "exceeds_sled_size" in shown
    assert "needs a change by you" in shown
    assert "what to do Request at most 8 vCPUs" in shown


def test_create_that_cannot_fit_exits_4(sky: Any) -> None:
    result = sky("instance", "create", "bigger", "-p", "demo", "--cpus", "12", "--memory", "2")
    assert result.exit_code == 4, result.output
    assert "exceeds_sled_size" in result.output
    body = json.loads(ok(sky("instance", "show", "bigger", "-p", "demo", "--json")).stdout)
    assert body["run_state"] == "stopped"
    assert body["status_reason"]["code"] == "exceeds_sled_size"
    assert body["status_reason"]["transient"] is False


def test_sleds_in_maintenance_exit_3_then_recover(sky: Any) -> None:
    sleds = json.loads(ok(sky("sled", "list", "--json")).stdout)["items"]
    assert len(sleds) == 2
    ok(
        sky(
            "instance",
            "create",
            "later",
            "-p",
            "demo",
            "--cpus",
            "1",
            "--memory",
            "1",
            "--no-start",
        )
    )
    try:
        for s in sleds:
            out = ok(sky("sled", "set-policy", s["id"], "non_provisionable")).output
            assert "non_provisionable" in out
        shown = ok(sky("sled", "show", sleds[0]["id"])).output
        assert "non_provisionable" in shown
        listed = json.loads(ok(sky("sled", "list", "--json")).stdout)["items"]
        assert {s["policy"]["provision_policy"] for s in listed} == {"non_provisionable"}
        result = sky("instance", "start", "later", "-p", "demo", "--wait")
        assert result.exit_code == 3, result.output  # transient: may pass by itself
        out = flat(result.output)
        assert "capacity_in_maintenance" in out
        assert "may pass by itself" in out
        assert "what to do:" in out
    finally:
        for s in sleds:
            ok(sky("sled", "set-policy", s["id"], "provisionable"))
    # It passed by itself (an operator brought the sleds back): the same start now runs.
    assert "running later" in ok(sky("instance", "start", "later", "-p", "demo", "--wait")).output
    ok(sky("instance", "stop", "later", "-p", "demo"))


def test_bad_sled_policy_is_a_usage_error(sky: Any) -> None:
    sleds = json.loads(ok(sky("sled", "list", "--json")).stdout)["items"]
    assert sky("sled", "set-policy", sleds[0]["id"], "sometimes").exit_code == 2


def test_sled_list_and_show(sky: Any, server: ServerProcess) -> None:
    ok(sky("instance", "create", "sized", "-p", "demo", "--cpus", "3", "--memory", "2"))
    listed = ok(sky("sled", "list")).output
    sleds = json.loads(ok(sky("sled", "list", "--json")).stdout)["items"]
    for s in sleds:
        assert s["id"] in listed  # whole ids: they are what set-policy takes
        assert f"{s['reserved_hardware_threads']}/8" in listed
    busy = next(s for s in sleds if s["reserved_hardware_threads"] >= 3)
    shown = ok(sky("sled", "show", busy["id"])).output
    assert "threads used/total" in shown
    assert "sized" in shown  # the instances on it
    assert json.loads(ok(sky("sled", "show", busy["id"], "--json")).stdout)["id"] == busy["id"]
    missing = sky("sled", "show", "00000000-0000-4000-8000-000000000000")
    assert missing.exit_code == 1
    assert "not found" in missing.output


# -- events ----------------------------------------------------------------------------------


def test_instance_events_table_and_filters(sky: Any) -> None:
    ok(sky("instance", "create", "ev", "-p", "demo", "--cpus", "9", "--memory", "1", "--no-start"))
    assert sky("instance", "start", "ev", "-p", "demo", "--wait").exit_code == 4
    table = ok(sky("instance", "events", "ev", "-p", "demo")).output
    for column in ("time", "kind", "severity", "count", "actor"):
        assert column in table
    assert "start_failed" in table and "created" in table
    # The reason, on its own lines under its event (a column 80 wide has no room for it).
    lines = table.splitlines()
    failed = next(i for i, line in enumerate(lines) if "start_failed" in line)
    assert lines[failed + 1].startswith("    exceeds_sled_size: ")
    page = json.loads(ok(sky("instance", "events", "ev", "-p", "demo", "--json")).stdout)
    kinds = [e["kind"] for e in page["items"]]
    assert kinds[0] == "instance.start_failed"  # newest first
    assert kinds[-1] == "instance.created"
    errors = json.loads(
        ok(sky("instance", "events", "ev", "-p", "demo", "--severity", "error", "--json")).stdout
    )
    assert errors["items"] and {e["severity"] for e in errors["items"]} == {"error"}
    one = json.loads(
        ok(
            sky("instance", "events", "ev", "-p", "demo", "--kind", "instance.created", "--json")
        ).stdout
    )
    assert [e["kind"] for e in one["items"]] == ["instance.created"]
    limited = json.loads(
        ok(sky("instance", "events", "ev", "-p", "demo", "--limit", "1", "--json")).stdout
    )
    assert len(limited["items"]) == 1 and limited["next_page"]


def test_project_and_fleet_events(sky: Any) -> None:
    ok(sky("instance", "create", "pev", "-p", "demo", "--cpus", "1", "--memory", "1", "--no-start"))
    project = json.loads(ok(sky("events", "-p", "demo", "--limit", "100", "--json")).stdout)
    assert any(e["kind"] == "instance.created" for e in project["items"])
    fleet = json.loads(ok(sky("events", "--fleet", "--limit", "100", "--json")).stdout)
    created = next(e for e in project["items"] if e["kind"] == "instance.created")
    assert created["id"] in {e["id"] for e in fleet["items"]}
    table = ok(sky("events", "-p", "demo", "--limit", "5")).output
    assert "pev" in table  # instances by name
    assert "demo/" in ok(sky("events", "--fleet", "--limit", "5")).output
    assert sky("events").exit_code == 2  # which events: --project or --fleet


# -- errors ----------------------------------------------------------------------------------


def test_unknown_instance_exits_1_with_the_message(sky: Any) -> None:
    result = sky("instance", "show", "nope", "-p", "demo")
    assert result.exit_code == 1
    assert "ObjectNotFound" in result.output
    assert 'instance with name "nope"' in result.output
    assert sky("instance", "start", "nope", "-p", "demo", "--wait").exit_code == 1
    assert sky("instance", "events", "nope", "-p", "demo").exit_code == 1


def test_unreachable_server_exits_1_clearly() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for args in (["project", "list"], ["instance", "watch", "x", "-p", "demo"]):
        result = CliRunner().invoke(app, [*args, "--url", url])
        assert result.exit_code == 1, result.output
        assert f"cannot reach Skylight at {url}" in flat(result.output)


# -- the live stream -------------------------------------------------------------------------


def test_sse_parser() -> None:
    lines = [
        "retry: 2000",
        "",
        ": keepalive",
        "",
        "id: 7",
        "event: instance_event",
        'data: {"a":',
        "data: 1}",
        "",
    ]
    assert list(sse_messages(lines)) == [
        SseMessage(None, "message", "", 2000),
        SseMessage("7", "instance_event", '{"a":\n1}', None),
    ]


def _lines(stream: Any, into: queue.Queue[str]) -> None:
    for line in iter(stream.readline, ""):
        into.put(line)


def test_watch_until_settled_prints_the_running_event(sky: Any, server: ServerProcess) -> None:
    ok(
        sky(
            "instance",
            "create",
            "watched",
            "-p",
            "demo",
            "--cpus",
            "1",
            "--memory",
            "1",
            "--no-start",
        )
    )
    cmd = [sys.executable, "-m", "skylight.cli.main", "instance", "watch", "watched"]
    cmd += ["-p", "demo", "--until-settled", "--url", server.url]
    env = os.environ | {"PYTHONUNBUFFERED": "1", "COLUMNS": "200", "SKYLIGHT_TOKEN": server.token}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        errors: queue.Queue[str] = queue.Queue()
        threading.Thread(target=_lines, args=(proc.stderr, errors), daemon=True).start()
        seen = []
        while not any("watching" in line for line in seen):  # connected: nothing is missed
            try:
                seen.append(errors.get(timeout=15))
            except queue.Empty:
                proc.kill()
                pytest.fail(f"watch did not connect: {seen}")
        ok(sky("instance", "start", "watched", "-p", "demo"))
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 0, (out, seen)
    assert " start_requested " in out
    assert " running " in out
    # Once it runs, --until-settled has nothing to wait for.
    again = ok(sky("instance", "watch", "watched", "-p", "demo", "--until-settled"))
    assert "already running" in again.output


# -- webhooks --------------------------------------------------------------------------------


def test_webhook_commands(sky: Any) -> None:
    """Create a receiver, see an event reach it, read its deliveries, probe it, clean up."""
    from skylight.testing.receiver import WebhookReceiver as Receiver
    from tests.oxide_schema import wait_for

    rx = Receiver()
    try:
        out = ok(
            sky(
                "webhook",
                "create",
                "pager",
                "--endpoint",
                rx.url,
                "--secret",
                "s3cret",
                "--subscribe",
                "instance.start_failed",
            )
        ).output
        assert "created receiver pager" in out and "instance.start_failed" in flat(out)
        assert "pager" in ok(sky("webhook", "list")).output
        # A start no sled can ever take: its failure is sent, though nobody waited for it.
        made = sky("instance", "create", "hook-huge", "-p", "demo", "--cpus", "64", "--memory", "4")
        assert made.exit_code == 4, made.output  # permanent: larger than any sled
        wait_for(lambda: rx.bodies(), "the start failure's delivery")
        assert rx.bodies()[0]["data"]["reason"]["code"] == "exceeds_sled_size"
        listed = wait_for(
            lambda: (
                "delivered" in ok(sky("webhook", "deliveries", "pager")).output
                and ok(sky("webhook", "deliveries", "pager")).output
            ),
            "the delivered state",
        )
        assert "instance.start_failed" in listed and "succeeded (204)" in flat(listed)
        probed = ok(sky("webhook", "probe", "pager")).output
        assert "probe delivered" in probed
        rx.script = [500]
        failed_probe = sky("webhook", "probe", "pager")
        # A probe tells only whether it got through (no status code: no port mapping).
        assert failed_probe.exit_code == 1 and "probe failed" in failed_probe.output
        assert "500" not in failed_probe.output
        bad = sky("webhook", "subscribe", "pager", "disk.*")
        assert bad.exit_code == 1 and "matches no alert class" in flat(bad.output)
        assert "deleted receiver pager" in ok(sky("webhook", "delete", "pager")).output
    finally:
        rx.close()


def test_login_by_device_code_and_logout_revoking_the_token(
    server: ServerProcess, tmp_path: Path
) -> None:
    """`skylight login` with no password: it prints a code, a person confirms it in the
    console (here: through the API, as the console does), and the CLI keeps the token;
    `skylight logout` revokes it at once."""
    env = os.environ | {"XDG_CONFIG_HOME": str(tmp_path), "SKYLIGHT_TOKEN": ""}
    cmd = [sys.executable, "-m", "skylight.cli.main", "login", "--no-browser"]
    proc = subprocess.Popen([*cmd, "--url", server.url], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    code = re.search(r"Confirm the code (\S+) at (\S+)", line)
    assert code and code.group(2).endswith("/console/#/device"), line
    with server.client(timeout=30) as api:
        assert api.post("/device/confirm", json={"user_code": code.group(1)}).status_code == 204
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "Logged in" in out
    token = tomllib.loads((tmp_path / "skylight" / "credentials.toml").read_text())["hosts"][
        server.url
    ]["token"]
    headers = {"authorization": f"Bearer {token}"}
    assert httpx.get(f"{server.url}/v1/me", headers=headers).status_code == 200
    result = CliRunner().invoke(app, ["logout", "--url", server.url], env=env)
    assert result.exit_code == 0 and "Logged out" in result.output
    assert httpx.get(f"{server.url}/v1/me", headers=headers).status_code == 401
    assert "token" not in (tmp_path / "skylight" / "credentials.toml").read_text()
