"""Create the archive bucket (Object Lock, owned by root) and give postvault's account its policy; safe to re-run."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import certifi
import urllib3
from minio import Minio

POLICY = Path(__file__).with_name("bucket-policy.json")


def policy_for(bucket: str, access_key: str) -> str:
    """bucket-policy.json with the bucket and postvault's access key filled in."""
    text = POLICY.read_text().replace("${BUCKET}", bucket).replace("${POSTVAULT_S3_ACCESS_KEY}", access_key)
    return json.dumps(json.loads(text))


def main() -> int:
    env = os.environ
    endpoint, bucket = env["S3_ENDPOINT_HOST"], env.get("POSTVAULT_S3_BUCKET", "postvault")
    secure = env.get("S3_SECURE", "true") == "true"
    http = urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=env.get("S3_CA_CERTS") or certifi.where())
    root = Minio(endpoint, env["ROOT_ACCESS_KEY"], env["ROOT_SECRET_KEY"], secure=secure, region="us-east-1", http_client=http)
    if root.bucket_exists(bucket):
        print(f"init-bucket: bucket {bucket} exists")
    else:
        # A bucket gets Object Lock (and with it versioning) only when it is created.
        root.make_bucket(bucket, object_lock=True)
        print(f"init-bucket: bucket {bucket} created with Object Lock")
    root.set_bucket_policy(bucket, policy_for(bucket, env["POSTVAULT_S3_ACCESS_KEY"]))
    print(f"init-bucket: {env['POSTVAULT_S3_ACCESS_KEY']} may use bucket {bucket} (bucket-policy.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
