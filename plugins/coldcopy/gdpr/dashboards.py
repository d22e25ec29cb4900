"""What an erasure needs of the dashboards: which of them read the erased rows' tables, and their refresh at
once so none keeps counting the people erased. The refresh wing provides it
(:class:`coldcopy.refresh.erasures.Dashboards`); whoever builds a :class:`~coldcopy.gdpr.Gdpr` hands it in."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import psycopg

from coldcopy.lock_retries import LockRetryPolicy


class DashboardRefresh(Protocol):
    def views_reading(self, tables: list[str]) -> list[str]:
        """The materialized views and summaries reading any of ``tables``."""

    def refresh(self, views: list[str], run_id: str) -> None:
        """Refresh ``views`` now."""


DashboardsFor = Callable[[psycopg.Connection, LockRetryPolicy], DashboardRefresh]
