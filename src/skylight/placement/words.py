"""Sizes in the words of placement's messages."""

from __future__ import annotations

from skylight.placement.model import Request

GiB = 1024**3


def gib(n: int) -> str:
    value = n / GiB
    return f"{value:.0f} GiB" if value == int(value) else f"{value:.1f} GiB"


def size(req: Request) -> str:
    text = f"{req.ncpus} vCPUs, {gib(req.memory)}"
    if req.local_storage:
        text += f", {gib(req.local_storage)} of local disks"
    return text
