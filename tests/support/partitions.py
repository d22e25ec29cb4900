"""What the partition tests share: fingerprints of the months, fast lock retries, the archive key and passphrase."""

from __future__ import annotations

import gzip
from pathlib import Path

import psycopg

from coldcopy import manifests
from coldcopy.lock_retries import LockRetryPolicy
from coldcopy.partitions import PartitionManager
from tests.conftest import stock_decrypt

DAGS = Path(__file__).resolve().parents[2] / "dags"


FAST = LockRetryPolicy(attempts=20, lock_timeout_ms=200, max_lock_timeout_ms=400, backoff_s=0.1)


def fingerprints(dsn: str) -> dict[str, tuple]:
    with psycopg.connect(dsn) as conn:
        names = [n for (n,) in conn.execute("SELECT name FROM app.email_events_partitions ORDER BY 1")]
        return {n: conn.execute(f"SELECT count(*), coalesce(sum(hashtextextended(t::text, 0)), 0)::text "
                                f"FROM public.{n} t").fetchone() for n in names}


def attached(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [n for (n,) in conn.execute("SELECT name FROM app.email_events_partitions ORDER BY range_start")]


MANIFEST_KEY = manifests.Keyring.from_secret("archive manifests (test only), 32+ characters")


PASSPHRASE = "archive passphrase (test only)"


def opened(body: bytes, passphrase: str) -> bytes:
    """An archive object opened with stock tools: ``gpg --decrypt | gunzip``."""
    return gzip.decompress(stock_decrypt(body, passphrase))


def manager(conn, policy=FAST) -> PartitionManager:
    return PartitionManager(conn, lock_retry=policy, keyring=MANIFEST_KEY, passphrase=PASSPHRASE)
