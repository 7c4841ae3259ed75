"""How large an instance may be asked to be, whatever the rack holds (a request beyond
these is refused before anything is written; one beyond the sleds fails placement)."""

from __future__ import annotations

from skylight.errors import InvalidRequest

GiB = 1024**3
MAX_VCPUS = 254
MIN_MEMORY = 1 * GiB
MAX_MEMORY = 1536 * GiB


def check_size(ncpus: int, memory: int) -> None:
    if not 1 <= ncpus <= MAX_VCPUS:
        raise InvalidRequest(f"ncpus must be between 1 and {MAX_VCPUS}")
    if memory < MIN_MEMORY:
        raise InvalidRequest("memory must be at least 1 GiB")
    if memory > MAX_MEMORY:
        raise InvalidRequest("memory must be at most 1536 GiB")
    if memory % (1024 * 1024):
        raise InvalidRequest("memory must be a multiple of 1 MiB")
