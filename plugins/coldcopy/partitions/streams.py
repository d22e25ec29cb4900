"""The archive's byte streams: gzip in a thread, gpg, and the single read back that binds an object to its
manifest."""

from __future__ import annotations

import hashlib
import os
import queue
import subprocess
import threading
import zlib
from dataclasses import dataclass

from coldcopy import kill_targets
from coldcopy.crypto import gpg_decrypt_popen, gpg_encrypt_argv, passphrase_pipe
from coldcopy.object_store import Bucket
from coldcopy.partitions.layout import ArchiveError
from coldcopy.pg_tools import minimal_env


class GzipInThread:
    """Hashes what is written (the CSV as exported) and gzips it in a second thread into ``sink.write``, so
    compressing overlaps reading the next rows (zlib and hashlib release the GIL on large buffers)."""

    BATCH = 1 << 20

    def __init__(self, sink, level: int = 6) -> None:
        self.sink, self.content = sink, hashlib.sha256()
        self.compressor = zlib.compressobj(level, zlib.DEFLATED, 31)  # 31: gzip container
        self.batch = bytearray()
        self.batches: queue.Queue = queue.Queue(maxsize=4)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._compress, daemon=True)
        self.thread.start()

    def write(self, data) -> None:
        self.batch += data
        if len(self.batch) >= self.BATCH:
            self._hand_over()

    def _hand_over(self) -> None:
        if self.error:
            raise self.error
        batch, self.batch = bytes(self.batch), bytearray()
        self.content.update(batch)
        self.batches.put(batch)

    def _compress(self) -> None:
        while (batch := self.batches.get()) is not None:
            if self.error is None:
                try:
                    self.sink.write(self.compressor.compress(batch))
                except BaseException as error:  # noqa: BLE001 - raised in the writer's thread
                    self.error = error

    def __enter__(self) -> GzipInThread:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None and self.batch:
            self._hand_over()
        self.batches.put(None)
        self.thread.join()
        if exc_type is None:
            if self.error:
                raise self.error
            self.sink.write(self.compressor.flush())

    @property
    def content_sha256(self) -> str:
        return self.content.hexdigest()


class Encrypting:
    """A writer whose bytes go through ``gpg --symmetric`` (AES256, like the backups) into ``sink.write``, gpg's
    output read by a thread of its own. Leaving it with an exception kills gpg."""

    def __init__(self, sink, passphrase: str) -> None:
        read = passphrase_pipe(passphrase)
        try:
            self.gpg = kill_targets.popen(gpg_encrypt_argv(read, "--compress-algo", "none"), stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=(read,),
                                      env=minimal_env())
        finally:
            os.close(read)
        self.error: BaseException | None = None
        self.errors = b""
        self.stderr_reader = threading.Thread(target=self._drain_stderr, daemon=True)
        self.reader = threading.Thread(target=self._forward, args=(sink,), daemon=True)
        self.stderr_reader.start()
        self.reader.start()

    def _drain_stderr(self) -> None:
        self.errors = self.gpg.stderr.read()

    def _forward(self, sink) -> None:
        try:
            while chunk := self.gpg.stdout.read(1 << 20):
                sink.write(chunk)
        except BaseException as error:  # noqa: BLE001 - raised in the writer's thread
            self.error = error
            self.gpg.kill()

    def write(self, data: bytes) -> None:
        if self.error:
            raise self.error
        self.gpg.stdin.write(data)

    def __enter__(self) -> Encrypting:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.gpg.kill()
        try:
            self.gpg.stdin.close()
        except BrokenPipeError:
            pass
        self.reader.join()
        self.stderr_reader.join()
        code = self.gpg.wait()
        if exc_type is None:
            if self.error:
                raise self.error
            if code:
                raise ArchiveError(f"gpg exited {code}: {self.errors.decode(errors='replace').strip()[:300]}")


@dataclass(frozen=True)
class ReadBack:
    sha256: str
    byte_size: int
    content_sha256: str
    problem: str | None = None


def read_back(bucket: Bucket, key: str, passphrase: str, into=None) -> ReadBack:
    """Stream an archive object once: hash it, decrypt it (gpg must say AES256 with integrity protection before
    one byte is handed on), gunzip it, hash the CSV and hand it to ``into``, if given. The caller commits what
    ``into`` received only when the result matches the signed manifest (:func:`object_problems`)."""
    stored, content, size = hashlib.sha256(), hashlib.sha256(), 0
    gpg, status = gpg_decrypt_popen(passphrase, subprocess.PIPE, subprocess.PIPE)
    failure: list[BaseException] = []

    def feed() -> None:
        nonlocal size
        try:
            for chunk in bucket.read(key):
                stored.update(chunk)
                size += len(chunk)
                gpg.stdin.write(chunk)
        except BrokenPipeError:
            pass
        except BaseException as error:  # noqa: BLE001 - re-raised below
            failure.append(error)
        finally:
            try:
                gpg.stdin.close()
            except BrokenPipeError:
                pass

    errors = threading.Thread(target=lambda: gpg.stderr.read(), daemon=True)
    feeder = threading.Thread(target=feed, daemon=True)
    errors.start()
    feeder.start()
    decompressor = zlib.decompressobj(31)
    try:
        chunk = gpg.stdout.read(1 << 20)
        if problem := status.first_verdict():
            gpg.kill()
            return ReadBack("", 0, "", problem)
        while chunk:
            data = decompressor.decompress(chunk)
            content.update(data)
            if into is not None and data:
                into(data)
            chunk = gpg.stdout.read(1 << 20)
        tail = decompressor.flush()
        content.update(tail)
        if into is not None and tail:
            into(tail)
    except zlib.error as error:
        gpg.kill()
        return ReadBack("", 0, "", f"not gzip inside: {error}")
    finally:
        feeder.join()
        gpg.wait()
        errors.join()
    if failure:
        raise failure[0]
    return ReadBack(stored.hexdigest(), size, content.hexdigest(), status.problem())


def object_problems(manifest: dict, read: ReadBack) -> list[str]:
    problems = []
    if read.problem:
        problems.append(read.problem)
    elif (read.sha256, read.byte_size) != (manifest["sha256"], manifest["byte_size"]):
        problems.append(f"object sha256/size {read.sha256[:12]}…/{read.byte_size} ≠ manifest "
                        f"{manifest['sha256'][:12]}…/{manifest['byte_size']}")
    elif read.content_sha256 != manifest["content_sha256"]:
        problems.append("the object's CSV does not hash to the manifest's content_sha256")
    return problems
