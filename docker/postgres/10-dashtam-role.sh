#!/bin/sh
# First start of an empty data directory only (docker-entrypoint-initdb.d). Mirrors local mode:
# the cluster superuser is `postgres` (POSTGRES_ADMIN_PASSWORD); the owner role owns the
# environment's database (migrations run as it, and grant the runtime role its DML rights); the
# runtime role, the app's, may only connect. The test owner may create databases (per-worker
# clones of the migrated template); the dev owner may not.
set -eu

: "${DASHTAM_DB_OWNER:?DASHTAM_DB_OWNER is required}"
: "${DASHTAM_DB_OWNER_PASSWORD:?DASHTAM_DB_OWNER_PASSWORD is required}"
: "${DASHTAM_DB_USER:?DASHTAM_DB_USER is required}"
: "${DASHTAM_DB_PASSWORD:?DASHTAM_DB_PASSWORD is required}"
createdb="${DASHTAM_DB_CREATEDB:-NOCREATEDB}"
case "$createdb" in
    CREATEDB | NOCREATEDB) ;;
    *) echo "DASHTAM_DB_CREATEDB must be CREATEDB or NOCREATEDB, not $createdb" >&2; exit 2 ;;
esac

psql --no-psqlrc -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v owner="$DASHTAM_DB_OWNER" -v owner_password="$DASHTAM_DB_OWNER_PASSWORD" \
    -v role="$DASHTAM_DB_USER" -v password="$DASHTAM_DB_PASSWORD" -v db="$POSTGRES_DB" \
    -v createdb="$createdb" <<'SQL'
CREATE ROLE :"owner" LOGIN NOSUPERUSER NOCREATEROLE :createdb PASSWORD :'owner_password';
CREATE ROLE :"role" LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB PASSWORD :'password';
ALTER DATABASE :"db" OWNER TO :"owner";
REVOKE CONNECT ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"db" TO :"role";
SQL
