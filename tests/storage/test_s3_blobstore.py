"""S3BlobStore against a real S3 server with Object Lock: exact bytes, once, locked when asked, refused when it must be."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from minio.commonconfig import COMPLIANCE, GOVERNANCE
from minio.error import S3Error
from minio.retention import Retention

from archiver.envelope import Envelope
from archiver.journal import Arrival, Journal
from retention import policies
from storage.blobstore import BlobCorruptError, BlobNotFoundError, BlobStoreError, LockMode, LockRequest, sha256_hex
from storage.database import open_catalogue
from storage.s3 import S3BlobStore, S3Location
from tests.archive_factory import make_message
from tests.services import s3_bucket, s3_client, s3_credentials, s3_versions

pytestmark = pytest.mark.services

REPO = Path(__file__).resolve().parents[2]
# Locks in these tests last seconds: COMPLIANCE cannot be lifted, and the session's
# bucket has to be emptied at the end.
LOCK_SECONDS = 8


@pytest.fixture(scope="session")
def bucket_url() -> Iterator[str]:
    """One fresh bucket with Object Lock for the whole session, removed at its end."""
    with s3_bucket("pv-blobs") as url:
        yield url


@pytest.fixture(scope="session")
def client(bucket_url: str):  # type: ignore[no-untyped-def]
    """The raw minio client, to look at and tamper with objects behind the adapter's back."""
    return s3_client(bucket_url)


@pytest.fixture
def make_store(bucket_url: str) -> Callable[..., S3BlobStore]:
    """``make_store(url=..., secret_key=..., **S3BlobStore options)``: an adapter on the session bucket by default."""

    def make(url: str = bucket_url, *, access_key: str | None = None, secret_key: str | None = None, **options: object) -> S3BlobStore:
        access, secret = s3_credentials()
        location = replace(S3Location.from_url(url), access_key=access_key or access, secret_key=secret_key or secret)
        return S3BlobStore(location, **options)  # type: ignore[arg-type]

    return make


@pytest.fixture
def store(make_store: Callable[..., S3BlobStore]) -> S3BlobStore:
    return make_store()


def unique(text: str = "message") -> bytes:
    """Distinct bytes per call: the session bucket is shared by every test."""
    return f"Subject: {text}\r\nX-Test: {uuid.uuid4()}\r\n\r\nbody \xe9\x00 bytes\r\n".encode("latin-1")


def in_seconds(seconds: float) -> datetime:
    return datetime.now(timezone.utc) + timedelta(seconds=seconds)


def data_versions(client, store: S3BlobStore, digest: str) -> list[str | None]:  # type: ignore[no-untyped-def]
    key = store.key_for(digest)
    return [version for name, version, marker in s3_versions(client, store.location.bucket, key) if name == key and not marker]


# ---------------------------------------------------------------------------- bytes


