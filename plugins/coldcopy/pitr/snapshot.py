"""Which archived transactions a base backup already holds: its dump's ``pg_current_snapshot()``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Snapshot:
    """``pg_current_snapshot()`` of the base backup's dump: which transactions it already contains."""

    xmin: int
    xmax: int
    xip: frozenset[int]

    @classmethod
    def parse(cls, text: str) -> Snapshot:
        xmin, xmax, xip = text.split(":")
        return cls(int(xmin), int(xmax), frozenset(int(x) for x in xip.split(",") if x))

    def visible(self, xid32: int) -> bool:
        """Whether the 32-bit xid pgoutput reports committed before the snapshot was taken."""
        # the full xid nearest xmax (xids live within 2^31 of it): xmax plus the signed 32-bit distance
        full = self.xmax + ((xid32 - self.xmax + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
        return full < self.xmin or (full < self.xmax and full not in self.xip)
