"""The simulated rack's memory: cheap writes (no fsync per VMM change) that still outlive a
process that dies without closing anything (issue 14: the agent's write was on the event
loop, synced)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from skylight.sled.sim import _Persistence, _Vmm


def test_writes_are_not_fsynced_but_outlive_a_killed_process(tmp_path: Path) -> None:
    path = tmp_path / "rack.db"
    child = textwrap.dedent(
        f"""
        import os
        from pathlib import Path
        from skylight.sled.sim import _Persistence, _Vmm
        store = _Persistence(Path({str(path)!r}))
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        store.put_vmm(_Vmm("v1", "i1", "s1", "running"))
        os._exit(0)  # no close, no checkpoint: as a SIGKILL leaves it
        """
    )
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    vmms, _faults, _power = _Persistence(path).load()
    assert vmms == [_Vmm("v1", "i1", "s1", "running")]
