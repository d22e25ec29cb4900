"""The archive bound to its manifest, and the partition unchanged since."""

from __future__ import annotations

import logging

import psycopg

from coldcopy.object_store import Bucket
from coldcopy.partitions.layout import ArchiveError, Partition
from coldcopy.partitions.signed import SignedManifests
from coldcopy.partitions.state import ArchiveState
from coldcopy.partitions.streams import object_problems, read_back
from coldcopy.steps import step

log = logging.getLogger(__name__)


class Verifier:
    """The archive bound to its manifest, and the partition unchanged since."""

    def __init__(self, conn: psycopg.Connection, state: ArchiveState, signed: SignedManifests,
                 passphrase: str) -> None:
        self.conn, self.state, self.signed, self.passphrase = conn, state, signed, passphrase

    def verify(self, partition: Partition, bucket: Bucket) -> dict:
        """The archive in the bucket matches its manifest, and the live partition still holds what it describes."""
        manifest = self.signed.read(partition, bucket)
        problems = object_problems(manifest, read_back(bucket, manifest["object_key"], self.passphrase))
        recorded = self.conn.execute(
            "SELECT row_count, row_checksum, sha256 FROM coldcopy_ops.partition_archive WHERE partition_name = %s",
            (partition.name,)).fetchone()
        if recorded is None or recorded[2] != manifest["sha256"]:
            problems.append("this database has no record of exporting or restoring this archive")
        else:
            live = self.state.row_versions(partition.name)
            if live != (recorded[0], recorded[1]):
                problems.append(f"the partition changed since the archive was made (rows {live[0]}, "
                                f"{recorded[0]} then)")
            if recorded[0] != manifest["rows"]:
                problems.append(f"rows: recorded {recorded[0]}, manifest {manifest['rows']}")
        if self.state.columns(partition.name) != manifest["columns"]:
            problems.append(f"columns differ from the manifest's: {manifest['columns']}")
        if problems:
            raise ArchiveError(f"{partition.name}: archive does not verify: " + "; ".join(problems))
        self.state.set_state(partition, manifest, "verified", fingerprint=(recorded[0], recorded[1]))
        step("partition.verified")
        return manifest
