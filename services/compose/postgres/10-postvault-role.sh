#!/bin/sh
# Run once by the postgres image when it initialises an empty data volume
# (/docker-entrypoint-initdb.d): postvault's own login role, which owns postvault's
# database and nothing else. It is no superuser and may not create databases or roles,
# so a compromised postvault can reach its own catalogue and no other.
set -eu
: "${POSTVAULT_DB_PASSWORD:?set POSTVAULT_DB_PASSWORD}"
psql -v ON_ERROR_STOP=1 -X -q --username "${POSTGRES_USER:-postgres}" --dbname postgres \
  -v role="${POSTVAULT_DB_USER:-postvault}" -v db="${POSTVAULT_DB_NAME:-postvault}" \
  -v password="$POSTVAULT_DB_PASSWORD" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD %L',
              :'role', :'password') \gexec
SELECT format('CREATE DATABASE %I OWNER %I ENCODING %L', :'db', :'role', 'UTF8') \gexec
-- Only its owner (and the superuser) may connect to the catalogue.
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'db') \gexec
SQL
