#!/bin/sh
# First start of an empty data directory only (docker-entrypoint-initdb.d). Mirrors local mode:
# the cluster superuser is `postgres` (POSTGRES_ADMIN_PASSWORD); the app gets its own login
# role that owns the environment's database and nothing else. The test role may create
# databases (per-worker clones of the migrated template); the dev role may not.
set -eu

: "${DASHTAM_DB_USER:?DASHTAM_DB_USER is required}"
: "${DASHTAM_DB_PASSWORD:?DASHTAM_DB_PASSWORD is required}"
createdb="${DASHTAM_DB_CREATEDB:-NOCREATEDB}"
case "$createdb" in
    CREATEDB | NOCREATEDB) ;;
    *) echo "DASHTAM_DB_CREATEDB must be CREATEDB or NOCREATEDB, not $createdb" >&2; exit 2 ;;
esac

psql --no-psqlrc -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v role="$DASHTAM_DB_USER" -v password="$DASHTAM_DB_PASSWORD" -v db="$POSTGRES_DB" \
    -v createdb="$createdb" <<'SQL'
CREATE ROLE :"role" LOGIN :createdb PASSWORD :'password';
ALTER DATABASE :"db" OWNER TO :"role";
REVOKE CONNECT ON DATABASE :"db" FROM PUBLIC;
SQL
