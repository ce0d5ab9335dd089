"""S3 BlobStore on the minio client: raw MIME objects named by their SHA-256, under Object Lock when asked."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import random
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import islice
from typing import TypeVar

import certifi
import urllib3
from minio import Minio
from minio.error import InvalidResponseError, S3Error, ServerError
from minio.helpers import md5sum_hash
from minio.retention import Retention
from minio.time import to_iso8601utc
from minio.xml import marshal

from storage.blobstore import (
    BlobCorruptError,
    BlobNotFoundError,
    BlobStoreError,
    LockMode,
    LockRequest,
    is_digest,
    sha256_hex,
    verify_digest,
)
from storage.engine_urls import BLOBSTORE_SETTING, EngineUrlError, S3BlobsUrl, parse_blobstore_url

_PREFIX = "blobs/"
# From this size on a message goes up in parts: a failed part is retried alone and a
# 50 MB message does not sit in one request for the whole read timeout.
MULTIPART_THRESHOLD = 16 * 1024 * 1024
_PART_SIZE = 16 * 1024 * 1024
_LIST_PAGE = 1000  # ListObjectsV2's default and maximum page

_NOT_FOUND = {"NoSuchKey", "NoSuchObject", "NoSuchVersion"}
# Worth another attempt: throttling and the server's own trouble (any 5xx answer).
# ConditionalRequestConflict (409): another conditional write to the same key was in flight.
_TRANSIENT = {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "RequestTimeTooSkewed",
              "ConditionalRequestConflict"}
_BAD_CREDENTIALS = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"}
_T = TypeVar("_T")


@dataclass(frozen=True)
class S3Location:
    """Where the blobs live, parsed from ``s3://bucket?endpoint=host:port&secure=false&region=r&object_lock=true&ca_certs=/path``.

    ``object_lock=true`` declares that WORM retention is in use: ``check()`` then also
    insists on a versioned bucket with Object Lock. Credentials come from the usual
    variables (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or MINIO_ROOT_USER /
    MINIO_ROOT_PASSWORD) so that they never sit in a URL or a log.
    """

    bucket: str
    endpoint: str
    secure: bool
    region: str
    access_key: str
    secret_key: str = field(repr=False)
    object_lock: bool = False
    ca_certs: str = ""  # CA bundle for https: "" is $SSL_CERT_FILE, else certifi's

    @classmethod
    def from_url(cls, url: str) -> "S3Location":
        """Parsed by storage.engine_urls (one parser for every engine URL; bad values raise EngineUrlError)."""
        parsed = parse_blobstore_url(url)
        if not isinstance(parsed, S3BlobsUrl):
            raise EngineUrlError(BLOBSTORE_SETTING, f"not an s3://bucket URL: {url!r}")
        return cls.from_parsed(parsed)

    @classmethod
    def from_parsed(cls, parsed: S3BlobsUrl) -> "S3Location":
        return cls(
            bucket=parsed.bucket,
            endpoint=parsed.endpoint,
            secure=parsed.secure,
            region=parsed.region or os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
            access_key=os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("MINIO_ROOT_USER", ""),
            secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY") or os.environ.get("MINIO_ROOT_PASSWORD", ""),
            object_lock=parsed.object_lock,
            ca_certs=parsed.ca_certs,
        )


class S3BlobStore:
    """Objects at ``blobs/ab/cd/<sha256>``, raw bytes, with the digest in user metadata.

    Integrity: a single PUT carries ``x-amz-checksum-sha256``, which the server checks
    against the bytes it received (BadDigest otherwise); each multipart part is covered
    by SigV4's payload hash (http) or Content-MD5 (https). Reads are re-hashed.

    Write-once: a single PUT is conditional (``If-None-Match: *``), so the server
    writes it only if the key is free; a multipart upload (16 MiB and more) happens only
    after a HEAD found no object. Bytes already there get their lock raised instead. Two
    multipart writers racing between the HEAD and the upload, or a server that ignores
    conditional writes (S3 added them in 2024), store the same bytes twice (the key is
    their hash): the worst case is a second, identical version; both carry the lock they
    were asked for, ``get`` returns either, and ``delete`` removes every version.

    Failures are bounded for the SMTP edge, which must answer 451 within seconds when
    S3 is gone: short connect timeout, and retries with exponential backoff (connection
    errors, 5xx, SlowDown) that stop after ``attempts`` or ``retry_seconds``.
    """

    def __init__(
        self,
        location: S3Location,
        *,
        connect_timeout: float = 2.0,
        read_timeout: float = 10.0,
        attempts: int = 4,
        backoff_seconds: float = 0.1,
        retry_seconds: float = 3.0,
        workers: int = 8,
    ) -> None:
        self.location = location
        self._attempts = attempts
        self._backoff = backoff_seconds
        self._retry_seconds = retry_seconds
        self._workers = workers
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
            retries=False,  # ours below know S3's error codes and a time budget
            maxsize=max(10, workers + 2),
            cert_reqs="CERT_REQUIRED",
            ca_certs=location.ca_certs or os.environ.get("SSL_CERT_FILE") or certifi.where(),
        )
        self._client = Minio(
            location.endpoint,
            access_key=location.access_key,
            secret_key=location.secret_key,
            secure=location.secure,
            region=location.region,
            http_client=http,
        )

    @classmethod
    def from_url(cls, url: str) -> "S3BlobStore":
        return cls(S3Location.from_url(url))

    @staticmethod
    def key_for(digest: str) -> str:
        return f"{_PREFIX}{digest[:2]}/{digest[2:4]}/{digest}"

    # ------------------------------------------------------------------ writes

    def put(self, data: bytes, *, lock: LockRequest | None = None) -> str:
        return self.put_many([data], locks=[lock])[0]

    def put_many(self, blobs: Sequence[bytes], *, locks: Sequence[LockRequest | None] | None = None) -> list[str]:
        """Store each distinct blob once, up to ``workers`` at a time; durable on return."""
        if locks is not None and len(locks) != len(blobs):
            raise ValueError(f"{len(locks)} locks for {len(blobs)} blobs")
        digests = [sha256_hex(data) for data in blobs]
        pending: dict[str, tuple[bytes, LockRequest | None]] = {}
        for index, (digest, data) in enumerate(zip(digests, blobs)):
            lock = locks[index] if locks is not None else None
            if digest in pending:  # same bytes twice in a batch: one object, both demands
                lock = lock.combine(pending[digest][1]) if lock else pending[digest][1]
            pending[digest] = (data, lock)
        jobs = [(digest, data, lock) for digest, (data, lock) in pending.items()]
        if len(jobs) == 1:
            self._store(*jobs[0])
        elif jobs:
            # Wait for every write before raising, so nothing is still in flight when the
            # caller reports failure (and the sender's retry does not race with it).
            futures = [self._executor().submit(self._store, *job) for job in jobs]
            wait(futures)
            for future in futures:
                future.result()
        return digests

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="s3-put")
            return self._pool

    def _store(self, digest: str, data: bytes, lock: LockRequest | None) -> None:
        key = self.key_for(digest)
        if len(data) < MULTIPART_THRESHOLD:
            created = self._retrying(lambda: self._put_if_absent(key, digest, data, lock), action=f"put {key}", digest=digest)
        elif not self._exists(key, digest):
            self._retrying(lambda: self._upload_parts(key, digest, data, lock), action=f"put {key}", digest=digest)
            created = True
        else:
            created = False
        if not created and lock is not None:
            self._lock_at_least(key, digest, lock)

    def _put_if_absent(self, key: str, digest: str, data: bytes, lock: LockRequest | None) -> bool:
        """One conditional PUT; False if the object was there already (nothing written).

        ``If-None-Match: *`` (RFC 9110 section 13.1.2, S3's conditional writes) makes the
        server store the bytes only if the key is free and answer 412 otherwise: the
        write-once check and the write in one round trip, with no window between them.
        """
        headers = {
            "Content-Type": "message/rfc822",
            "If-None-Match": "*",
            "x-amz-meta-sha256": digest,
            "x-amz-checksum-sha256": base64.b64encode(bytes.fromhex(digest)).decode(),
        }
        if lock is not None:
            headers["x-amz-object-lock-mode"] = lock.mode.value
            headers["x-amz-object-lock-retain-until-date"] = to_iso8601utc(lock.retain_until) or ""
        try:
            self._raw("PUT", key, query={}, headers=headers, body=data)
        except S3Error as error:
            if error.code == "PreconditionFailed":
                return False
            raise
        except ServerError as error:  # a 412 without an S3 error body
            if error.status_code == 412:
                return False
            raise
        return True

    def _upload_parts(self, key: str, digest: str, data: bytes, lock: LockRequest | None) -> None:
        # Each part is covered by SigV4's payload hash (http) or Content-MD5 (https).
        self._client.put_object(
            self.location.bucket,
            key,
            io.BytesIO(data),
            len(data),
            content_type="message/rfc822",
            metadata={"x-amz-meta-sha256": digest},
            part_size=_PART_SIZE,
            retention=Retention(lock.mode.value, lock.retain_until) if lock else None,
        )

    def _lock_at_least(self, key: str, digest: str, lock: LockRequest) -> None:
        """Raise an existing object's retention to cover ``lock`` (same bytes, new demand)."""
        found = self._retrying(
            lambda: self._client.get_object_retention(self.location.bucket, key), action=f"get retention of {key}", digest=digest
        )
        current = None
        if found is not None and found.mode and found.retain_until_date > datetime.now(timezone.utc):
            current = LockRequest(LockMode(found.mode), found.retain_until_date)
        wanted = lock.combine(current)
        if wanted == current:
            return
        body = marshal(Retention(wanted.mode.value, wanted.retain_until))
        headers = {"Content-MD5": md5sum_hash(body)}
        if current is not None and current.mode is LockMode.GOVERNANCE and wanted.mode is LockMode.COMPLIANCE:
            # S3 counts GOVERNANCE -> COMPLIANCE as changing a governance lock, which
            # needs the bypass header (and s3:BypassGovernanceRetention) even though the
            # object only becomes harder to delete.
            headers["x-amz-bypass-governance-retention"] = "true"
        self._retrying(
            lambda: self._raw("PUT", key, query={"retention": ""}, headers=headers, body=body),
            action=f"lock {key} as {wanted.mode.value} until {wanted.retain_until.isoformat()}",
            digest=digest,
        )

    # ------------------------------------------------------------------ reads

    def get(self, digest: str) -> bytes:
        key = self._key(digest)

        def read() -> bytes:
            response = self._client.get_object(self.location.bucket, key)
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

        return verify_digest(digest, self._retrying(read, action=f"get {key}", digest=digest))

    def stream(self, digest: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """Yield the object in chunks (exports of large messages), hashing as it goes.

        The hash can only be judged at the end: ``BlobCorruptError`` comes after the last
        chunk, so a consumer keeps what it wrote only once the iterator is exhausted.
        """
        key = self._key(digest)
        response = self._retrying(
            lambda: self._client.get_object(self.location.bucket, key), action=f"get {key}", digest=digest
        )
        hasher = hashlib.sha256()
        try:
            for chunk in response.stream(chunk_size):
                hasher.update(chunk)
                yield chunk
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise BlobStoreError(f"reading {key} from S3 at {self.location.endpoint} failed: {_describe(error)}") from error
        finally:
            response.close()
            response.release_conn()
        if hasher.hexdigest() != digest:
            raise BlobCorruptError(f"blob {digest} is corrupt: its bytes hash to {hasher.hexdigest()}")

    def exists(self, digest: str) -> bool:
        return self._exists(self._key(digest), digest)

    def _exists(self, key: str, digest: str) -> bool:
        try:
            self._retrying(lambda: self._client.stat_object(self.location.bucket, key), action=f"stat {key}", digest=digest)
        except BlobNotFoundError:
            return False
        return True

    def iter_digests(self) -> Iterator[str]:
        """Every stored digest, one ListObjectsV2 page at a time (each page retried alone)."""
        after: str | None = None
        while True:
            page = self._retrying(
                lambda: list(
                    islice(
                        self._client.list_objects(self.location.bucket, prefix=_PREFIX, recursive=True, start_after=after),
                        _LIST_PAGE,
                    )
                ),
                action=f"list {_PREFIX}",
            )
            for item in page:
                name = item.object_name.rsplit("/", 1)[-1]
                if is_digest(name):
                    yield name
            if len(page) < _LIST_PAGE:
                return
            after = page[-1].object_name

    # ------------------------------------------------------------------ deletes and holds

    def delete(self, digest: str) -> None:
        """Remove every version of the object. S3 refuses (``BlobStoreError``) while any is locked or held.

        A plain DELETE on a versioned bucket would only hide the bytes behind a delete
        marker; a purge has to remove the data itself.
        """
        key = self._key(digest)
        versions = self._retrying(lambda: self._versions(key), action=f"list versions of {key}", digest=digest)
        if not any(not marker for _, marker in versions):
            raise BlobNotFoundError(digest)
        for version_id, _ in versions:
            self._retrying(
                lambda: self._client.remove_object(self.location.bucket, key, version_id=version_id),
                action=f"delete {key} version {version_id}",
                digest=digest,
            )

    def _versions(self, key: str) -> list[tuple[str | None, bool]]:
        """(version id, is a delete marker) of every version of ``key``.

        Read from ListObjectVersions' XML directly: minio-py 7.2's parser fails on the
        nanosecond timestamps versitygw gives delete markers.
        """
        found: list[tuple[str | None, bool]] = []
        query = {"versions": "", "prefix": key}
        while True:
            root = ET.fromstring(self._raw("GET", None, query=query).data)
            for element in root:
                tag = element.tag.rsplit("}", 1)[-1]
                if tag in {"Version", "DeleteMarker"} and _child(element, "Key") == key:
                    version = _child(element, "VersionId")
                    found.append((None if version in {None, "", "null"} else version, tag == "DeleteMarker"))
            if _child(root, "IsTruncated") != "true":
                return found
            query = {**query, "key-marker": _child(root, "NextKeyMarker") or "", "version-id-marker": _child(root, "NextVersionIdMarker") or ""}

    def set_legal_hold(self, digest: str, on: bool) -> None:
        """Put the current version under legal hold (undeletable whatever its retention) or lift the hold."""
        key = self._key(digest)
        if on:
            operation = lambda: self._client.enable_object_legal_hold(self.location.bucket, key)  # noqa: E731
        else:
            operation = lambda: self._client.disable_object_legal_hold(self.location.bucket, key)  # noqa: E731
        self._retrying(operation, action=f"{'set' if on else 'lift'} legal hold on {key}", digest=digest)

    def legal_hold(self, digest: str) -> bool:
        key = self._key(digest)
        return self._retrying(
            lambda: self._client.is_object_legal_hold_enabled(self.location.bucket, key),
            action=f"read legal hold of {key}",
            digest=digest,
        )

    # ------------------------------------------------------------------ health

    def check(self) -> None:
        """One request, no retries: is the bucket reachable, ours, and (with object_lock) WORM-capable?"""
        where = f"S3 at {self.location.endpoint}"
        bucket = self.location.bucket
        try:
            # A GET, not HEAD: only an error body tells bad credentials from a missing permission.
            versioning = self._client.get_bucket_versioning(bucket).status
            lock_enabled = self._object_lock_enabled() if self.location.object_lock else True
        except S3Error as error:
            if error.code in _BAD_CREDENTIALS:
                raise BlobStoreError(
                    f"{where} refused the credentials ({error.code}): check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                ) from error
            if error.code == "NoSuchBucket":
                raise BlobStoreError(f"{where} has no bucket {bucket!r}: create it (with Object Lock for WORM retention)") from error
            if error.code == "AccessDenied":
                raise BlobStoreError(f"{where} denied these credentials access to bucket {bucket!r} ({error.message})") from error
            raise BlobStoreError(f"{where} answered {error.code}: {error.message}") from error
        except (ServerError, InvalidResponseError) as error:
            raise BlobStoreError(f"{where} is not answering like S3: {error}") from error
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise BlobStoreError(f"{where} is unreachable: {_describe(error)}") from error
        if self.location.object_lock and versioning != "Enabled":
            raise BlobStoreError(
                f"bucket {bucket!r} has versioning {versioning or 'never enabled'}; Object Lock (WORM retention) needs it Enabled"
            )
        if not lock_enabled:
            raise BlobStoreError(
                f"bucket {bucket!r} has no Object Lock, so WORM retention cannot be enforced; "
                "S3 enables Object Lock when a bucket is created (make a new bucket with it)"
            )

    def _object_lock_enabled(self) -> bool:
        # Read the XML directly: minio-py 7.2 fails to parse versitygw's empty <Rule></Rule>.
        try:
            root = ET.fromstring(self._raw("GET", None, query={"object-lock": ""}).data)
        except S3Error as error:
            if error.code == "ObjectLockConfigurationNotFoundError":
                return False
            raise
        return _child(root, "ObjectLockEnabled") == "Enabled"

    # ------------------------------------------------------------------ plumbing

    def _key(self, digest: str) -> str:
        if not is_digest(digest):
            raise BlobNotFoundError(digest)
        return self.key_for(digest)

    def _raw(self, method: str, key: str | None, *, query: dict[str, str], headers: dict[str, str] | None = None,
             body: bytes | None = None) -> urllib3.BaseHTTPResponse:
        """A signed request minio-py 7.2 has no public call for (minio is pinned; the
        tests against a real S3 server catch a change of this private method)."""
        return self._client._execute(  # noqa: SLF001
            method, self.location.bucket, key, body=body, headers=headers, query_params=query
        )

    def _retrying(self, operation: Callable[[], _T], *, action: str, digest: str = "") -> _T:
        """Run ``operation``; retry transient failures with jittered exponential backoff.

        No attempt starts after ``retry_seconds``: with the server down this gives up in
        well under the few seconds the SMTP edge has to answer 451.
        """
        deadline = time.monotonic() + self._retry_seconds
        delay = self._backoff
        attempt = 0
        while True:
            attempt += 1
            try:
                return operation()
            except S3Error as error:
                if error.code in _NOT_FOUND:
                    raise BlobNotFoundError(digest or action) from error
                status = error.response.status if error.response is not None else 0
                if error.code not in _TRANSIENT and status < 500:
                    raise BlobStoreError(f"S3 refused to {action}: {error.code}: {error.message}") from error
                failure: Exception = error
            except ServerError as error:
                if error.status_code < 500:
                    raise BlobStoreError(f"S3 refused to {action}: HTTP {error.status_code}") from error
                failure = error
            except InvalidResponseError as error:  # an error page that is not S3 XML (a proxy)
                if getattr(error, "_code", 500) < 500:
                    raise BlobStoreError(f"S3 at {self.location.endpoint} refused to {action}: {error}") from error
                failure = error
            except (urllib3.exceptions.HTTPError, OSError) as error:  # refused, reset, timed out
                failure = error
            pause = delay * random.uniform(0.5, 1.0)
            if attempt >= self._attempts or time.monotonic() + pause > deadline:
                raise BlobStoreError(
                    f"S3 at {self.location.endpoint} failed to {action} after {attempt} attempts: {_describe(failure)}"
                ) from failure
            time.sleep(pause)
            delay *= 2


def _child(element: ET.Element, name: str) -> str | None:
    for child in element:
        if child.tag.rsplit("}", 1)[-1] == name:
            return child.text
    return None


def _describe(error: Exception) -> str:
    if isinstance(error, S3Error):
        return f"{error.code}: {error.message}"
    # urllib3 prefixes the connection object's repr: keep the reason.
    return f"{type(error).__name__}: {str(error).rsplit('>: ', 1)[-1]}"
