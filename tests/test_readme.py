"""The README's tour runs top to bottom on a fresh ``make run``, as a reader would run it.

Every ``sh`` block of its "A short tour" and "The CLI" sections is run, in order, by one
bash, against a server started as ``make run`` starts it (default settings, a generated
recovery password in ``.skylight``), in a fresh directory: only the port differs. A command
must exit 0, unless the README says otherwise on its last line (``# exits N``), in which case
it must exit N.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from skylight.testing import ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

README = Path(__file__).resolve().parents[1] / "README.md"
# The sections a reader runs in order: the tour, and the CLI's (which follows on from it).
TOUR = ("## A short tour", "## The CLI")
DEFAULT_ADDRESS = "127.0.0.1:12220"
EXPECTED_EXIT = re.compile(r"#.*\bexits (\d+)\b")
FAILED = 99  # what the generated script exits with when a command exits otherwise


@dataclass(frozen=True)
class Command:
    """One command of the tour (possibly over several lines) and the exit it must have."""

    text: str
    exits: int


def tour_blocks(readme: str) -> list[str]:
    """The ``sh`` blocks of the tour's sections (each up to the next ``## `` heading)."""
    blocks: list[str] = []
    for heading in TOUR:
        start = readme.index(heading)
        end = readme.find("\n## ", start + len(heading))
        section = readme[start : end if end != -1 else len(readme)]
        blocks += re.findall(r"^```sh\n(.*?)^```$", section, flags=re.S | re.M)
    return blocks


def _complete(text: str) -> bool:
    """Whether bash reads ``text`` as whole commands (no open quote, loop or ``\\``)."""
    if text.endswith("\\"):
        return False
    check = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True)
    return check.returncode == 0


def commands(block: str) -> list[Command]:
    """The block's commands, each as bash reads it, with the exit its last line expects."""
    found: list[Command] = []
    pending: list[str] = []
    for line in block.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending.append(line)
        text = "\n".join(pending)
        if _complete(text):
            match = EXPECTED_EXIT.search(pending[-1])
            found.append(Command(text, int(match.group(1)) if match else 0))
            pending = []
    assert not pending, f"an unfinished command in the README's tour: {pending}"
    return found


def script(tour: list[Command]) -> str:
    """One bash script: each command, then a check of its exit status."""
    lines = ["set -o pipefail"]
    for i, command in enumerate(tour):
        lines += [
            command.text,
            f'rc=$?; if [ "$rc" -ne {command.exits} ]; then '
            f'echo "TOUR STEP {i} EXITED $rc" >&2; exit {FAILED}; fi',
        ]
    return "\n".join(lines) + "\n"


def test_the_parser_reads_commands_and_their_expected_exits() -> None:
    block = (
        "# a comment\n"
        "A=1\n"
        "api -X POST x \\\n"
        "  -d '{}'   # exits 22\n"
        "until false; do\n"
        "  sleep 1   # exits 9 (inside: not the last line)\n"
        "done\n"
    )
    assert commands(block) == [
        Command("A=1", 0),
        Command("api -X POST x \\\n  -d '{}'   # exits 22", 22),
        Command("until false; do\n  sleep 1   # exits 9 (inside: not the last line)\ndone", 0),
    ]


def test_the_tour_runs_top_to_bottom(tmp_path: Path) -> None:
    for tool in ("bash", "curl", "jq"):
        assert shutil.which(tool), f"the README's tour needs {tool}"
    tour = [c for block in tour_blocks(README.read_text()) for c in commands(block)]
    assert tour, "no sh block in the README's tour"

    # `skylight` on PATH: this checkout's, as `.venv/bin/skylight` would be.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    skylight = bin_dir / "skylight"
    skylight.write_text(f'#!/bin/sh\nexec {sys.executable} -m skylight.cli.main "$@"\n')
    skylight.chmod(skylight.stat().st_mode | stat.S_IXUSR)

    # The server as `make run` runs it, in a fresh directory: its data in ./.skylight, the
    # recovery password generated there on the first start.
    server = ServerProcess(tmp_path / ".skylight")
    server.env["SKYLIGHT_RECOVERY_PASSWORD"] = ""
    address = f"127.0.0.1:{server.port}"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path / "home"),  # the CLI keeps its token under ~/.config
        "SKYLIGHT_URL": f"http://{address}",
        "COLUMNS": "100",
    }
    env.pop("SKYLIGHT_TOKEN", None)
    with server:
        run = subprocess.run(
            ["bash", "-c", script(tour).replace(DEFAULT_ADDRESS, address)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    output = run.stdout + run.stderr
    step = re.search(r"TOUR STEP (\d+) EXITED (\d+)", run.stderr)
    if step is not None:
        command = tour[int(step.group(1))]
        pytest.fail(
            f"the README's tour: {command.text!r} exited {step.group(2)}, "
            f"expected {command.exits}\n{output[-6000:]}"
        )
    assert run.returncode == 0, output[-6000:]
