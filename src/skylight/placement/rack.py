"""The rack as columns: one numpy array per sled attribute, so that a filter step looks at
every sled in one vectorised operation. Placement at 10,000 sleds is a few array passes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt

from skylight.placement.model import SledView

Mask = npt.NDArray[np.bool_]
Ints = npt.NDArray[np.int64]
Sigs = npt.NDArray[np.uint8]
Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Capacity:
    cpus: int
    memory: int
    local_storage: int


@dataclass(frozen=True)
class Rack:
    ids: list[str]
    index: dict[str, int]
    in_service: Mask
    provisionable: Mask
    cpu_family: npt.NDArray[np.object_]
    # The CPU family as a small integer per sled (``families`` maps names to codes), so
    # the platform step compares integers, not strings.
    family_code: Ints
    families: dict[str, int]
    cpus: Ints
    memory: Ints
    local_storage: Ints
    free_cpus: Ints
    free_memory: Ints
    free_local_storage: Ints
    free_cpus_f: npt.NDArray[np.float64]
    free_memory_f: npt.NDArray[np.float64]
    # The smallest capacity of any sled, per resource (a quick "it fits anywhere" test).
    smallest: Capacity
    # Free share of each sled (0..2): what the choice among fitting sleds is weighted by.
    free_share: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.ids)

    @cached_property
    def most_free(self) -> Ints:
        """Per resource (vCPUs, memory, local storage), the positions of the sleds that take
        instances (in service, provisionable), most free first: the closest sled to a request
        that fits nowhere is found near the head of these (see ``diagnosis._closest``).
        Sorted once per rack, the first time a diagnosis asks."""
        usable = np.flatnonzero(self.in_service & self.provisionable)
        free = np.stack([self.free_cpus, self.free_memory, self.free_local_storage])[:, usable]
        return usable[np.argsort(-free, axis=1, kind="stable")]

    def members(self, sled_ids: frozenset[str]) -> Mask:
        """A mask of the given sleds (ids not in this rack are ignored)."""
        mask = np.zeros(len(self.ids), dtype=bool)
        idx = [self.index[s] for s in sled_ids if s in self.index]
        if idx:
            mask[idx] = True
        return mask

    @classmethod
    def of(cls, sleds: Sequence[SledView]) -> Rack:
        def ints(values: list[int]) -> Ints:
            return np.array(values, dtype=np.int64)

        cpus = ints([s.cpus for s in sleds])
        memory = ints([s.memory for s in sleds])
        free_cpus = cpus - ints([s.reserved_cpus for s in sleds])
        free_memory = memory - ints([s.reserved_memory for s in sleds])
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.nan_to_num(free_cpus / cpus) + np.nan_to_num(free_memory / memory)
        local = ints([s.local_storage for s in sleds])
        families: dict[str, int] = {}
        codes = ints([families.setdefault(s.cpu_family, len(families)) for s in sleds])
        return cls(
            ids=[s.id for s in sleds],
            index={s.id: i for i, s in enumerate(sleds)},
            in_service=np.array([s.in_service for s in sleds], dtype=bool),
            provisionable=np.array(
                [s.provision_policy == "provisionable" and s.reachable for s in sleds],
                dtype=bool,
            ),
            cpu_family=np.array([s.cpu_family for s in sleds], dtype=object),
            family_code=codes,
            families=families,
            cpus=cpus,
            memory=memory,
            local_storage=local,
            free_cpus=free_cpus,
            free_memory=free_memory,
            free_local_storage=local - ints([s.reserved_local_storage for s in sleds]),
            free_cpus_f=free_cpus.astype(np.float64),
            free_memory_f=free_memory.astype(np.float64),
            free_share=np.maximum(share, 0.0),
            smallest=Capacity(
                int(cpus.min()) if len(sleds) else 0,
                int(memory.min()) if len(sleds) else 0,
                int(local.min()) if len(sleds) else 0,
            ),
        )
