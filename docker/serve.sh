#!/bin/sh
# Container entrypoint: `serve app|callback|sandbox|worker|migrate [extra arguments]`; anything else
# is run as a command (e.g. `serve sh -c "python -m dashtam.core.init_test_db && pytest"`).
# Servers listen on fixed container ports (app 8000, callback 8182, sandbox 8282); compose maps
# them to the host ports of the environment.
set -eu

role="${1:-app}"
if [ "$#" -gt 0 ]; then shift; fi

is_true() {
    case "$(printf '%s' "${1:-}" | tr '[:upper:]' '[:lower:]')" in
        1 | true | yes | on) return 0 ;;
        *) return 1 ;;
    esac
}

case "$role" in
    app) target=dashtam.main:create_app port=8000 tls="${APP_TLS:-false}" ;;
    callback) target=dashtam.callback.app:create_app port=8182 tls="${CALLBACK_TLS:-false}" ;;
    sandbox) exec python -m dashtam.sandbox --host 0.0.0.0 --port 8282 "$@" ;;
    worker) exec python -m dashtam.jobs "$@" ;;
    migrate) exec python -m dashtam.core.init_db ;;
    *) exec "$role" "$@" ;;
esac

if is_true "$tls"; then
    cert="${TLS_CERT_FILE:-/certs/dev-cert.pem}"
    key="${TLS_KEY_FILE:-/certs/dev-key.pem}"
    if [ ! -r "$cert" ] || [ ! -r "$key" ]; then
        echo "error: $role has TLS on but cannot read $cert and $key." >&2
        echo "  hint: run \`make certs\` on the host (compose mounts .state/certs at /certs)," >&2
        echo "        build with --build-arg UID=\$(id -u), or set APP_TLS/CALLBACK_TLS=false." >&2
        exit 2
    fi
    set -- --ssl-certfile "$cert" --ssl-keyfile "$key" "$@"
fi

if [ "$role" = app ] && is_true "${DASHTAM_MIGRATE_ON_START:-true}"; then
    python -m dashtam.core.init_db
fi

if [ "$role" = app ]; then
    # Several workers write their metrics into one folder, emptied before they start.
    if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
        rm -rf "${PROMETHEUS_MULTIPROC_DIR:?}"/*
        mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
    fi
    set -- --workers "${APP_WORKERS:-1}" "$@"
fi

# The app itself believes proxy headers, from TRUSTED_PROXIES only (docs/auth.md); uvicorn must not.
exec uvicorn "$target" --factory --host 0.0.0.0 --port "$port" --no-server-header \
    --no-proxy-headers "$@"
