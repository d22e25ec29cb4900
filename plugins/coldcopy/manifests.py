"""Signed documents: manifests of backups, archives and exports, and erasure-ledger entries (their shapes:
:mod:`coldcopy.manifest_documents`).

They are plaintext JSON in a bucket others can write, so each carries an HMAC-SHA256 over its canonical JSON
with a ``key_id`` (so keys rotate: old ids still verify) and a ``type`` (a ledger entry is never taken for a
backup manifest). The key is the secret of the Airflow connection ``coldcopy_manifest_key`` (its password;
``openssl rand -hex 32``), never the backup passphrase: a manifest must not let anyone test passphrase guesses
offline. Retired secrets stay verifiable under ``extra.retired`` (a list of secrets). :func:`load` refuses a
document whose signature, key id or type does not verify before anything reads it.

A signature proves the document is ours; it proves nothing about the object beside it. Whoever reads that
object binds it first (:func:`coldcopy.crypto.spool_bound`: key, size and sha256 equal the manifest's).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field

from pydantic import ValidationError

from coldcopy.connections import MANIFEST_KEY_CONN_ID  # noqa: F401 - re-exported under this module's name
from coldcopy.manifest_documents import MODELS

ALGORITHM = "HMAC-SHA256"
MIN_SECRET_CHARS = 32
_KEY_LABEL = b"coldcopy manifest signing key v2"
TYPES = ("backup", "archive", "ledger", "retention_archive", "segment", "chain", "tip", "pruned", "approval")


class ManifestRejected(RuntimeError):
    """A document is unsigned, signed with an unknown key, of another type, or was edited after signing."""


def _key_id(key: bytes) -> str:
    return hashlib.sha256(b"coldcopy key id\0" + key).hexdigest()[:16]


@dataclass(frozen=True)
class Keyring:
    """The key that signs (``current``) and every key that still verifies, by key id."""

    current: bytes
    retired: tuple[bytes, ...] = field(default=())

    @classmethod
    def from_secret(cls, secret: str | bytes, retired: list[str] | tuple = ()) -> Keyring:
        def derive(value: str | bytes) -> bytes:
            raw = value.encode() if isinstance(value, str) else value
            if len(raw) < MIN_SECRET_CHARS:
                raise ValueError(f"a manifest signing secret needs at least {MIN_SECRET_CHARS} characters "
                                 "(openssl rand -hex 32)")
            return hmac.new(raw, _KEY_LABEL, hashlib.sha256).digest()

        return cls(derive(secret), tuple(derive(r) for r in retired))

    @property
    def key_id(self) -> str:
        return _key_id(self.current)

    def key(self, key_id: str) -> bytes | None:
        return next((k for k in (self.current, *self.retired) if hmac.compare_digest(_key_id(k), key_id)), None)


def keyring(conn_id: str = MANIFEST_KEY_CONN_ID) -> Keyring:
    """The keyring of the Airflow connection ``conn_id``: password = current secret, extra ``retired`` = old ones."""
    from airflow.sdk import BaseHook

    connection = BaseHook.get_connection(conn_id)
    if not connection.password:
        raise ValueError(f"connection {conn_id} has no password: it is the manifest signing secret "
                         "(openssl rand -hex 32)")
    return Keyring.from_secret(connection.password, connection.extra_dejson.get("retired", []))


def _digest(document: dict, key: bytes) -> str:
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    return hmac.new(key, canonical, hashlib.sha256).hexdigest()


def dump(document: dict, keys: Keyring, *, type: str) -> bytes:  # noqa: A002 - the field's name
    """The document as stored: its fields, ``type``, plus ``signature`` (algorithm, key id, value)."""
    if type not in TYPES:
        raise ValueError(f"unknown signed document type {type!r}")
    body = {**document, "type": type}
    signature = {"algorithm": ALGORITHM, "key_id": keys.key_id, "value": _digest(body, keys.current)}
    return json.dumps({**body, "signature": signature}, indent=2).encode()


def load(raw: bytes, keys: Keyring, *, where: str, type: str) -> dict:  # noqa: A002
    """The document in ``raw`` once its signature verifies under a known key and its type is ``type``
    (returned without ``signature``; ``type`` kept).

    :raises ManifestRejected: not JSON, unsigned, unknown key, edited, or another type.
    """
    try:
        document = json.loads(raw)
        signature = document.pop("signature")
        value, key_id = signature["value"], signature["key_id"]
        if signature.get("algorithm") != ALGORITHM or not isinstance(value, str) or not isinstance(key_id, str):
            raise ValueError("algorithm")
    except (ValueError, AttributeError, KeyError, TypeError, RecursionError) as error:  # nested past the stack
        raise ManifestRejected(f"{where}: not a signed document ({error.__class__.__name__}); refusing to use it") \
            from None
    key = keys.key(key_id)
    if key is None:
        raise ManifestRejected(f"{where}: signed with an unknown key ({key_id}); refusing to use it")
    if not hmac.compare_digest(value, _digest(document, key)):
        raise ManifestRejected(f"{where}: signature does not verify (edited after signing); refusing to use it")
    if document.get("type") != type:
        raise ManifestRejected(f"{where}: a {document.get('type')!r} document where a {type!r} one was expected; "
                               "refusing to use it")
    model = MODELS.get(type)
    if model is not None:
        try:
            model.model_validate(document)
        except ValidationError as error:
            fields = ", ".join(".".join(map(str, e["loc"])) for e in error.errors()[:5])
            raise ManifestRejected(f"{where}: a signed {type} document of the wrong shape ({fields}); refusing to "
                                   "use it") from None
    return document
