"""DigitalOcean Spaces (S3 protocol) through the amazon provider's ``S3Hook``: streamed uploads and reads.

The connection ``coldcopy_spaces`` (type aws) holds the keys, ``endpoint_url`` in its extra, and the bucket
in ``service_config.s3.bucket_name``, which S3Hook already reads. Uploads are multipart and streamed:
memory holds one part (8 MiB) at a time whatever the object's size, and a failed upload is aborted so no
partial object is ever left that could be taken for a complete one.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from coldcopy.connections import SPACES_CONN_ID  # noqa: F401 - re-exported under this module's name

log = logging.getLogger(__name__)
# The largest signed document (manifest, chain head, ledger entry) read whole: ours are kilobytes.
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024

PART_SIZE = 8 * 1024 * 1024  # S3 parts must be at least 5 MiB, except the last


def spaces_hook(conn_id: str = SPACES_CONN_ID):
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id=conn_id)


def bucket_of(hook) -> str:
    bucket = hook.service_config.get("bucket_name")
    if not bucket:
        raise ValueError(f"connection {hook.aws_conn_id}: set the bucket in extra service_config.s3.bucket_name")
    return bucket


class MultipartUpload:
    """A write-only stream into one object: ``write()`` bytes, then ``complete()``; ``abort()`` on failure.

    Parts go up from a background thread while the caller keeps producing the next ones (at most
    ``max_pending`` parts wait, so memory stays at a few parts). Use as a context manager: leaving it with
    an exception aborts the upload. ``sha256`` and ``size`` are of the bytes stored.

    After :meth:`complete`, ``parts_stored_s`` is the time from creation until the endpoint had acknowledged
    every part, and ``completion_s`` the time the endpoint then took to assemble the object
    (CompleteMultipartUpload): work done on the endpoint's side, which a local S3 server does on our cores.
    """

    def __init__(self, client, bucket: str, key: str, *, part_size: int = PART_SIZE, max_pending: int = 2,
                 extra_args: dict | None = None, progress_every_s: float = 30.0) -> None:
        self.client, self.bucket, self.key, self.part_size = client, bucket, key, part_size
        self.upload_id = client.create_multipart_upload(Bucket=bucket, Key=key, **(extra_args or {}))["UploadId"]
        self.parts: list[dict] = []
        self.buffer = bytearray()
        self.digest = hashlib.sha256()
        self.size = 0
        self.part_count = 0
        self.started = self.last_report = time.monotonic()
        self.parts_stored_s: float | None = None
        self.completion_s: float | None = None
        self.progress_every_s = progress_every_s
        self.queue: queue.Queue = queue.Queue(maxsize=max_pending)
        self.error: BaseException | None = None
        self.worker = threading.Thread(target=self._upload_parts, daemon=True)
        self.worker.start()

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        if not self.buffer and len(data) == self.part_size:
            self._send(data)  # the common case when reading part-sized chunks: no copy
            return len(data)
        self.buffer += data
        while len(self.buffer) >= self.part_size:
            self._send(bytes(self.buffer[: self.part_size]))
            del self.buffer[: self.part_size]
        return len(data)

    def _send(self, body: bytes) -> None:
        if self.error:
            raise self.error
        self.part_count += 1
        self.queue.put((self.part_count, body))

    def _upload_parts(self) -> None:
        while (item := self.queue.get()) is not None:
            number, body = item
            if self.error:
                continue
            try:
                etag = self.client.upload_part(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id,
                                               PartNumber=number, Body=body)["ETag"]
                self.parts.append({"PartNumber": number, "ETag": etag})
                self._report(number)
            except BaseException as error:  # noqa: BLE001 - handed to the producer
                self.error = error

    def _report(self, number: int) -> None:
        now = time.monotonic()
        if now - self.last_report >= self.progress_every_s:
            elapsed = now - self.started
            log.info("%s: %d parts, %.1f MiB uploaded, %.1f MiB/s", self.key, number, self.size / 2**20,
                     self.size / 2**20 / elapsed if elapsed else 0)
            self.last_report = now

    def _drain(self) -> None:
        self.queue.put(None)
        self.worker.join()

    @property
    def sha256(self) -> str:
        return self.digest.hexdigest()

    def complete(self) -> None:
        if self.buffer or not self.part_count:
            self._send(bytes(self.buffer))
            self.buffer.clear()
        self._drain()
        if self.error:
            raise self.error
        parts = sorted(self.parts, key=lambda p: p["PartNumber"])
        stored = time.monotonic()
        self.parts_stored_s = stored - self.started
        self.client.complete_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id,
                                              MultipartUpload={"Parts": parts})
        self.completion_s = time.monotonic() - stored

    def abort(self) -> None:
        if self.worker.is_alive():
            self.error = self.error or RuntimeError("aborted")
            self._drain()
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)
        except Exception:  # noqa: BLE001 - the original error matters more; the bucket's lifecycle rule cleans up
            log.exception("%s: could not abort multipart upload %s", self.key, self.upload_id)

    def __enter__(self) -> MultipartUpload:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


@dataclass(frozen=True)
class Bucket:
    """One bucket of one connection: what every job passes around instead of a ``(client, name)`` pair.

    Built from the amazon provider's ``S3Hook`` (:meth:`from_connection`), which owns the credentials, the
    endpoint and the bucket default (``service_config.s3.bucket_name``); the methods are the few object
    operations the jobs use, each with the one behaviour they all rely on (listing every page, "not found"
    told apart from any other error, reads streamed).
    """

    client: Any
    name: str

    @classmethod
    def from_connection(cls, conn_id: str = SPACES_CONN_ID) -> Bucket:
        hook = spaces_hook(conn_id)
        return cls(hook.get_conn(), bucket_of(hook))

    @property
    def uri(self) -> str:
        return f"s3://{self.name}"

    def url(self, key: str) -> str:
        return f"{self.uri}/{key}"

    def read(self, key: str, chunk_size: int = 1024 * 1024) -> Iterator[bytes]:
        """The object's bytes, streamed in chunks."""
        body = self.client.get_object(Bucket=self.name, Key=key)["Body"]
        try:
            yield from body.iter_chunks(chunk_size)
        finally:
            body.close()

    def get(self, key: str, max_bytes: int = MAX_DOCUMENT_BYTES) -> bytes:
        """A small object (manifest, ledger entry) whole; one larger than ``max_bytes`` is refused as it is read
        (:class:`~coldcopy.manifests.ManifestRejected`): a planted giant is never held in the worker's memory."""
        from coldcopy.manifests import ManifestRejected

        chunks, size = [], 0
        for chunk in self.read(key):
            size += len(chunk)
            if size > max_bytes:
                raise ManifestRejected(f"{self.url(key)}: larger than {max_bytes:,} bytes, more than any document "
                                       "of ours; refusing to read it")
            chunks.append(chunk)
        return b"".join(chunks)

    def put(self, key: str, body: bytes, content_type: str = "application/octet-stream") -> None:
        self.client.put_object(Bucket=self.name, Key=key, Body=body, ContentType=content_type)

    def delete(self, key: str) -> None:
        """Delete ``key`` (deleting a missing key succeeds, as S3 defines it)."""
        self.client.delete_object(Bucket=self.name, Key=key)

    def upload(self, key: str, **kwargs) -> MultipartUpload:
        """A streamed multipart upload into ``key``."""
        return MultipartUpload(self.client, self.name, key, **kwargs)

    def abort_unfinished_uploads(self, key: str, *, prefix: bool = False, started_before=None) -> list[str]:
        """Abort the multipart uploads into exactly ``key`` (``prefix``: into any key under it) left unfinished (a
        try killed with SIGKILL cannot abort its own; their parts cost storage until aborted), only those started
        before ``started_before`` when given (a writer still uploading is younger). Exactly ``key``: only for a key
        one writer owns at a time. Returns the keys of those aborted."""
        aborted = []
        paginator = self.client.get_paginator("list_multipart_uploads")
        for page in paginator.paginate(Bucket=self.name, Prefix=key):
            for upload in page.get("Uploads", []):
                if (upload["Key"] == key or prefix) and (started_before is None
                                                         or upload["Initiated"] < started_before):
                    self.client.abort_multipart_upload(Bucket=self.name, Key=upload["Key"],
                                                       UploadId=upload["UploadId"])
                    aborted.append(upload["Key"])
        return aborted

    def list_objects(self, prefix: str = "") -> list[dict]:
        """Every object under ``prefix`` (all pages): the one listing loop every job uses."""
        paginator = self.client.get_paginator("list_objects_v2")
        return [o for page in paginator.paginate(Bucket=self.name, Prefix=prefix) for o in page.get("Contents", [])]

    def list_keys(self, prefix: str = "") -> list[str]:
        return [o["Key"] for o in self.list_objects(prefix)]

    def sha256(self, key: str) -> tuple[str, int]:
        """``(sha256 hex, size)`` of the stored object, read through."""
        digest, size = hashlib.sha256(), 0
        for chunk in self.read(key):
            digest.update(chunk)
            size += len(chunk)
        return digest.hexdigest(), size

    def exists(self, key: str) -> bool:
        """Whether ``key`` exists; any error other than "not found" (access, network) propagates."""
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.name, Key=key)
            return True
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def presigned_get(self, key: str, expires_in: int) -> str:
        return self.client.generate_presigned_url("get_object", Params={"Bucket": self.name, "Key": key},
                                                  ExpiresIn=expires_in)