def test_round_trip_is_byte_exact(store: S3BlobStore) -> None:
    data = unique("round trip") + bytes(range(256))
    digest = store.put(data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert store.get(digest) == data
    assert b"".join(store.stream(digest, chunk_size=7)) == data
    assert store.exists(digest)
    assert digest in set(store.iter_digests())


def test_identical_bytes_are_stored_once_with_no_second_version(store: S3BlobStore, client) -> None:  # type: ignore[no-untyped-def]
    data = unique("twice")
    digest = store.put(data)
    assert store.put(data) == digest
    assert store.put_many([data, data]) == [digest, digest]
    assert len(data_versions(client, store, digest)) == 1


def test_the_server_checks_the_sha256_the_adapter_sends(store: S3BlobStore, client) -> None:  # type: ignore[no-untyped-def]
    """A PUT whose x-amz-checksum-sha256 does not match its bytes is refused, and ours carry it."""
    data = unique("checksum")
    wrong = base64.b64encode(hashlib.sha256(b"other bytes").digest()).decode()
    key = f"scratch/{uuid.uuid4()}"
    with pytest.raises(S3Error) as refused:
        client.put_object(store.location.bucket, key, io.BytesIO(data), len(data), metadata={"x-amz-checksum-sha256": wrong})
    assert refused.value.code == "BadDigest"
    with pytest.raises(S3Error):
        client.stat_object(store.location.bucket, key)

    digest = store.put(data)
    stat = client.stat_object(store.location.bucket, store.key_for(digest), extra_headers={"x-amz-checksum-mode": "ENABLED"})
    assert base64.b64decode(stat.metadata["x-amz-checksum-sha256"]).hex() == digest


def test_bytes_changed_behind_its_back_are_detected_on_read(store: S3BlobStore, client) -> None:  # type: ignore[no-untyped-def]
    digest = store.put(unique("original"))
    tampered = b"Subject: forged\r\n\r\nnot what was archived\r\n"
    client.put_object(store.location.bucket, store.key_for(digest), io.BytesIO(tampered), len(tampered))
    with pytest.raises(BlobCorruptError):
        store.get(digest)
    with pytest.raises(BlobCorruptError):
        b"".join(store.stream(digest))


def test_a_20_mib_message_goes_up_in_parts_and_comes_back_exact(store: S3BlobStore, client) -> None:  # type: ignore[no-untyped-def]
    data = unique("large") + os.urandom(20 * 1024 * 1024)
    digest = store.put(data)
    stat = client.stat_object(store.location.bucket, store.key_for(digest))
    assert stat.size == len(data)
    assert stat.etag.endswith("-2")  # a multipart ETag: 16 MiB + the rest
    assert store.get(digest) == data
    chunks = list(store.stream(digest))
    assert len(chunks) > 1 and b"".join(chunks) == data


def test_unknown_digests_are_not_found(store: S3BlobStore) -> None:
    missing = sha256_hex(unique("never stored"))
    assert not store.exists(missing)
    with pytest.raises(BlobNotFoundError):
        store.get(missing)
    with pytest.raises(BlobNotFoundError):
        store.delete(missing)
    with pytest.raises(BlobNotFoundError):
        store.get("../not-a-digest")


def test_iter_digests_lists_every_object_page_by_page(make_store: Callable[..., S3BlobStore], monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("storage.s3._LIST_PAGE", 100)  # three pages without writing thousands of objects
    with s3_bucket("pv-list", object_lock=False) as url:
        store = make_store(url)
        digests = store.put_many([f"message {number} {uuid.uuid4()}".encode() for number in range(250)])
        listed = list(store.iter_digests())
        assert len(listed) == len(set(listed)) == 250
        assert set(listed) == set(digests)


# ---------------------------------------------------------------------------- WORM


def test_the_server_refuses_early_deletion_of_a_compliance_locked_object(store: S3BlobStore, client) -> None:  # type: ignore[no-untyped-def]
    until = in_seconds(LOCK_SECONDS)
    data = unique("compliance")
    digest = store.put(data, lock=LockRequest(LockMode.COMPLIANCE, until))
    key = store.key_for(digest)
    retention = client.get_object_retention(store.location.bucket, key)
    assert retention.mode == COMPLIANCE
    assert abs(retention.retain_until_date - until) < timedelta(milliseconds=2)
    [version] = data_versions(client, store, digest)
    with pytest.raises(S3Error) as refused:
        client.remove_object(store.location.bucket, key, version_id=version)
    assert refused.value.code == "AccessDenied"
    with pytest.raises(BlobStoreError, match="AccessDenied"):
        store.delete(digest)
    with pytest.raises(S3Error):  # nor can the lock be shortened
        client.set_object_retention(store.location.bucket, key, Retention(COMPLIANCE, until - timedelta(seconds=4)), version_id=version)
    assert store.get(digest) == data


def test_the_server_refuses_to_delete_a_governance_locked_object_without_bypass(store: S3BlobStore, client) -> None:  # type: ignore[no-untyped-def]
    digest = store.put(unique("governance"), lock=LockRequest(LockMode.GOVERNANCE, in_seconds(LOCK_SECONDS)))
    key = store.key_for(digest)
    assert client.get_object_retention(store.location.bucket, key).mode == GOVERNANCE
    [version] = data_versions(client, store, digest)
    with pytest.raises(S3Error) as refused:
        client.remove_object(store.location.bucket, key, version_id=version)
    assert refused.value.code == "AccessDenied"
    with pytest.raises(BlobStoreError, match="AccessDenied"):
        store.delete(digest)
    assert store.exists(digest)


def test_a_legal_hold_blocks_deletion_until_it_is_lifted(store: S3BlobStore, client) -> None:  # type: ignore[no-untyped-def]
    digest = store.put(unique("held"))
    assert not store.legal_hold(digest)
    store.set_legal_hold(digest, True)
    assert store.legal_hold(digest)
    with pytest.raises(BlobStoreError, match="AccessDenied"):
        store.delete(digest)
    assert store.exists(digest)
    store.set_legal_hold(digest, False)
    assert not store.legal_hold(digest)
    store.delete(digest)
    assert not store.exists(digest)
    assert data_versions(client, store, digest) == []  # every version gone, not hidden behind a delete marker


def test_storing_existing_bytes_again_raises_their_lock_and_never_lowers_it(store: S3BlobStore, client) -> None:  # type: ignore[no-untyped-def]
    data = unique("relock")
    digest = store.put(data)
    key = store.key_for(digest)
    assert client.get_object_retention(store.location.bucket, key) is None

    first = in_seconds(LOCK_SECONDS - 2)
    store.put(data, lock=LockRequest(LockMode.GOVERNANCE, first))
    retention = client.get_object_retention(store.location.bucket, key)
    assert (retention.mode, abs(retention.retain_until_date - first) < timedelta(milliseconds=2)) == (GOVERNANCE, True)

    later = in_seconds(LOCK_SECONDS)
    store.put(data, lock=LockRequest(LockMode.COMPLIANCE, later))  # GOVERNANCE -> COMPLIANCE, later
    retention = client.get_object_retention(store.location.bucket, key)
    assert (retention.mode, abs(retention.retain_until_date - later) < timedelta(milliseconds=2)) == (COMPLIANCE, True)

    store.put(data, lock=LockRequest(LockMode.GOVERNANCE, first))  # laxer and shorter: ignored
    retention = client.get_object_retention(store.location.bucket, key)
    assert (retention.mode, abs(retention.retain_until_date - later) < timedelta(milliseconds=2)) == (COMPLIANCE, True)
    assert len(data_versions(client, store, digest)) == 1


def test_a_lock_the_bucket_cannot_honour_is_an_error_not_an_unlocked_blob(make_store: Callable[..., S3BlobStore]) -> None:
    with s3_bucket("pv-nolock", object_lock=False) as url:
        store = make_store(url)
        data = unique("must be locked")
        lock = LockRequest(LockMode.COMPLIANCE, in_seconds(60))
        with pytest.raises(BlobStoreError, match="Object ?Lock"):
            store.put(data, lock=lock)
        # versitygw 1.8 keeps the bytes of the PUT it refused; the sender's retry finds
        # them and must still fail, since the lock cannot be added afterwards either.
        with pytest.raises(BlobStoreError, match="Object ?Lock"):
            store.put(data, lock=lock)


def test_journal_locks_a_message_as_its_domains_policies_say(store: S3BlobStore, client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The longest retention and the strictest mode of the message's domains; none for other domains."""
    sessions = open_catalogue(f"sqlite:///{tmp_path / 'catalogue.sqlite3'}")
    with sessions.begin() as session:
        policies.set(session=session, domain="Locked.Example", retention_days=1, object_lock_mode="COMPLIANCE", actor="test")
        policies.set(session=session, domain="governed.example", retention_days=2, object_lock_mode="GOVERNANCE", actor="test")
        policies.set(session=session, domain="kept.example", retention_days=3650, object_lock_mode=None, actor="test")
    journal = Journal(store, sessions)
    # Received long enough ago that the lock runs out seconds from now: the bucket must be
    # emptied when the session ends, and nobody can lift a COMPLIANCE lock early.
    received = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(days=2) + timedelta(seconds=LOCK_SECONDS)
    both = make_message(to="ops@locked.example", cc="audit@governed.example", subject=f"both {uuid.uuid4()}")
    governed = make_message(to="ops@governed.example", subject=f"governed {uuid.uuid4()}")
    unlocked = make_message(to="someone@kept.example", subject=f"kept {uuid.uuid4()}")
    receipts = journal.journal_many(
        [Arrival(raw, Envelope(mail_from="alice@outside.example", received_at=received), "smtp") for raw in (both, governed, unlocked)]
    )

    def retention(receipt):  # type: ignore[no-untyped-def]
        return client.get_object_retention(store.location.bucket, store.key_for(receipt.sha256))

    assert (retention(receipts[0]).mode, retention(receipts[0]).retain_until_date) == (COMPLIANCE, received + timedelta(days=2))
    assert (retention(receipts[1]).mode, retention(receipts[1]).retain_until_date) == (GOVERNANCE, received + timedelta(days=2))
    assert retention(receipts[2]) is None
    assert store.get(receipts[0].sha256) == both
    sessions.kw["bind"].dispose()


# ---------------------------------------------------------------------------- failures


@pytest.fixture
def s3_stopped(bucket_url: str) -> Iterator[None]:
    """Stops the local versitygw (scripts/services) for the test and ALWAYS starts it again."""
    script = REPO / "scripts" / "services"
    if subprocess.run([str(script), "status", "s3"], capture_output=True, timeout=60).returncode != 0:
        pytest.skip("needs the S3 server of scripts/services, which this test stops and restarts")
    try:
        subprocess.run([str(script), "down", "s3"], capture_output=True, timeout=120, check=True)
        yield
    finally:
        subprocess.run([str(script), "up", "s3"], capture_output=True, timeout=300, check=True)


def test_put_fails_within_seconds_when_the_server_is_down(make_store: Callable[..., S3BlobStore], s3_stopped: None) -> None:
    """The SMTP edge must answer 451 promptly: the adapter gives up fast, and says why."""
    store = make_store()
    started = time.monotonic()
    with pytest.raises(BlobStoreError, match="Connection refused"):
        store.put(unique("during the outage"))
    assert time.monotonic() - started < 5
    with pytest.raises(BlobStoreError, match="unreachable"):
        store.check()


def test_the_store_works_again_once_the_server_is_back(store: S3BlobStore) -> None:
    data = unique("after the outage")
    assert store.get(store.put(data)) == data


def test_check_passes_on_a_versioned_bucket_with_object_lock(store: S3BlobStore) -> None:
    assert store.location.object_lock
    store.check()


def test_check_names_wrong_credentials(make_store: Callable[..., S3BlobStore]) -> None:
    with pytest.raises(BlobStoreError, match="refused the credentials .SignatureDoesNotMatch"):
        make_store(secret_key="not-the-secret").check()
    with pytest.raises(BlobStoreError, match="refused the credentials .InvalidAccessKeyId"):
        make_store(access_key="nobody-has-this-key").check()


def test_check_names_a_missing_bucket(make_store: Callable[..., S3BlobStore], bucket_url: str) -> None:
    url = bucket_url.replace("s3://", "s3://no-such-bucket-", 1)
    with pytest.raises(BlobStoreError, match="has no bucket 'no-such-bucket-"):
        make_store(url).check()


def test_check_names_a_bucket_that_cannot_lock(make_store: Callable[..., S3BlobStore], client) -> None:  # type: ignore[no-untyped-def]
    from minio.commonconfig import ENABLED
    from minio.versioningconfig import VersioningConfig

    with s3_bucket("pv-plain", object_lock=False) as url:
        make_store(url).check()  # fine when WORM is not asked for
        locking = url + "&object_lock=true"
        with pytest.raises(BlobStoreError, match="versioning never enabled"):
            make_store(locking).check()
        client.set_bucket_versioning(S3Location.from_url(url).bucket, VersioningConfig(ENABLED))
        with pytest.raises(BlobStoreError, match="has no Object Lock"):
            make_store(locking).check()
