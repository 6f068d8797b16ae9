#!/bin/sh
# Redis in a container (docker mode and production), locked down as local mode does it: the
# default user off, one ACL user with a password. The ACL travels on stdin, so nothing is
# written to disk (read-only root filesystems work) and no secret is in the process list.
# usage: start.sh [redis-server options]; REDIS_USERNAME and REDIS_PASSWORD from the environment.
# The rule is src/dashtam/devenv/redis.py's APP_USER_RULES (tests/unit/test_compose_files.py
# checks that both say the same).
set -eu

: "${REDIS_USERNAME:?REDIS_USERNAME is required}"
: "${REDIS_PASSWORD:?REDIS_PASSWORD is required}"
case "$REDIS_USERNAME" in
    *[!A-Za-z0-9_.-]*) echo "REDIS_USERNAME may hold only letters, digits, _ . -" >&2; exit 2 ;;
esac
digest=$(printf '%s' "$REDIS_PASSWORD" | sha256sum | cut -d ' ' -f 1)
unset REDIS_PASSWORD

# The image's entrypoint drops root for the redis user, then runs redis-server; `-` at the end
# makes it read the configuration below from stdin after the options.
exec docker-entrypoint.sh redis-server "$@" - <<CONF
user default off
user $REDIS_USERNAME on #$digest ~* &* +@all -@dangerous +info
CONF
