"""Create or update postvault's OpenSearch user, authenticated by the admin client certificate; safe to re-run.

The role and its mapping come from security/roles.yml and roles_mapping.yml (loaded when
the node first initialises its security index); only the password, which lives in .env,
is set here, through the security plugin's REST API.
"""

from __future__ import annotations

import os
import sys
import time

from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConnectionError as TransportConnectionError, TransportError

# Worth another attempt: no answer yet, or the security index is still being created
# (503, or 500 "Timeout ... while retrieving configuration" on a busy host).
_NOT_READY = {None, "N/A", "TIMEOUT", 500, 503}

USER = "postvault"


def main() -> int:
    env = os.environ
    certs = env.get("OPENSEARCH_CERTS", "/certs")
    client = OpenSearch(
        hosts=[{"host": env.get("OPENSEARCH_HOST", "opensearch"), "port": int(env.get("OPENSEARCH_PORT", "9200"))}],
        use_ssl=True,
        verify_certs=True,
        ca_certs=f"{certs}/root-ca.pem",
        client_cert=f"{certs}/admin.pem",
        client_key=f"{certs}/admin-key.pem",
        timeout=60,  # the plugin hashes the password with bcrypt, slowly on a busy host
    )
    body = {"password": env["POSTVAULT_OPENSEARCH_PASSWORD"],
            "description": "postvault (gateway, worker, beat); role postvault, see roles_mapping.yml"}
    deadline = time.monotonic() + 120
    while True:
        try:
            # The security index is created a few seconds after the node answers.
            client.transport.perform_request("PUT", f"/_plugins/_security/api/internalusers/{USER}", body=body)
            break
        except (TransportConnectionError, TransportError) as error:
            status = getattr(error, "status_code", None)
            if status not in _NOT_READY or time.monotonic() > deadline:
                print(f"opensearch-init: could not set the {USER} user: {error}", file=sys.stderr)
                return 1
            time.sleep(3)
    print(f"opensearch-init: user {USER} set")
    return 0


if __name__ == "__main__":
    sys.exit(main())
