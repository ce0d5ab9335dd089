"""S3 BlobStore on the minio client: raw MIME objects named by their SHA-256."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar
from urllib.parse import parse_qs, urlparse

from storage.blobstore import BlobNotFoundError, BlobStoreError, is_digest, sha256_hex, verify_digest

_PREFIX = "blobs/"
_MULTIPART_THRESHOLD = 16 * 1024 * 1024
_T = TypeVar("_T")


@dataclass(frozen=True)
class S3Location:
    """Where the blobs live, parsed from ``s3://bucket?endpoint=host:port&secure=false&region=r``.

    Credentials come from the usual variables (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY,
    or MINIO_ROOT_USER / MINIO_ROOT_PASSWORD) so that they never sit in a URL or a log.
    """

    bucket: str
    endpoint: str
    secure: bool
    region: str
    access_key: str
    secret_key: str

    @classmethod
    def from_url(cls, url: str) -> "S3Location":
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError(f"not an s3://bucket URL: {url!r}")
        query = {key: values[-1] for key, values in parse_qs(parsed.query).items()}
        return cls(
            bucket=parsed.netloc,
            endpoint=query.get("endpoint", "s3.amazonaws.com"),
            secure=query.get("secure", "true").lower() not in {"0", "false", "no"},
            region=query.get("region", os.environ.get("AWS_DEFAULT_REGION", "us-east-1")),
            access_key=os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("MINIO_ROOT_USER", ""),
            secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY") or os.environ.get("MINIO_ROOT_PASSWORD", ""),
        )


@dataclass(frozen=True)
class ObjectLockRule:
    """Retention a locked bucket applies to a new object (S3 Object Lock)."""

    mode: str  # "COMPLIANCE" or "GOVERNANCE"
    retain_until: datetime


class S3BlobStore:
    """Objects at ``blobs/ab/cd/<sha256>``, raw bytes, with the digest in user metadata.

    Write integrity: each PUT carries ``x-amz-checksum-sha256`` (single PUT) so the server
    rejects bytes damaged in transit; reads are re-hashed before they are returned.
    """

    def __init__(self, location: S3Location, *, attempts: int = 4, backoff_seconds: float = 0.2) -> None:
        from minio import Minio

        self.location = location
        self._attempts = attempts
        self._backoff = backoff_seconds
        self._client = Minio(
            location.endpoint,
            access_key=location.access_key,
            secret_key=location.secret_key,
            secure=location.secure,
            region=location.region,
        )

    @classmethod
    def from_url(cls, url: str) -> "S3BlobStore":
        return cls(S3Location.from_url(url))

    @staticmethod
    def key_for(digest: str) -> str:
        return f"{_PREFIX}{digest[:2]}/{digest[2:4]}/{digest}"

    def put(self, data: bytes, *, lock: ObjectLockRule | None = None) -> str:
        digest = sha256_hex(data)
        if self.exists(digest):
            return digest  # write-once: never overwrite, never create a second version
        self._retrying(lambda: self._put_object(digest, data, lock))
        return digest

    def put_many(self, blobs: Sequence[bytes]) -> list[str]:
        return [self.put(data) for data in blobs]

    def _put_object(self, digest: str, data: bytes, lock: ObjectLockRule | None) -> None:
        from minio.commonconfig import COMPLIANCE, GOVERNANCE
        from minio.retention import Retention

        retention = None
        if lock is not None:
            retention = Retention(COMPLIANCE if lock.mode == "COMPLIANCE" else GOVERNANCE, lock.retain_until)
        metadata = {"x-amz-meta-sha256": digest}
        if len(data) < _MULTIPART_THRESHOLD:
            metadata["x-amz-checksum-sha256"] = base64.b64encode(bytes.fromhex(digest)).decode()
        self._client.put_object(
            self.location.bucket,
            self.key_for(digest),
            io.BytesIO(data),
            len(data),
            content_type="message/rfc822",
            metadata=metadata,
            part_size=_MULTIPART_THRESHOLD if len(data) >= _MULTIPART_THRESHOLD else 0,
            retention=retention,
        )

    def get(self, digest: str) -> bytes:
        def read() -> bytes:
            response = self._client.get_object(self.location.bucket, self.key_for(digest))
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

        return verify_digest(digest, self._retrying(read, digest=digest))

    def stream(self, digest: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """Yield the object in chunks, checking the hash at the end (for large exports)."""
        response = self._retrying(lambda: self._client.get_object(self.location.bucket, self.key_for(digest)), digest=digest)
        hasher = hashlib.sha256()
        try:
            for chunk in response.stream(chunk_size):
                hasher.update(chunk)
                yield chunk
        finally:
            response.close()
            response.release_conn()
        if hasher.hexdigest() != digest:
            raise BlobStoreError(f"blob {digest} is corrupt: streamed bytes hash to {hasher.hexdigest()}")

    def exists(self, digest: str) -> bool:
        from minio.error import S3Error

        try:
            self._retrying(lambda: self._client.stat_object(self.location.bucket, self.key_for(digest)), digest=digest)
            return True
        except BlobNotFoundError:
            return False
        except S3Error:
            return False

    def delete(self, digest: str) -> None:
        self._retrying(lambda: self._client.remove_object(self.location.bucket, self.key_for(digest)), digest=digest)

    def iter_digests(self) -> Iterator[str]:
        for item in self._retrying(lambda: list(self._client.list_objects(self.location.bucket, prefix=_PREFIX, recursive=True))):
            name = item.object_name.rsplit("/", 1)[-1]
            if is_digest(name):
                yield name

    def set_legal_hold(self, digest: str, on: bool) -> None:
        from minio.legalhold import LegalHold  # noqa: F401  (enable_/disable_ take no argument object)

        key = self.key_for(digest)
        if on:
            self._retrying(lambda: self._client.enable_object_legal_hold(self.location.bucket, key), digest=digest)
        else:
            self._retrying(lambda: self._client.disable_object_legal_hold(self.location.bucket, key), digest=digest)

    def check(self) -> None:
        from minio.error import S3Error

        try:
            found = self._client.bucket_exists(self.location.bucket)
        except S3Error as error:
            if error.code in {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied"}:
                raise BlobStoreError(f"S3 at {self.location.endpoint} refused the credentials ({error.code})") from error
            raise BlobStoreError(f"S3 at {self.location.endpoint} answered {error.code}: {error.message}") from error
        except Exception as error:  # urllib3 raises many types for an unreachable host
            raise BlobStoreError(f"S3 at {self.location.endpoint} is unreachable: {error}") from error
        if not found:
            raise BlobStoreError(f"S3 bucket {self.location.bucket!r} does not exist at {self.location.endpoint}")

    def _retrying(self, operation: Callable[[], _T], *, digest: str = "") -> _T:
        from minio.error import S3Error

        delay = self._backoff
        for attempt in range(1, self._attempts + 1):
            try:
                return operation()
            except S3Error as error:
                if error.code in {"NoSuchKey", "NoSuchObject"}:
                    raise BlobNotFoundError(digest) from error
                if error.code not in {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout"} or attempt == self._attempts:
                    raise BlobStoreError(f"S3 refused the operation: {error.code}: {error.message}") from error
            except BlobStoreError:
                raise
            except Exception as error:  # connection refused, reset, timeouts
                if attempt == self._attempts:
                    raise BlobStoreError(f"S3 at {self.location.endpoint} is unreachable: {error}") from error
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")
