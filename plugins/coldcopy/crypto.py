"""What every job shares to encrypt, decrypt and trust an object from the bucket.

* OpenPGP symmetric AES256 through stock ``gpg`` (anyone can open a backup, archive or export in an
  emergency with ``gpg --decrypt``); the passphrase reaches gpg on a pipe (:func:`passphrase_pipe`), never
  argv, the environment or a file.
* **A successful decrypt proves nothing by itself**: ``gpg --decrypt`` passes an *unencrypted* literal packet
  (``gpg --store``) through with exit 0. :class:`GpgStatus` reads gpg's ``--status-fd`` and accepts only an
  integrity-protected (MDC or AEAD) symmetric AES256 decryption that ended ``DECRYPTION_OKAY``.
* **Bind before trust** (:func:`spool_bound`): an object read back from the bucket is hashed while it is
  spooled to a private temporary file, and its key, size and sha256 must equal its signed manifest's before
  any byte of it reaches gpg, zstd, pg_restore or COPY. Why a spool rather than hashing the stream on its
  way in: a streaming hash is known only after the last byte, when pg_restore has already executed what came
  before it (a dump's TOC entries are SQL run as the restoring role). The spool costs one local write and
  read of the *compressed, encrypted* object (a tenth of the database's size), on the task's disk.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from coldcopy.object_store import Bucket
from coldcopy.pg_tools import minimal_env

AES256 = "9"  # OpenPGP symmetric algorithm id
_GPG = ["gpg", "--batch", "--quiet", "--no-tty", "--pinentry-mode", "loopback"]


class UntrustedObject(RuntimeError):
    """An object from the bucket does not match its signed manifest, or did not decrypt as ours."""


def passphrase_pipe(passphrase: str) -> int:
    """A pipe whose read end gpg reads the passphrase from (``--passphrase-fd``)."""
    read_fd, write_fd = os.pipe()
    os.write(write_fd, passphrase.encode() + b"\n")
    os.close(write_fd)
    return read_fd


def gpg_encrypt_argv(passphrase_fd: int, *options: str) -> list[str]:
    """gpg encrypting stdin to stdout, OpenPGP symmetric AES256, the passphrase read from ``passphrase_fd``."""
    return [*_GPG, "--symmetric", "--cipher-algo", "AES256", *options, "--passphrase-fd", str(passphrase_fd),
            "--output", "-"]


def gpg_decrypt_argv(passphrase_fd: int, status_fd: int) -> list[str]:
    """gpg decrypting stdin to stdout, reporting on ``status_fd`` what it decrypted (see :class:`GpgStatus`)."""
    return [*_GPG, "--status-fd", str(status_fd), "--decrypt", "--passphrase-fd", str(passphrase_fd),
            "--output", "-"]


class GpgStatus:
    """gpg's machine-readable status lines, read from a pipe in a thread.

    :meth:`first_verdict` waits until gpg has said what it is decrypting — ``DECRYPTION_INFO`` (cipher and
    integrity protection) comes before any plaintext is written — so a caller forwards not one byte of a plain
    literal packet. :meth:`problem` is the final word, after gpg exited: a symmetric, integrity-protected AES256
    decryption that gpg itself called good, or what was wrong.
    """

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        self.lines: list[str] = []
        self._verdict: str | None = None
        self.decided = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        with os.fdopen(self.read_fd, "rb") as pipe:
            for raw in pipe:
                line = raw.decode(errors="replace").strip()
                self.lines.append(line)
                if not self.decided.is_set() and (line.startswith("[GNUPG:] DECRYPTION_INFO")
                                                  or line.startswith("[GNUPG:] PLAINTEXT")):
                    self._verdict = self._header_problem()
                    self.decided.set()
        if not self.decided.is_set():
            self._verdict = self._header_problem() or "gpg said nothing about a decryption"
            self.decided.set()

    def started(self) -> None:
        """Call once gpg has the write end (it is closed here, so the reader sees EOF when gpg exits)."""
        os.close(self.write_fd)

    def _seen(self) -> dict[str, list[str]]:
        words = [line.split()[1:] for line in list(self.lines) if line.startswith("[GNUPG:] ")]
        return {w[0]: w[1:] for w in words if w}

    def _header_problem(self) -> str | None:
        seen = self._seen()
        if "BEGIN_DECRYPTION" not in seen or "NEED_PASSPHRASE_SYM" not in seen:
            return "the object is not symmetrically encrypted (a plain OpenPGP literal packet, or a public-key one)"
        mdc, algo, aead = ([*seen.get("DECRYPTION_INFO", []), "0", "0", "0"])[:3]
        if mdc == "0" and aead == "0":
            return "the object is encrypted without integrity protection (no MDC, no AEAD)"
        if algo != AES256:
            return f"the object is encrypted with cipher {algo}, not AES256"
        return None

    def first_verdict(self, timeout: float = 60.0) -> str | None:
        """What is wrong with what gpg started decrypting (``None``: an AES256, integrity-protected one)."""
        if not self.decided.wait(timeout):
            return "gpg said nothing about the decryption in time"
        return self._verdict

    def problem(self) -> str | None:
        self.reader.join()
        if header := self._header_problem():
            return header
        seen = self._seen()
        if "DECRYPTION_OKAY" not in seen or {"DECRYPTION_FAILED", "BADMDC"} & seen.keys():
            return "gpg did not report a good decryption"
        return None


def relay_checked(process: subprocess.Popen, status: GpgStatus, sink, chunk: int = 1 << 20) -> str | None:
    """Copy gpg's output into ``sink`` (a pipe's write end), but only once :meth:`GpgStatus.first_verdict` is
    good; returns the problem otherwise (gpg is killed, nothing was forwarded). ``sink`` and gpg's output are
    closed either way."""
    try:
        first = process.stdout.read(chunk)
        if problem := status.first_verdict():
            process.kill()
            return problem
        while first:
            sink.write(first)
            first = process.stdout.read(chunk)
        return None
    except BrokenPipeError:
        return None  # the consumer gave up; its own exit status says why
    finally:
        process.stdout.close()
        try:
            sink.close()
        except BrokenPipeError:
            pass


def gpg_decrypt_popen(passphrase: str, stdin, stdout, **kwargs) -> tuple[subprocess.Popen, GpgStatus]:
    """Start gpg decrypting ``stdin``; returns the process and its :class:`GpgStatus` (check it after exit)."""
    from coldcopy import kill_targets

    passphrase_fd = passphrase_pipe(passphrase)
    status = GpgStatus()
    try:
        process = kill_targets.popen(gpg_decrypt_argv(passphrase_fd, status.write_fd), stdin=stdin, stdout=stdout,
                                 stderr=subprocess.PIPE, pass_fds=(passphrase_fd, status.write_fd), env=minimal_env(),
                                 **kwargs)
    finally:
        os.close(passphrase_fd)
        status.started()
    return process, status


def gpg_symmetric(data: bytes, passphrase: str, *options: str) -> bytes:
    """``data`` encrypted like the backups (opens with ``gpg --decrypt`` and the passphrase)."""
    read = passphrase_pipe(passphrase)
    try:
        done = subprocess.run(gpg_encrypt_argv(read, *options), input=data, capture_output=True, pass_fds=(read,),
                              env=minimal_env(), check=False)
    finally:
        os.close(read)
    if done.returncode:
        raise RuntimeError(f"gpg failed ({done.returncode}): {done.stderr.decode(errors='replace').strip()[:300]}")
    return done.stdout


def check_binding(manifest: dict, key: str, size: int, sha256: str, *, where: str) -> None:
    """The object at ``key`` with ``size`` bytes and ``sha256`` is the one ``manifest`` describes."""
    problems = []
    if manifest.get("object_key") != key:
        problems.append(f"the manifest describes {manifest.get('object_key')!r}, not this key")
    if manifest.get("byte_size") != size:
        problems.append(f"{size} bytes, the manifest says {manifest.get('byte_size')}")
    if manifest.get("sha256") != sha256:
        problems.append(f"sha256 {sha256[:16]}…, the manifest says {str(manifest.get('sha256'))[:16]}…")
    if problems:
        raise UntrustedObject(f"{where}: object does not match its signed manifest ({'; '.join(problems)}); "
                              "nothing of it was used")


@contextmanager
def spool_bound(bucket: Bucket, key: str, manifest: dict, *, directory: str | None = None) -> Iterator[Path]:
    """Download ``key`` to a private temporary file, hashing it on the way, and yield its path only once key,
    size and sha256 equal ``manifest``'s (:class:`UntrustedObject` otherwise). The file is removed on exit."""

    if manifest.get("object_key") != key:  # before a byte is downloaded
        check_binding(manifest, key, -1, "", where=f"{bucket.uri}/{key}")
    digest, size = hashlib.sha256(), 0
    handle = tempfile.NamedTemporaryFile(prefix="coldcopy-spool-", dir=directory, delete=False)  # noqa: SIM115
    path = Path(handle.name)
    try:
        with handle:
            for chunk in bucket.read(key):
                digest.update(chunk)
                size += len(chunk)
                if size > manifest.get("byte_size", 0):
                    break  # longer than signed: no need to read the rest
                handle.write(chunk)
        check_binding(manifest, key, size, digest.hexdigest(), where=f"{bucket.uri}/{key}")
        yield path
    finally:
        path.unlink(missing_ok=True)


