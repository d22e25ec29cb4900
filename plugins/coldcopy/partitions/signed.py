"""The archives' signed manifests: written beside each month's object, read back only once their signature verifies
and they describe that month's object."""

from __future__ import annotations

from coldcopy import manifests
from coldcopy.object_store import Bucket
from coldcopy.partitions.layout import ArchiveError, Partition


class SignedManifests:
    """Reads and writes the months' manifests with ``keyring`` (:func:`coldcopy.manifests.keyring`)."""

    def __init__(self, keyring: manifests.Keyring) -> None:
        self.keyring = keyring

    def write(self, partition: Partition, bucket: Bucket, manifest: dict) -> None:
        bucket.put(partition.manifest_key, manifests.dump(manifest, self.keyring, type="archive"), "application/json")

    def read(self, partition: Partition, bucket: Bucket) -> dict:
        """The month's manifest once its signature verifies and it describes this month's object
        (:class:`ArchiveError` otherwise)."""
        where = f"{bucket.uri}/{partition.manifest_key}"
        raw = bucket.get(partition.manifest_key)
        try:
            manifest = manifests.load(raw, self.keyring, where=where, type="archive")
        except manifests.ManifestRejected as error:
            raise ArchiveError(str(error)) from error
        if manifest.get("partition") != partition.name or not partition.owns(str(manifest.get("object_key"))):
            raise ArchiveError(f"{where}: describes {manifest.get('object_key')!r}, not an archive of "
                               f"{partition.name} (another month's manifest copied here?); refusing to use it")
        return manifest
