"""Signed manifests: a backup's or an archive's manifest is plaintext JSON in a bucket others can write, so
each one carries an HMAC-SHA256 over its canonical JSON, keyed from the ``coldcopy_backup_key``
passphrase. :func:`load` refuses a manifest whose signature does not verify before anything reads it.
"""

from __future__ import annotations

import hashlib
import hmac
import json

ALGORITHM = "HMAC-SHA256"
_KEY_LABEL = b"coldcopy manifest signing key v1"


class ManifestRejected(RuntimeError):
    """A manifest is unsigned, signed with another key, or was edited after signing."""


def signing_key(passphrase: str) -> bytes:
    """A key for manifests only, derived from the backup passphrase (never the passphrase itself)."""
    if not passphrase:
        raise ValueError("an empty passphrase cannot sign manifests")
    return hmac.new(passphrase.encode(), _KEY_LABEL, hashlib.sha256).digest()


def _digest(manifest: dict, key: bytes) -> str:
    canonical = json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    return hmac.new(key, canonical, hashlib.sha256).hexdigest()


def dump(manifest: dict, key: bytes) -> bytes:
    """The manifest as stored: its fields, plus ``signature``."""
    return json.dumps({**manifest, "signature": {"algorithm": ALGORITHM, "value": _digest(manifest, key)}},
                      indent=2).encode()


def load(raw: bytes, key: bytes, *, where: str) -> dict:
    """The manifest in ``raw`` once its signature verifies; ``where`` names it in the error.

    :raises ManifestRejected: unsigned, another key, or edited.
    """
    try:
        document = json.loads(raw)
        signature = document.pop("signature")
        value = signature["value"] if signature.get("algorithm") == ALGORITHM else ""
    except (ValueError, AttributeError, KeyError, TypeError) as error:
        raise ManifestRejected(f"{where}: not a signed manifest ({type(error).__name__}); refusing to use it") \
            from None
    if not hmac.compare_digest(value, _digest(document, key)):
        raise ManifestRejected(f"{where}: manifest signature does not verify (edited, or signed with another "
                               "key); refusing to use it")
    return document
