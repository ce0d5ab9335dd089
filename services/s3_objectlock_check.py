#!/usr/bin/env python3
"""Proves the S3 server honours versioning, Object Lock retention and legal hold.

Run by `scripts/services check` with postvault's .venv python (needs the `minio`
client). Uses a throw-away bucket, which it empties and removes at the end.

    s3_objectlock_check.py ENDPOINT      (credentials from AWS_ACCESS_KEY_ID/SECRET)
"""

from __future__ import annotations

import datetime as dt
import io
import os
import re
import sys
import time

from minio import Minio
from minio.commonconfig import COMPLIANCE, GOVERNANCE
from minio.error import S3Error
from minio.retention import Retention

RETAIN_SECONDS = 6


def main(endpoint: str) -> int:
    client = Minio(endpoint, os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"],
                   secure=False, region="us-east-1")
    bucket = f"pvcheck-{int(time.time())}-{os.getpid()}"
    results: list[tuple[bool, str]] = []

    def expect(ok: bool, label: str) -> None:
        results.append((ok, label))
        print(("PASS " if ok else "FAIL ") + label, flush=True)

    def refused(call, label: str) -> None:
        try:
            call()
        except S3Error as error:
            expect(True, f"{label} is refused ({error.code})")
        else:
            expect(False, f"{label} was ALLOWED")

    client.make_bucket(bucket, object_lock=True)
    try:
        expect(client.get_bucket_versioning(bucket).status == "Enabled",
               "make_bucket(object_lock=True) turns versioning on")
        until = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=RETAIN_SECONDS)
        put = client.put_object(bucket, "locked.eml", io.BytesIO(b"raw mime"), 8,
                                retention=Retention(COMPLIANCE, until))
        version = put.version_id
        expect(bool(version), f"put_object with Retention(COMPLIANCE) returns a version id ({version})")
        retention = client.get_object_retention(bucket, "locked.eml", version_id=version)
        expect(retention.mode == COMPLIANCE, "get_object_retention reports COMPLIANCE")
        refused(lambda: client.remove_object(bucket, "locked.eml", version_id=version),
                "remove_object of a COMPLIANCE-locked version")
        refused(lambda: client.set_object_retention(
            bucket, "locked.eml", Retention(COMPLIANCE, until - dt.timedelta(seconds=3)), version_id=version),
            "shortening COMPLIANCE retention")
        refused(lambda: client.set_object_retention(
            bucket, "locked.eml", Retention(GOVERNANCE, until), version_id=version),
            "downgrading COMPLIANCE to GOVERNANCE")
        client.remove_object(bucket, "locked.eml")  # no version id: adds a delete marker only
        data = client.get_object(bucket, "locked.eml", version_id=version).read()
        expect(data == b"raw mime", "a plain delete only adds a delete marker; the locked version stays readable")

        held = client.put_object(bucket, "held.eml", io.BytesIO(b"held"), 4, legal_hold=True)
        expect(client.is_object_legal_hold_enabled(bucket, "held.eml", version_id=held.version_id),
               "put_object(legal_hold=True) sets a legal hold")
        refused(lambda: client.remove_object(bucket, "held.eml", version_id=held.version_id),
                "remove_object of a version under legal hold")
        client.disable_object_legal_hold(bucket, "held.eml", version_id=held.version_id)
        expect(not client.is_object_legal_hold_enabled(bucket, "held.eml", version_id=held.version_id),
               "disable_object_legal_hold lifts it")
        client.enable_object_legal_hold(bucket, "held.eml", version_id=held.version_id)
        expect(client.is_object_legal_hold_enabled(bucket, "held.eml", version_id=held.version_id),
               "enable_object_legal_hold sets it again")
        client.disable_object_legal_hold(bucket, "held.eml", version_id=held.version_id)
        client.remove_object(bucket, "held.eml", version_id=held.version_id)
        expect(True, "remove_object after the hold is lifted succeeds")

        gov = client.put_object(bucket, "gov.eml", io.BytesIO(b"gov"), 3, retention=Retention(GOVERNANCE, until))
        refused(lambda: client.remove_object(bucket, "gov.eml", version_id=gov.version_id),
                "remove_object of a GOVERNANCE-locked version without bypass")

        time.sleep(max(0.0, (until - dt.datetime.now(dt.timezone.utc)).total_seconds()) + 1.5)
        try:
            client.remove_object(bucket, "locked.eml", version_id=version)
            expect(True, "remove_object succeeds once COMPLIANCE retention has expired")
        except S3Error as error:
            expect(False, f"remove_object after retention expired was refused ({error.code})")
    finally:
        _empty_and_remove(client, bucket)
    failed = sum(1 for ok, _ in results if not ok)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


def _empty_and_remove(client: Minio, bucket: str) -> None:
    # minio-py 7.2 cannot parse versitygw's delete-marker timestamps (nanoseconds) in
    # list_objects(include_version=True), so read ListObjectVersions' XML directly.
    try:
        response = client._execute("GET", bucket, query_params={"versions": ""})  # noqa: SLF001
        xml = response.data.decode()
        for block in re.findall(r"<(?:Version|DeleteMarker)>(.*?)</(?:Version|DeleteMarker)>", xml, re.S):
            key = re.search(r"<Key>(.*?)</Key>", block).group(1)
            version = re.search(r"<VersionId>(.*?)</VersionId>", block).group(1)
            try:
                client.remove_object(bucket, key, version_id=version)
            except S3Error as error:
                print(f"cleanup: {key} {version}: {error.code}", file=sys.stderr)
        client.remove_bucket(bucket)
    except S3Error as error:
        print(f"cleanup of {bucket} incomplete: {error.code}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:57070"))
