"""The house has one direction: these tests read the imports of ``src/skylight`` and fail
when a change makes a room import one above it, or ties rooms into a circle."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "skylight"

# Rooms from the top floor down: a room may import only rooms listed after it (and itself).
# A room is a top-level module or package of skylight.
FLOORS = [
    "cli",
    "api sled_agent",  # the two servers: the control plane's API, a simulated sled's agent
    "controlplane",
    "background",
    "operations",
    "sagas",
    "groups disks projects",
    "lookup instances webhooks",
    "services errors identity",
    "sled store",
    "placement",
    "events config clock ids metrics console testing wire login_flow rack_secret",
]


def _room(module: str) -> str:
    return module.split(".")[1] if module.startswith("skylight.") else module


def _imports() -> dict[str, set[tuple[str, str]]]:
    """room -> {(importing file, imported module)} for every skylight import in it."""
    found: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC.parent).with_suffix("")
        module = ".".join(rel.parts)
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                if name.startswith("skylight."):
                    found[_room(module)].add((module, name))
    return found


def _floor(room: str) -> int:
    for i, rooms in enumerate(FLOORS):
        if room in rooms.split():
            return i
    raise AssertionError(f"room {room!r} has no floor in FLOORS: add it where it belongs")


def test_every_room_has_a_floor() -> None:
    rooms = {p.stem if p.is_file() else p.name for p in SRC.iterdir() if p.name != "__init__.py"}
    rooms = {r for r in rooms if not r.startswith(("_", ".")) and r != "py"}
    for room in rooms:
        _floor(room)


def test_no_room_imports_one_above_it() -> None:
    upward = [
        f"{module} -> {target}"
        for room, edges in _imports().items()
        for module, target in edges
        if _room(target) != room and _floor(_room(target)) < _floor(room)
    ]
    assert not upward, "imports up a floor:\n" + "\n".join(sorted(upward))


@pytest.mark.parametrize(
    ("room", "forbidden"),
    [
        # sagas know nothing of HTTP, of who asked, or of what runs them
        ("sagas", ("skylight.api", "skylight.operations", "skylight.controlplane")),
        # the domain below the sagas does not start them
        ("instances", ("skylight.sagas", "skylight.operations")),
    ],
)
def test_rooms_keep_to_their_job(room: str, forbidden: tuple[str, ...]) -> None:
    wrong = [
        f"{module} -> {target}"
        for module, target in _imports()[room]
        if target.startswith(forbidden)
    ]
    assert not wrong, wrong


def test_routes_only_parse_call_and_render() -> None:
    """No route module reaches the store or builds SQL: it calls one operation."""
    wrong = []
    for path in (SRC / "api" / "routes").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            wrong += [
                f"{path.name}: {n}" for n in names if n.startswith(("skylight.store", "sqlalchemy"))
            ]
    assert not wrong, wrong
