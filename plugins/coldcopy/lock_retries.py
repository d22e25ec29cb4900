"""``with_lock_retries``: run a statement under a short ``lock_timeout`` and retry with backoff.

A DDL statement waiting for its lock sits in the lock queue *in front of* every later query on that
table, so an ALTER that waits 30 s behind a long transaction stalls the application for 30 s. Running it
with a short ``lock_timeout`` and retrying later (GitLab's ``with_lock_retries``) keeps it out of the way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import psycopg

T = TypeVar("T")
log = logging.getLogger(__name__)


class LockRetriesExhausted(RuntimeError):
    """Every attempt hit ``lock_timeout``: something held a conflicting lock for the whole schedule."""


@dataclass(frozen=True)
class LockRetryPolicy:
    """How long each attempt may wait for its lock and how long to back off in between.

    :param attempts: attempts before giving up.
    :param lock_timeout_ms: ``lock_timeout`` of the first attempt.
    :param max_lock_timeout_ms: ceiling for later attempts, which wait a little longer each time.
    :param backoff_s: sleep after the first failed attempt; doubles after each further one.
    :param max_backoff_s: ceiling of that sleep.
    """

    attempts: int = 6
    lock_timeout_ms: int = 1000
    max_lock_timeout_ms: int = 5000
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.lock_timeout_ms < 1 or self.backoff_s < 0:
            raise ValueError(f"invalid lock retry policy: {self}")

    @classmethod
    def growing(cls, lock_timeout_ms: int, attempts: int) -> LockRetryPolicy:
        """The operators' policy: ``attempts`` tries whose lock wait grows from ``lock_timeout_ms`` to 5× it."""
        return cls(attempts=attempts, lock_timeout_ms=lock_timeout_ms, max_lock_timeout_ms=5 * lock_timeout_ms)

    def schedule(self) -> Iterator[tuple[int, float]]:
        """Yield ``(lock_timeout_ms, sleep_s_after_failure)`` for each attempt."""
        for attempt in range(self.attempts):
            timeout = min(self.lock_timeout_ms * 2**attempt, self.max_lock_timeout_ms)
            yield max(timeout, self.lock_timeout_ms), min(self.backoff_s * 2**attempt, self.max_backoff_s)


def with_lock_retries(
    attempt: Callable[[int], T],
    policy: LockRetryPolicy = LockRetryPolicy(),
    *,
    what: str = "statement",
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``attempt(lock_timeout_ms)`` until it does not fail on ``lock_timeout``.

    ``attempt`` must set ``lock_timeout`` to the value it is given and leave nothing behind when it fails
    (roll back its transaction). Any error other than a lock timeout propagates at once.

    :raises LockRetriesExhausted: when every attempt timed out waiting for a lock.
    """
    last_error: BaseException | None = None
    for number, (lock_timeout_ms, backoff) in enumerate(policy.schedule(), start=1):
        try:
            return attempt(lock_timeout_ms)
        except psycopg.errors.LockNotAvailable as error:
            last_error = error
            log.warning(
                "%s: lock_timeout (%d ms) fired on attempt %d/%d: %s",
                what, lock_timeout_ms, number, policy.attempts, str(error).strip(),
            )
            if number < policy.attempts:
                sleep(backoff)
    raise LockRetriesExhausted(
        f"{what}: could not get its lock in {policy.attempts} attempts (lock_timeout up to "
        f"{policy.max_lock_timeout_ms} ms); another session holds a conflicting lock. Last error: {last_error}"
    )


def under_lock_timeout(
    conn: psycopg.Connection,
    work: Callable[[], T],
    policy: LockRetryPolicy = LockRetryPolicy(),
    *,
    what: str,
    transaction: bool = True,
    statement_timeout: str | None = None,
    isolation: str | None = None,
) -> T:
    """Run ``work()`` on the autocommit connection ``conn`` under ``lock_timeout``, retried per ``policy``.

    With ``transaction`` (the default) each attempt is one transaction with ``SET LOCAL`` timeouts, rolled
    back when it fails. Without (VACUUM, ``… CONCURRENTLY``, which refuse a transaction block) the timeouts
    are set for the session and reset afterwards. ``isolation`` (``"repeatable read"``…) is the isolation
    level of each attempt's transaction: one snapshot for everything ``work`` reads.
    """
    if isolation is not None and isolation not in ("read committed", "repeatable read", "serializable"):
        raise ValueError(f"not an isolation level: {isolation!r}")

    def attempt(lock_timeout_ms: int) -> T:
        settings = "SELECT set_config('lock_timeout', %s, %s), set_config('statement_timeout', " \
                   "coalesce(%s, current_setting('statement_timeout')), %s)"
        if transaction:
            with conn.transaction():
                if isolation is not None:  # before any query: the transaction's snapshot is not taken yet
                    conn.execute(f"SET TRANSACTION ISOLATION LEVEL {isolation.upper()}")
                conn.execute(settings, (f"{lock_timeout_ms}ms", True, statement_timeout, True))
                return work()
        saved = conn.execute("SELECT current_setting('statement_timeout')").fetchone()[0]
        conn.execute(settings, (f"{lock_timeout_ms}ms", False, statement_timeout, False))
        try:
            return work()
        finally:
            conn.execute("RESET lock_timeout")
            conn.execute("SELECT set_config('statement_timeout', %s, false)", (saved,))

    return with_lock_retries(attempt, policy, what=what)
