"""Objects planted in the bucket by someone who can write it but holds no key (issue 40, found attacking its first
fixes): each is skipped and named, never an exception that stops a restore, a drill, the archiver or the GDPR
re-apply, and never read whole into memory."""

from __future__ import annotations

import pytest

from coldcopy import manifests
from coldcopy.backups import BackupRunner
from coldcopy.backups.layout import BackupError
from coldcopy.pitr import chain as chains
from tests.conftest import BACKUP_PASSPHRASE, KEYRING

pytestmark = pytest.mark.integration
NESTED = b"[" * 100_000  # json.loads raised RecursionError, which nothing caught


def test_a_document_nested_past_the_stack_is_refused():
    with pytest.raises(manifests.ManifestRejected, match="not a signed document"):
        manifests.load(NESTED, KEYRING, where="s3://b/k", type="chain")


def test_a_chain_head_below_a_chain_names_no_chain_and_a_giant_is_not_read(spaces):
    spaces.put("pitr/29991231T000000Z/x/chain.json", b"{}")  # was listed as chain 29991231T000000Z: NoSuchKey
    assert chains.list_chains(spaces) == []
    spaces.put("pitr/29991230T000000Z/chain.json", NESTED)
    refused: dict = {}
    assert chains.load_trusted(spaces, "29991230T000000Z", KEYRING, refused) is None
    assert list(refused) == ["pitr/29991230T000000Z/chain.json"]
    spaces.put("big.json", b" " * 4096)
    with pytest.raises(manifests.ManifestRejected, match="larger than 1,000 bytes"):
        spaces.get("big.json", max_bytes=1000)


def test_a_planted_backup_manifest_blocks_no_restore(migrated_db, spaces):
    runner = BackupRunner(migrated_db, spaces, BACKUP_PASSPHRASE, keyring=KEYRING)
    genuine = runner.backup().object_key
    planted = "backups/standard/2099/12/31/coldcopy-20991231T000000Z"
    spaces.put(planted + ".dump.zst.gpg", b"junk")
    spaces.put(planted + ".manifest.json", NESTED)
    assert runner.resolve("latest")[0] == genuine  # the newest that verifies
    assert any("not a signed document" in s for s in runner.skipped)
    spaces.delete(genuine)
    spaces.delete(genuine.removesuffix(".dump.zst.gpg") + ".manifest.json")
    with pytest.raises(BackupError, match="holds no whole-database backup that verifies"):
        runner.resolve("latest")