def get_bound(bucket: Bucket, key: str, manifest: dict) -> bytes:
    """A small object (a segment, a retention batch) whole, once its key, size and sha256 equal ``manifest``'s
    (:class:`UntrustedObject` otherwise); :func:`spool_bound` is the same for objects too big for memory."""
    if manifest.get("object_key") != key:  # before a byte is downloaded
        check_binding(manifest, key, -1, "", where=bucket.url(key))
    from coldcopy.manifests import ManifestRejected

    try:  # never more than the signed size in memory
        stored = bucket.get(key, max_bytes=max(int(manifest.get("byte_size") or 0), 0))
    except ManifestRejected:
        stored = None
    if stored is None:  # longer than signed
        check_binding(manifest, key, -1, "", where=bucket.url(key))
    check_binding(manifest, key, len(stored), hashlib.sha256(stored).hexdigest(), where=bucket.url(key))
    return stored


def gpg_open(sealed: bytes, passphrase: str) -> bytes:
    """A small object's plaintext, once gpg reports it was ours (AES256, integrity-protected, decrypted OK);
    :class:`UntrustedObject` otherwise. For objects already bound to their manifest (:func:`check_binding`)."""
    with tempfile.TemporaryFile() as plain:
        gpg, status = gpg_decrypt_popen(passphrase, subprocess.PIPE, plain)
        _out, err = gpg.communicate(sealed)
        problem = status.problem()
        if gpg.returncode or problem:
            raise UntrustedObject(f"decryption refused: {problem or err.decode(errors='replace').strip()[:200]}")
        plain.seek(0)
        return plain.read()
