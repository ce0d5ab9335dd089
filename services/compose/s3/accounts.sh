#!/bin/sh
# postvault's versitygw account, made with the root account through versitygw's admin API
# (run by the s3-accounts service of docker-compose.yml, in the versitygw image).
#
# The account has the plain "user" role: it cannot create buckets, and only the root
# (admin) account may lift a GOVERNANCE lock by itself. The archive bucket belongs to
# root; its policy (bucket-policy.json, set by init_bucket.py) gives this account the
# object calls postvault makes and nothing else, so it cannot grant itself
# s3:BypassGovernanceRetention either.
set -eu
: "${S3_ENDPOINT:?}" "${ROOT_ACCESS_KEY:?}" "${ROOT_SECRET_KEY:?}" "${POSTVAULT_S3_ACCESS_KEY:?}" "${POSTVAULT_S3_SECRET_KEY:?}"
admin() { versitygw admin --access "$ROOT_ACCESS_KEY" --secret "$ROOT_SECRET_KEY" --endpoint-url "$S3_ENDPOINT" "$@"; }
if admin list-users | awk 'NR > 2 { print $1 }' | grep -qxF "$POSTVAULT_S3_ACCESS_KEY"; then
  # Re-run after a secret change in .env: the account follows it, and keeps the user role.
  admin update-user --access "$POSTVAULT_S3_ACCESS_KEY" --secret "$POSTVAULT_S3_SECRET_KEY" --role user
  echo "s3-accounts: account $POSTVAULT_S3_ACCESS_KEY updated"
else
  admin create-user --access "$POSTVAULT_S3_ACCESS_KEY" --secret "$POSTVAULT_S3_SECRET_KEY" --role user
  echo "s3-accounts: account $POSTVAULT_S3_ACCESS_KEY created"
fi
